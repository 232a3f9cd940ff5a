"""Executing ProX programs on documents: pure functions of (program text, document text).

Semantics (GAIR-NLP/ProX ``utils/doc_utils.py`` and ``utils/chunk_utils.py`` on well-formed programs):

- Lines are ``text.split("\\n")``; ``remove_lines(line_start=A, line_end=B)`` deletes lines A..B, 0-based,
  inclusive, numbered over the whole document (the chunk programs of a document are concatenated and run
  against the full text). A range starting past the last line is an error and removes nothing; one ending past
  it is an error and is clamped to the last line (as ProX does). ``remove_lines(all=True)`` removes every line.
- ``normalize(source_str=S, target_str=T)`` replaces every occurrence of S with T, in program order.
- Result rules (``ExecConfig``): a chunk program with ``max_errors`` (2) or more errors is ignored and the
  document kept unchanged; otherwise the document is dropped when at most ``min_keep_fraction`` (5%) of its
  words survive; in both cases it is dropped when ``min_words`` (10) or fewer words survive.
- Doc level: ``drop_doc()`` drops the document, ``keep_doc()``/``untouch_doc()`` keeps it; the first such call
  decides.

Where tokensift deliberately differs from the reference (its weaknesses, DESIGN §3):
- programs are parsed (``program.parse``), so "drop" inside a comment or a string never drops a document;
  positional arguments, both quote styles, escapes, and ``,``/``)``/``=`` inside strings all work;
- ``normalize`` needs both arguments; a missing ``target_str``, an empty or whitespace-only ``source_str``
  (which in ProX deletes every space), a source or target containing a line break (it would renumber the
  lines that ``remove_lines`` refers to), and a ``source_str`` that does not occur are errors, not edits;
- ``line_start > line_end`` and negative lines are errors; ranges are clamped before use (ProX loops over
  ``range(start, end + 1)``, which never ends for ``line_end=10**18``);
- errors are counted per call (ProX counts out-of-range intervals after merging them);
- text without words is dropped as empty (ProX divides by zero); with ``max_errors`` or more errors the
  program is ignored entirely, so the ``min_words`` rule looks at the unchanged document (ProX counts the
  words of the partly applied program it then discards).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from tokensift.refine import program as prog


@dataclasses.dataclass(frozen=True)
class ExecConfig:
  """The result rules. Defaults are ProX's (``error_op=2``, ``threshold_2=0.95``, the 10-word rule)."""
  max_errors: int = 2
  min_words: int = 10
  min_keep_fraction: float = 0.05

  def __post_init__(self):
    if self.max_errors < 1:
      raise ValueError(f"max_errors must be >= 1, got {self.max_errors}")
    if not 0.0 <= self.min_keep_fraction <= 1.0:
      raise ValueError(f"min_keep_fraction must be in [0, 1], got {self.min_keep_fraction}")


DEFAULT_CONFIG = ExecConfig()


@dataclasses.dataclass(frozen=True)
class DocOutcome:
  """The doc-level stage: ``action`` is "drop", "keep" or "none" (no decision call: the doc is kept)."""
  action: str
  errors: tuple[str, ...]
  ignored: tuple[str, ...]

  @property
  def drop(self) -> bool:
    return self.action == "drop"


@dataclasses.dataclass(frozen=True)
class ChunkOutcome:
  """The chunk-level stage.

  ``removed``: merged 0-based inclusive line ranges actually removed; ``normalizations``: the applied
  (source, target, occurrences) in order; both empty when the program was ignored.
  """
  text: str  # the refined text; "" when dropped
  kept: bool
  reason: str  # "" | "empty" | "few_words" | "low_fraction"
  program_ignored: bool
  errors: tuple[str, ...]
  ignored: tuple[str, ...]
  removed: tuple[tuple[int, int], ...]
  normalizations: tuple[tuple[str, str, int], ...]
  lines_before: int
  words_before: int
  words_after: int


@dataclasses.dataclass(frozen=True)
class Refined:
  """A document after both stages. ``stats`` has fixed keys (see ``STAT_KEYS``)."""
  text: str
  kept: bool
  errors: tuple[str, ...]
  stats: dict[str, Any]
  removed: tuple[tuple[int, int], ...] = ()
  normalizations: tuple[tuple[str, str, int], ...] = ()


STAT_KEYS = ("kept", "drop_reason", "doc_action", "program_ignored", "doc_errors", "chunk_errors",
             "lines_before", "lines_after", "lines_removed", "normalizations", "replacements",
             "chars_before", "chars_after", "words_before", "words_after")


def _as_program(program: str | prog.Program | None) -> prog.Program:
  if isinstance(program, prog.Program):
    return program
  return prog.parse_cached(program if isinstance(program, str) else ("" if program is None else str(program)))


def execute_doc(program: str | prog.Program | None) -> DocOutcome:
  """Runs a doc-level program: the first ``drop_doc()``/``keep_doc()`` decides; chunk calls are ignored."""
  p = _as_program(program)
  action = "none"
  ignored = list(p.ignored)
  for call in p.calls:
    if call.name in prog.DOC_CALLS:
      decided = "drop" if call.name == "drop_doc" else "keep"
      if action == "none":
        action = decided
      elif decided != action:
        ignored.append(f"{call.where()}: {call.written}() after an earlier {action} decision")
    else:
      ignored.append(f"{call.where()}: chunk-level {call.written}() in a doc-level program")
  return DocOutcome(action, tuple(str(e) for e in p.errors), tuple(ignored))


class _Where:
  """Formats a call's position only when an error message needs it."""
  __slots__ = ("call",)

  def __init__(self, call: prog.Call):
    self.call = call

  def __format__(self, spec: str) -> str:
    return self.call.where()


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
  out: list[list[int]] = []
  for a, b in sorted(ranges):
    if out and a <= out[-1][1] + 1:
      out[-1][1] = max(out[-1][1], b)
    else:
      out.append([a, b])
  return tuple((a, b) for a, b in out)


def execute_chunk(program: str | prog.Program | None, text: str,
                  config: ExecConfig = DEFAULT_CONFIG) -> ChunkOutcome:
  """Runs a chunk-level program (all chunks' programs concatenated) against the whole ``text``."""
  if not isinstance(text, str):
    text = "" if text is None else str(text)
  p = _as_program(program)
  errors = [str(e) for e in p.errors]
  ignored = list(p.ignored)
  n_lines = text.count("\n") + 1
  ranges: list[tuple[int, int]] = []
  norms: list[tuple[str, str, int]] = []
  out = text
  for call in p.calls:
    where = _Where(call)
    if call.name == "remove_lines":
      if call.arg("all"):
        ranges.append((0, n_lines - 1))
        continue
      a, b = call.arg("line_start"), call.arg("line_end")
      if a < 0 or b < 0:
        errors.append(f"{where}: remove_lines({a}, {b}): negative line number")
      elif a > b:
        errors.append(f"{where}: remove_lines({a}, {b}): line_start > line_end")
      elif a >= n_lines:
        errors.append(f"{where}: remove_lines({a}, {b}): line_start past the last line {n_lines - 1}")
      else:
        if b >= n_lines:
          errors.append(f"{where}: remove_lines({a}, {b}): line_end past the last line {n_lines - 1}; clamped")
          b = n_lines - 1
        ranges.append((a, b))
    elif call.name == "normalize":
      src, tgt = call.arg("source_str"), call.arg("target_str")
      if not src or src.isspace():
        errors.append(f"{where}: normalize: source_str {src!r} is empty or whitespace-only")
      elif "\n" in src or "\n" in tgt:
        errors.append(f"{where}: normalize({src[:40]!r}, {tgt[:40]!r}): a line break would renumber lines")
      else:
        count = out.count(src)
        if count == 0:
          errors.append(f"{where}: normalize: source_str {src[:60]!r} not found")
        else:
          out = out.replace(src, tgt)
          norms.append((src, tgt, count))
    elif call.name == "keep_chunk":
      pass
    else:
      ignored.append(f"{where}: doc-level {call.written}() in a chunk-level program")

  words_before = len(text.split())
  program_ignored = len(errors) >= config.max_errors
  if program_ignored:
    out, removed, applied = text, (), ()
  else:
    removed, applied = _merge(ranges), tuple(norms)
    if removed:
      lines = out.split("\n")
      keep = bytearray(b"\x01") * len(lines)
      for a, b in removed:
        keep[a:b + 1] = bytes(b + 1 - a)
      out = "\n".join([line for line, k in zip(lines, keep) if k])
  words_after = len(out.split()) if (removed or applied) else words_before
  reason = ""
  if words_before == 0:
    reason = "empty"
  elif not program_ignored and words_after <= config.min_keep_fraction * words_before:
    reason = "low_fraction"
  elif words_after <= config.min_words:
    reason = "few_words"
  if reason:
    out = ""
  return ChunkOutcome(out, not reason, reason, program_ignored, tuple(errors), tuple(ignored), removed, applied,
                      n_lines, words_before, words_after)


def execute(text: str, doc_program: str | prog.Program | None = None,
            chunk_program: str | prog.Program | None = None, config: ExecConfig = DEFAULT_CONFIG) -> Refined:
  """Both stages: the doc-level program (skipped when None), then the chunk-level one (skipped when None).

  Never raises for any program text and any ``str`` document. Errors are prefixed ``doc`` / ``chunk``.
  """
  if not isinstance(text, str):
    text = "" if text is None else str(text)
  errors: list[str] = []
  doc_action, doc_errors = "none", 0
  if doc_program is not None:
    d = execute_doc(doc_program)
    doc_action, doc_errors = d.action, len(d.errors)
    errors.extend(f"doc {e}" for e in d.errors)
  n_lines = text.count("\n") + 1
  base = {"doc_action": doc_action, "doc_errors": doc_errors, "lines_before": n_lines,
          "chars_before": len(text)}
  if doc_action == "drop":
    stats = dict(kept=False, drop_reason="drop_doc", program_ignored=False, chunk_errors=0, lines_after=0,
                 lines_removed=n_lines, normalizations=0, replacements=0, chars_after=0,
                 words_before=len(text.split()), words_after=0, **base)
    return Refined("", False, tuple(errors), {k: stats[k] for k in STAT_KEYS})
  if chunk_program is None:
    stats = dict(kept=True, drop_reason="", program_ignored=False, chunk_errors=0, lines_after=n_lines,
                 lines_removed=0, normalizations=0, replacements=0, chars_after=len(text),
                 words_before=len(text.split()), words_after=len(text.split()), **base)
    return Refined(text, True, tuple(errors), {k: stats[k] for k in STAT_KEYS})
  c = execute_chunk(chunk_program, text, config)
  errors.extend(f"chunk {e}" for e in c.errors)
  lines_removed = sum(b + 1 - a for a, b in c.removed)
  stats = dict(kept=c.kept, drop_reason=c.reason, program_ignored=c.program_ignored, chunk_errors=len(c.errors),
               lines_after=(n_lines - lines_removed) if c.kept else 0,
               lines_removed=lines_removed if c.kept else n_lines, normalizations=len(c.normalizations),
               replacements=sum(k for _, _, k in c.normalizations), chars_after=len(c.text),
               words_before=c.words_before, words_after=c.words_after if c.kept else 0, **base)
  return Refined(c.text, c.kept, tuple(errors), {k: stats[k] for k in STAT_KEYS}, c.removed, c.normalizations)
