"""Executing ProX programs on documents: pure functions of (program text, document text).

Semantics (GAIR-NLP/ProX ``utils/doc_utils.py`` and ``utils/chunk_utils.py`` on well-formed programs):

- Lines are ``text.split("\\n")``; ``remove_lines(line_start=A, line_end=B)`` deletes lines A..B, 0-based,
  inclusive, numbered over the whole document (the chunk programs of a document are concatenated and run
  against the full text). The ranges are merged where they overlap or touch before they are checked against
  the document (as ProX does). ``remove_lines(all=True)`` removes every line.
- ``normalize(source_str=S, target_str=T)`` replaces every occurrence of S with T, in program order. A source
  not in the text when the call runs (absent from the document, or already replaced by an earlier call, e.g.
  another chunk's program repeating the same fix) is a no-op, counted in the ``normalize_not_found`` stat; a
  source that is exactly one space is skipped, counted in ``normalize_skipped`` (replacing every space is never
  a refinement; ProX skips it too). Other whitespace sources apply (``normalize("  ", " ")`` collapses double
  spaces).
- Result rules (``ExecConfig``): a chunk program with ``max_errors`` (2) or more errors is ignored and the
  document kept unchanged; otherwise the document is dropped when at most ``min_keep_fraction`` (5%) of its
  words survive; in both cases it is dropped when ``min_words`` (10) or fewer words survive.
- Doc level: ``drop_doc()`` drops the document, ``keep_doc()``/``untouch_doc()`` keeps it; the first such call
  decides.

Errors, exactly as ProX's executor counts them (DESIGN §3; ``ExecConfig.max_errors`` of them make the program
ignored):

- an unparsable or unbindable call (``program.parse``'s errors);
- line ranges, once merged: one error per merged range that starts past the last line (it removes nothing)
  and one per merged range that ends past it (clipped to the last line); and an impossible range: a negative
  line number or ``line_start > line_end`` (one error per call; the range is not used);
- a ``normalize`` with an empty ``source_str`` (a source that is absent or already replaced is no error);
- growth: a refined document may not grow past ``max_output_chars(text)`` characters, i.e.
  ``min(10 MB, max(2 * len(text), len(text) + 64 KiB))``, nor past the 10 MB document limit in UTF-8 bytes
  (``tokensift.core.docs.MAX_DOC_BYTES``). Before a growing ``normalize`` replaces anything, its output length is
  bounded (by ``len(text) // len(source)`` occurrences at most) and, when that bound could cross the limit,
  predicted exactly from its occurrence count, so no oversized string is ever built; a program that would
  cross the bound is an error, and it is ignored whatever ``max_errors`` says (the reason is the recorded
  error).

Where tokensift deliberately differs from the reference (its weaknesses, DESIGN §3):
- programs are parsed (``program.parse``), so "drop" inside a comment or a string never drops a document;
  positional arguments, both quote styles, and ``,``/``)``/``=``/quotes inside strings all work;
- strings are literal text: ProX strips every leading and trailing ``"`` of a string (``.strip('"')``);
- ``normalize`` needs both arguments (ProX's one-argument form ``normalize(source_str=" ")`` deletes every
  space); an empty source is an error (ProX skips it silently);
- ``line_start > line_end`` and negative lines are errors (ProX counts none: it removes nothing for the first
  and lines from 0 for the second); ranges are clipped before use (ProX loops over ``range(start, end + 1)``,
  which never ends for ``line_end=10**18``);
- text without words is dropped as empty (ProX divides by zero); with ``max_errors`` or more errors the
  program is ignored entirely, so the ``min_words`` rule looks at the unchanged document (ProX counts the
  words of the partly applied program it then discards);
- output size is bounded (ProX grows a document without limit).

The chunk stage in steps: ``_edit`` runs the calls in order (normalizations applied, line ranges collected),
``_merge`` merges and checks the ranges, ``_remove_and_count`` removes the lines and counts the words,
``_drop_reason`` applies the result rules; ``_stats`` builds the stats of every outcome.

Speed (``benchmarks/bench_executor.py``): a program in ProX's own canonical style runs straight from the
tuples of one regex ``findall`` (``program_ops``; no per-call objects); the common doc-level programs are
decided without parsing, and the chunk programs that change nothing (``keep_chunk()``) are not run. A
normalization of a document up to 64k characters splits it once at the source: the
pieces give the count, the output (joined, after a growing target is checked against the bound) and the
replaced spots, where the change in words is read (``pieces_word_delta``; an empty target, or whitespace on one
side only; with many spots, the output is recounted instead); a longer document takes ``str.replace``. Words are
counted once per document, without splitting (``word_count``; in C, ``refine/_words.c``, when built with it):
with removed lines, the output and the removed lines are counted (words never span a line break) and the input's
count is their sum less the tracked change; without, the input is counted and the output's count follows. The
check for non-ASCII whitespace, which that count needs, reads only a text's non-ASCII characters. The output is
assembled from the lines up to the last removed one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from tokensift.core.docs import MAX_DOC_BYTES
from tokensift.refine import program as prog
from tokensift.refine import program_ops as po
from tokensift.refine.word_count import (
  count_plain_words,
  count_words,
  count_words_plain,
  has_unicode_space,
  keeps_word_count,
  pieces_word_delta,
  replacement_word_delta,
)

GROWTH_SLACK_CHARS = 64 * 1024


def max_output_chars(text: str) -> int:
  """The most characters a refined ``text`` may have: ``min(10 MB, max(2 * len(text), len(text) + 64 KiB))``."""
  n = len(text)
  return min(MAX_DOC_BYTES, max(2 * n, n + GROWTH_SLACK_CHARS))


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


# The outcomes are named tuples rather than frozen dataclasses (like ``program.Call``): one is built per
# document, and a frozen dataclass costs ~1.5 us to build, a tenth of running a typical program.
class DocOutcome(NamedTuple):
  """The doc-level stage: ``action`` is "drop", "keep" or "none" (no decision call: the doc is kept)."""

  action: str
  errors: tuple[str, ...]
  ignored: tuple[str, ...]

  @property
  def drop(self) -> bool:
    return self.action == "drop"


class ChunkOutcome(NamedTuple):
  """The chunk-level stage.

  ``removed``: merged 0-based inclusive line ranges actually removed; ``normalizations``: the applied
  (source, target, occurrences) in order; both empty when the program was ignored. ``normalize_not_found``:
  ``normalize`` calls whose source was not in the text when they ran (absent from the document, or already
  replaced by an earlier call): no-ops; ``normalize_skipped``: calls whose source is exactly one space, skipped
  (both 0 when the program was ignored).
  """

  text: str  # the refined text; "" when dropped
  kept: bool
  reason: str  # "" | "empty" | "few_words" | "low_fraction" (| "drop_doc": ``execute``'s doc-stage drop)
  program_ignored: bool
  errors: tuple[str, ...]
  ignored: tuple[str, ...]
  removed: tuple[tuple[int, int], ...]
  normalizations: tuple[tuple[str, str, int], ...]
  lines_before: int
  words_before: int
  words_after: int
  normalize_not_found: int = 0
  normalize_skipped: int = 0


class Refined(NamedTuple):
  """A document after both stages. ``stats`` has fixed keys (see ``STAT_KEYS``)."""

  text: str
  kept: bool
  errors: tuple[str, ...]
  stats: dict[str, Any]
  removed: tuple[tuple[int, int], ...] = ()
  normalizations: tuple[tuple[str, str, int], ...] = ()


STAT_KEYS = (
  "kept",
  "drop_reason",
  "doc_action",
  "program_ignored",
  "doc_errors",
  "chunk_errors",
  "lines_before",
  "lines_after",
  "lines_removed",
  "normalizations",
  "replacements",
  "chars_before",
  "chars_after",
  "words_before",
  "words_after",
  "normalize_not_found",
  "normalize_skipped",
)


def _as_program(program: str | prog.Program | None) -> prog.Program:
  if isinstance(program, prog.Program):
    return program
  return prog.parse_cached(program if isinstance(program, str) else ("" if program is None else str(program)))


def _doc_stage(p: prog.Program) -> tuple[str, list[str] | None]:
  """(action, notes on ignored calls or None when there are none)."""
  action = "none"
  notes = None
  for call in p.calls:
    if call.name in prog.DOC_CALLS:
      decided = "drop" if call.name == "drop_doc" else "keep"
      if action == "none":
        action = decided
        continue
      if decided == action:
        continue
      note = f"{call.where()}: {call.written}() after an earlier {action} decision"
    else:
      note = f"{call.where()}: chunk-level {call.written}() in a doc-level program"
    notes = [] if notes is None else notes
    notes.append(note)
  return action, notes


def execute_doc(program: str | prog.Program | None) -> DocOutcome:
  """Runs a doc-level program: the first ``drop_doc()``/``keep_doc()`` decides; chunk calls are ignored."""
  p = _as_program(program)
  action, notes = _doc_stage(p)
  return DocOutcome(action, tuple(str(e) for e in p.errors), p.ignored + tuple(notes or ()))


def _merge(
  ranges: list[tuple[int, int, int]], n_lines: int, errors: list[str], p: po.Ops
) -> tuple[tuple[int, int], ...]:
  """The line ranges ``(start, end, call index)`` (a non-empty list, sorted in place) as ProX reads them: merged
  where they overlap or touch, then one error per merged range that starts past the last line (it removes
  nothing) and one per merged range that ends past it (it is clipped there). Returns the ranges removed."""
  if len(ranges) == 1 and ranges[0][1] < n_lines:
    return (ranges[0][:2],)
  ranges.sort()
  out = []
  lo, hi = ranges[0][0], ranges[0][1]
  for a, b, _ in ranges:
    if a <= hi + 1:
      if b > hi:
        hi = b
    elif hi < n_lines:
      out.append((lo, hi))
      lo, hi = a, b
    else:
      break  # (this merged range ends past the last line, so every later one starts past it)
  if hi < n_lines:
    out.append((lo, hi))
    return tuple(out)
  return tuple(out) + _past_the_end(ranges, lo, n_lines, errors, p)


def _past_the_end(
  ranges: list[tuple[int, int, int]], lo: int, n_lines: int, errors: list[str], p: po.Ops
) -> tuple[tuple[int, int], ...]:
  """The merged ranges of the sorted ``ranges`` from the one that starts at ``lo`` on (each ends past the last
  line): one error each, at the call that starts it (nothing removed) or that ends it (clipped)."""
  groups: list[list[int]] = []  # [start, end, call of the start, call of the end, calls]
  for a, b, k in ranges:
    if a < lo:
      continue
    if groups and a <= groups[-1][1] + 1:
      g = groups[-1]
      if b > g[1]:
        g[1], g[3] = b, k
      g[4] += 1
    else:
      groups.append([a, b, k, k, 1])
  end = n_lines - 1
  out: tuple[tuple[int, int], ...] = ()
  for start, stop, first, last, calls in groups:
    call = f"remove_lines({start}, {stop}){' (merged)' if calls > 1 else ''}"
    if start > end:
      errors.append(f"{p.where(first)}: {call}: line_start past the last line {end}; nothing removed")
    else:
      errors.append(f"{p.where(last)}: {call}: line_end past the last line {end}; clipped")
      out += ((start, end),)
  return out


def _growth_error(where: str, src: str, tgt: str, count: int, cap: int, size: int) -> str:
  return (
    f"{where}: normalize({src[:40]!r}, {tgt[:40]!r}) x {count} would grow the document to {size} "
    f"characters, past the bound {cap}; program ignored"
  )


class _Edits(NamedTuple):
  """What a chunk program's calls did to a text, before any line is removed (``_edit``)."""

  out: str  # the text with the normalizations applied
  errors: list[str]
  ignored: tuple[str, ...]
  ranges: list[tuple[int, int, int]]  # (line_start, line_end, call index), not yet checked against the text
  norms: list[tuple[str, str, int]]  # the applied (source, target, occurrences), in order
  not_found: int  # normalizations whose source was not in the text when they ran
  skipped: int  # normalizations of a lone space
  too_big: str  # the growth error that makes the program ignored whatever ``max_errors`` says, or ""
  delta: int  # count_words(out) - count_words(text), while ``recount`` is False
  recount: bool  # whether the output's words must be counted afresh (tracking the change would cost more)


_SPLIT_COUNT_MAX_CHARS = 1 << 16  # (splitting a longer text into pieces could build millions of strings)


def _edit(p: po.Ops, text: str, n_lines: int) -> _Edits:
  """Runs the calls of ``p`` on ``text`` in order: the normalizations are applied, the line ranges collected."""
  errors = list(p.errors)
  ignored = p.ignored
  ranges: list[tuple[int, int, int]] = []
  norms: list[tuple[str, str, int]] = []
  not_found = skipped = delta = cap = 0  # (cap: max_output_chars(text), once a normalization grows the text)
  recount = False
  too_big = ""
  out = text
  for i, (a, b, src, tgt, name) in enumerate(p.ops):  # (``program_ops``: one tuple of strings per call)
    if a:  # remove_lines
      if a == "all":
        ranges.append((0, n_lines - 1, i))
        continue
      a, b = int(a), int(b)
      if a < 0 or b < 0:
        errors.append(f"{p.where(i)}: remove_lines({a}, {b}): negative line number")
      elif a > b:
        errors.append(f"{p.where(i)}: remove_lines({a}, {b}): line_start > line_end")
      else:  # checked against the text once merged (``_merge``)
        ranges.append((a, b, i))
      continue
    if name:  # a call without arguments
      if name != "keep_chunk" and name != "skip_chunk":
        ignored = ignored + (f"{p.where(i)}: doc-level {name}() in a chunk-level program",)
      continue
    # normalize
    if not src:
      errors.append(f"{p.where(i)}: normalize: source_str is empty")
      continue
    if p.calls is not None and ("\n" in src or "\n" in tgt):  # (a canonical program's strings hold none)
      errors.append(f"{p.where(i)}: normalize({src[:40]!r}, {tgt[:40]!r}): a line break would renumber lines")
      continue
    if src == " ":  # (as ProX does: replacing every space is never a refinement)
      skipped += 1
      continue
    ls, lt = len(src), len(tgt)
    pieces = None
    if src == tgt:  # (e.g. ``upper()`` of a number: nothing changes, only the count is wanted)
      count = out.count(src)
      new = out
    elif len(out) <= _SPLIT_COUNT_MAX_CHARS:
      # The pieces count the occurrences and show the replaced spots (``pieces_word_delta``): one search
      # (``str.replace`` counts, then finds again; reading the spots would be a third search). They are no
      # longer than ``out``: a growing target is checked against the bound before anything is joined.
      pieces = out.split(src)
      count = len(pieces) - 1
      if count and lt > ls:
        cap = cap or max_output_chars(text)
        if len(out) + count * (lt - ls) > cap:
          too_big = _growth_error(p.where(i), src, tgt, count, cap, len(out) + count * (lt - ls))
          break
      new = tgt.join(pieces) if count else out
    elif lt != ls:
      if lt > ls:
        cap = cap or max_output_chars(text)
        if len(out) + (len(out) // ls) * (lt - ls) > cap:  # it could cross the bound: count and check first
          count = out.count(src)
          if count and len(out) + count * (lt - ls) > cap:
            too_big = _growth_error(p.where(i), src, tgt, count, cap, len(out) + count * (lt - ls))
            break
      new = out.replace(src, tgt)
      count = (len(new) - len(out)) // (lt - ls)  # one pass: the count is read off the length change
    else:
      new = out.replace(src, tgt)
      count = 0 if new is out else out.count(src)  # (CPython returns the very string when nothing matched)
    if not count:  # absent, or already replaced by an earlier call: a no-op (ProX counts no error either)
      not_found += 1
      continue
    if (
      not recount
      and (not tgt or " " in src or " " in tgt or not src.isprintable() or not tgt.isprintable())
      and not keeps_word_count(src, tgt)
    ):
      # (``keeps_word_count``'s common case inline: both non-empty, printable and without " ")
      # The change in words, read at the replaced spots while there are few (each costs about what
      # recounting 250 characters does).
      if count <= 4 + len(out) // 256:
        delta += (
          pieces_word_delta(pieces, src, tgt) if pieces is not None else replacement_word_delta(out, src, tgt, count)
        )
      else:
        recount = True
    out = new
    norms.append((src, tgt, count))
  return tuple.__new__(_Edits, (out, errors, ignored, ranges, norms, not_found, skipped, too_big, delta, recount))


def _too_many_bytes(out: str, text: str) -> str:
  """The error when ``out`` is past the 10 MB document limit in UTF-8 bytes (and longer than ``text``), or ""."""
  if out is text:
    return ""
  size = len(out.encode("utf-8", "surrogatepass"))
  if size > MAX_DOC_BYTES and size > len(text.encode("utf-8", "surrogatepass")):
    return f"the refined document would be {size} UTF-8 bytes, past the {MAX_DOC_BYTES} limit; program ignored"
  return ""


def _remove_and_count(e: _Edits, text: str, removed: tuple[tuple[int, int], ...]) -> tuple[str, int, int]:
  """(the output: ``e.out`` less the ``removed`` lines, the words of ``text``, the words of the output)."""
  out = e.out
  if removed:  # the output and the removed lines are counted (together, about the text's length)
    lines = out.split("\n", removed[-1][1] + 1)  # the lines up to the last removed one, then the rest
    gone: list[str] = []
    for a, b in reversed(removed):
      gone += lines[a : b + 1]
      del lines[a : b + 1]
    out = "\n".join(lines)
    words_after = count_words(out)
    if e.recount:
      return out, count_words(text), words_after
    # words never span a line break: the kept and the removed lines' words, less the tracked change
    return out, words_after + count_words("\n".join(gone)) - e.delta, words_after
  words_before, plain = count_words_plain(text)  # (one UTF-8 encoding for both)
  if not e.recount:
    return out, words_before, words_before + e.delta
  for _, tgt, _ in e.norms:  # the output holds no non-ASCII space when the text and the targets hold none
    if plain and not tgt.isascii():
      plain = not has_unicode_space(tgt)
  return out, words_before, count_plain_words(out) if plain else count_words(out)


def _drop_reason(words_before: int, words_after: int, program_ignored: bool, config: ExecConfig) -> str:
  """The result rules: "" (kept), "empty", "low_fraction" or "few_words"."""
  if words_before == 0:
    return "empty"
  if not program_ignored and words_after <= config.min_keep_fraction * words_before:
    return "low_fraction"
  if words_after <= config.min_words:
    return "few_words"
  return ""


def _chunk_stage(p: po.Ops, text: str, config: ExecConfig, n_lines: int = -1) -> ChunkOutcome:
  """The chunk stage (see the module docstring): the calls run (``_edit``), the line ranges are merged and
  checked, the result rules decide."""
  if n_lines < 0:
    n_lines = text.count("\n") + 1
  e = _edit(p, text, n_lines)
  errors = e.errors
  if not (errors or e.ranges or e.norms or e.too_big):  # nothing to apply (``keep_chunk()``, no-ops): the text
    words = count_words(text)
    reason = _drop_reason(words, words, False, config)
    return tuple.__new__(
      ChunkOutcome,
      (
        "" if reason else text,
        not reason,
        reason,
        False,
        (),
        e.ignored,
        (),
        (),
        n_lines,
        words,
        words,
        e.not_found,
        e.skipped,
      ),
    )
  removed = _merge(e.ranges, n_lines, errors, p) if e.ranges else ()
  too_big = e.too_big
  if not too_big and len(e.out) > MAX_DOC_BYTES // 4:  # (4 UTF-8 bytes per character at most)
    too_big = _too_many_bytes(e.out, text)
  if too_big:
    errors.append(too_big)
  program_ignored = bool(too_big) or len(errors) >= config.max_errors
  if program_ignored:
    words_before = count_words_plain(text)[0]
    out, removed, applied, words_after, not_found, skipped = text, (), (), words_before, 0, 0
  else:
    out, words_before, words_after = _remove_and_count(e, text, removed)
    applied, not_found, skipped = tuple(e.norms), e.not_found, e.skipped
  reason = _drop_reason(words_before, words_after, program_ignored, config)
  return tuple.__new__(
    ChunkOutcome,
    (
      "" if reason else out,
      not reason,
      reason,
      program_ignored,
      tuple(errors),
      e.ignored,
      removed,
      applied,
      n_lines,
      words_before,
      words_after,
      not_found,
      skipped,
    ),
  )


def _chunk_ops(program: str | prog.Program | None) -> po.Ops:
  if type(program) is str:
    return po.read_cached(program)
  if isinstance(program, prog.Program):
    return po.from_program(program)
  return po.read_cached("" if program is None else str(program))


def execute_chunk(program: str | prog.Program | None, text: str, config: ExecConfig = DEFAULT_CONFIG) -> ChunkOutcome:
  """Runs a chunk-level program (all chunks' programs concatenated) against the whole ``text``."""
  if not isinstance(text, str):
    text = "" if text is None else str(text)
  return _chunk_stage(_chunk_ops(program), text, config)


def _stats(c: ChunkOutcome, doc_action: str, doc_errors: int, chars_before: int) -> dict[str, Any]:
  """``Refined.stats`` (``STAT_KEYS``) from the chunk stage's outcome (a dropped document: nothing kept)."""
  kept = c.kept
  lines_removed = replacements = 0
  if kept:
    for a, b in c.removed:
      lines_removed += b + 1 - a
  else:
    lines_removed = c.lines_before
  for _, _, k in c.normalizations:
    replacements += k
  return {
    "kept": kept,
    "drop_reason": c.reason,
    "doc_action": doc_action,
    "program_ignored": c.program_ignored,
    "doc_errors": doc_errors,
    "chunk_errors": len(c.errors),
    "lines_before": c.lines_before,
    "lines_after": c.lines_before - lines_removed,
    "lines_removed": lines_removed,
    "normalizations": len(c.normalizations),
    "replacements": replacements,
    "chars_before": chars_before,
    "chars_after": len(c.text),
    "words_before": c.words_before,
    "words_after": c.words_after if kept else 0,
    "normalize_not_found": c.normalize_not_found,
    "normalize_skipped": c.normalize_skipped,
  }


# The doc-level programs nearly every document has, decided without parsing (the same result as parsing them).
_DOC_DECISIONS = {"keep_doc()": "keep", "untouch_doc()": "keep", "drop_doc()": "drop", "": "none"}
# The chunk programs that change nothing (the rule programmer's commonest), not run: the result rules alone (the
# same result as running them).
_NO_EDITS = frozenset(("keep_chunk()", "skip_chunk()", ""))


def execute(
  text: str,
  doc_program: str | prog.Program | None = None,
  chunk_program: str | prog.Program | None = None,
  config: ExecConfig = DEFAULT_CONFIG,
) -> Refined:
  """Both stages: the doc-level program (skipped when None), then the chunk-level one (skipped when None).

  Never raises for any program text and any ``str`` document. Errors are prefixed ``doc`` / ``chunk``.
  """
  if not isinstance(text, str):
    text = "" if text is None else str(text)
  errors: list[str] = []
  doc_action, doc_errors = "none", 0
  if doc_program is not None:
    quick = _DOC_DECISIONS.get(doc_program) if isinstance(doc_program, str) else None
    if quick is not None:
      doc_action = quick
    else:
      d = _as_program(doc_program)
      doc_action = _doc_stage(d)[0]
      if d.errors:
        doc_errors = len(d.errors)
        errors.extend(f"doc {e}" for e in d.errors)
  n_lines = text.count("\n") + 1
  if doc_action == "drop" or chunk_program is None or (type(chunk_program) is str and chunk_program in _NO_EDITS):
    words = count_words(text)  # (no chunk stage, or nothing to apply: the text as it is, or dropped)
    reason = (
      "drop_doc" if doc_action == "drop" else "" if chunk_program is None else _drop_reason(words, words, False, config)
    )
    c = tuple.__new__(
      ChunkOutcome, ("" if reason else text, not reason, reason, False, (), (), (), (), n_lines, words, words, 0, 0)
    )
  else:
    c = _chunk_stage(
      po.read_cached(chunk_program) if type(chunk_program) is str else _chunk_ops(chunk_program), text, config, n_lines
    )
    if c.errors:
      errors.extend(["chunk " + e for e in c.errors])
  return tuple.__new__(
    Refined, (c.text, c.kept, tuple(errors), _stats(c, doc_action, doc_errors, len(text)), c.removed, c.normalizations)
  )
