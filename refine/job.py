"""The refine job: documents → programs (rule programmer or refining model) → executor → records.

Runs through ``tokensift.core.jobs.run_sharded`` (shards, pieces, atomic renames, completion markers: a killed run
rerun gives byte-identical output). One record per input document, in input order::

    {"id", "text" (refined; "" when dropped), "raw_text", "kept", "doc_program", "chunk_program",
     "errors" (list of str), "rules" (rules that fired), "stats" (executor stats + tokens, unicode fixes)}

Nothing here imports TensorFlow or JAX: task input and token counting with a seqio vocabulary load them only
when asked for; the refining model loads JAX in ``model_programmer``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from tokensift.core import docs, jobs
from tokensift.refine import executor as ex
from tokensift.refine import rules

JOB_NAME = "refine"
TokenCounter = Callable[[Sequence[str]], Sequence[int]]
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclasses.dataclass(frozen=True)
class Programs:
  """The programs written for one document (None skips a stage) and the rules that fired, if any."""

  doc_program: str | None
  chunk_program: str | None
  rules: tuple[str, ...] = ()


class Programmer(Protocol):
  name: str

  def __call__(self, texts: Sequence[str]) -> list[Programs]: ...


class RuleProgrammer:
  """The rule programmer as a job programmer."""

  def __init__(self, config: rules.RuleConfig = rules.RuleConfig()):
    self.config = config
    self.name = f"rules:{config.profile}"

  def __call__(self, texts: Sequence[str]) -> list[Programs]:
    out = []
    for text in texts:
      rp = rules.write_program(text, self.config)
      out.append(Programs(rp.doc_program, rp.chunk_program, rp.rules))
    return out


def clean_text(text: str) -> tuple[str, int]:
  """Replaces lone surrogates (JSON ``\\ud800`` escapes decode to them; they cannot be written as UTF-8) with
  U+FFFD; returns (text, number replaced)."""
  if not _SURROGATE.search(text):
    return text, 0
  return _SURROGATE.subn("\ufffd", text)


def refine_documents(
  batch: Sequence[docs.Document],
  programmer: Programmer,
  *,
  exec_config: ex.ExecConfig = ex.DEFAULT_CONFIG,
  count_tokens: TokenCounter | None = None,
) -> list[dict[str, Any]]:
  """One record per document (see the module docstring)."""
  texts, fixes = zip(*(clean_text(d.text) for d in batch)) if batch else ((), ())
  programs = programmer(list(texts))
  if len(programs) != len(texts):
    raise ValueError(f"programmer {programmer.name} returned {len(programs)} programs for {len(texts)} documents")
  results = [ex.execute(t, p.doc_program, p.chunk_program, exec_config) for t, p in zip(texts, programs)]
  tokens_before: list[int] = []
  tokens_after: list[int] = []
  if count_tokens is not None:
    tokens_before = list(count_tokens(list(texts)))
    tokens_after = list(count_tokens([r.text for r in results]))
  records = []
  for k, (doc, text, fix, p, r) in enumerate(zip(batch, texts, fixes, programs, results)):
    stats = dict(r.stats, unicode_fixes=fix)
    if count_tokens is not None:
      stats["tokens_before"], stats["tokens_after"] = int(tokens_before[k]), int(tokens_after[k])
    records.append(
      {
        "id": doc.id,
        "text": r.text,
        "raw_text": text,
        "kept": r.kept,
        "doc_program": p.doc_program or "",
        "chunk_program": p.chunk_program or "",
        "errors": list(r.errors),
        "rules": list(p.rules),
        "stats": stats,
      }
    )
  return records


_SUMMED = (
  "words_before",
  "words_after",
  "chars_before",
  "chars_after",
  "tokens_before",
  "tokens_after",
  "lines_removed",
  "normalizations",
  "replacements",
  "unicode_fixes",
)


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Flat numeric totals (so ``jobs.merged_stats`` can add shards): documents, kept/dropped, drop reasons
  (``drop.<reason>``), words/chars/tokens before and after, documents per rule (``rule.<name>``), errors."""
  out: dict[str, Any] = {
    "documents": len(records),
    "kept": 0,
    "dropped": 0,
    "docs_with_errors": 0,
    "programs_ignored": 0,
    "lines_removed_from_kept": 0,
  }
  for k in _SUMMED:
    if k.startswith("tokens") and not any(k in r["stats"] for r in records):
      continue
    out[k] = 0
  for r in records:
    s = r["stats"]
    out["kept" if r["kept"] else "dropped"] += 1
    if r["kept"]:
      out["lines_removed_from_kept"] += s["lines_removed"]
    if not r["kept"]:
      out[f"drop.{s['drop_reason']}"] = out.get(f"drop.{s['drop_reason']}", 0) + 1
    out["docs_with_errors"] += bool(r["errors"])
    out["programs_ignored"] += bool(s["program_ignored"])
    for k in _SUMMED:
      if k in out:
        out[k] += s.get(k, 0)
    for rule in r["rules"]:
      out[f"rule.{rule}"] = out.get(f"rule.{rule}", 0) + 1
  return out


def format_summary(stats: dict[str, Any], top: int = 8) -> str:
  """A few lines for people: documents dropped (why), words/tokens kept, top rules fired, errors."""
  n = stats.get("documents", 0)
  lines = [
    f"documents: {n} refined, {stats.get('kept', 0)} kept, {stats.get('dropped', 0)} dropped"
    + (f" ({100 * stats.get('dropped', 0) / n:.1f}%)" if n else "")
    + (
      f"; {sum(stats.get('skipped', {}).values())} input rows skipped {stats['skipped']}"
      if stats.get("skipped")
      else ""
    )
  ]
  reasons = sorted(((k[5:], v) for k, v in stats.items() if k.startswith("drop.")), key=lambda kv: -kv[1])
  if reasons:
    lines.append("dropped by: " + ", ".join(f"{k} {v}" for k, v in reasons))
  for unit in ("words", "tokens", "chars"):
    b, a = stats.get(f"{unit}_before"), stats.get(f"{unit}_after")
    if b:
      lines.append(f"{unit}: {a} of {b} kept ({100 * (a or 0) / b:.1f}%)")
  fired = sorted(((k[5:], v) for k, v in stats.items() if k.startswith("rule.")), key=lambda kv: (-kv[1], kv[0]))
  if fired:
    lines.append("top rules fired (documents): " + ", ".join(f"{k} {v}" for k, v in fired[:top]))
  lines.append(
    f"program errors: {stats.get('docs_with_errors', 0)} documents, "
    f"{stats.get('programs_ignored', 0)} programs ignored (>= max errors); "
    f"lines removed {stats.get('lines_removed', 0)} ({stats.get('lines_removed_from_kept', 0)} from kept "
    f"documents), normalizations {stats.get('normalizations', 0)}"
  )
  return "\n".join(lines)


def run_refine(
  *,
  rows,
  out_dir: str | Path,
  programmer: Programmer,
  shard: jobs.ShardSpec = jobs.ShardSpec(),
  fmt: str = "jsonl",
  piece_size: int = 256,
  exec_config: ex.ExecConfig = ex.DEFAULT_CONFIG,
  count_tokens: TokenCounter | None = None,
  config: dict[str, Any] | None = None,
  name: str = JOB_NAME,
  progress: bool = True,
  total: int | None = None,
) -> jobs.ShardResult:
  """Runs one shard of the refine job (resumable). ``rows``: a ``docs.DocumentInput`` (or a callable
  ``shard -> rows``, see ``jobs.run_sharded``). ``config`` describes the run (input, programmer, ...); a rerun
  into the same directory with another config is refused."""
  cfg = dict(config or {}, programmer=programmer.name, exec=dataclasses.asdict(exec_config))

  def process(batch):
    return refine_documents(batch, programmer, exec_config=exec_config, count_tokens=count_tokens)

  return jobs.run_sharded(
    name=name,
    out_dir=out_dir,
    rows=rows,
    process=process,
    shard=shard,
    piece_size=piece_size,
    fmt=fmt,
    config=cfg,
    summarize=summarize,
    progress=progress,
    total=total,
  )
