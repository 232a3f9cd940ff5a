"""ASK-LLM selection: top-k documents by score, without replacement, at a sampling rate (paper: 10, 20, 40,
60, 80% of C4), written as id lists; and seqio variants of a base task built from a score file or directory.

Ranking: score descending, ties broken by id ascending (deterministic across shards and runs). ``k`` for a rate
``r`` percent of ``n`` scored documents is ``floor(n * r / 100 + 0.5)`` (round half up). Records whose score is
missing or NaN are not ranked; they are counted (``TopK.unranked``), never silently dropped.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tokensift import jobs
from tokensift.selection import variants
from tokensift.selection.samplers import k_for_rate  # noqa: F401  (public here too: one rounding rule)

PAPER_RATES = (10, 20, 40, 60, 80)
SCORE_JOB = "score"


def load_score_records(path: str | os.PathLike, name: str = SCORE_JOB) -> list[dict[str, Any]]:
  """Records of a score file (``.jsonl``/``.parquet``) or of every shard of a finished score job directory.

  Raises FileNotFoundError for a missing path, ValueError naming missing shards of an unfinished job.
  """
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"scores {str(path)!r} do not exist")
  if path.is_file():
    return jobs.read_records(path)
  files = jobs.shard_files(path, name)
  if not files:
    raise ValueError(f"{str(path)!r} holds no finished {name!r} shard (no {name}-*-of-*.done marker)")
  counts = {int(m.group(2)) for f in files if (m := re.search(r"-(\d+)-of-(\d+)\.", f.name))}
  if len(counts) != 1:
    raise ValueError(f"{str(path)!r} mixes score jobs with different shard counts {sorted(counts)}")
  n = counts.pop()
  have = {int(re.search(r"-(\d+)-of-", f.name).group(1)) for f in files}
  missing = sorted(set(range(n)) - have)
  if missing:
    raise ValueError(f"score job in {str(path)!r} is unfinished: shards {missing} of {n} have no .done marker")
  out: list[dict[str, Any]] = []
  for f in files:
    out.extend(jobs.read_records(f))
  return out


@dataclasses.dataclass(frozen=True)
class TopK:
  """Selected ids (best first), how many records were ranked, and how many could not be (no/NaN score)."""
  ids: list[str]
  ranked: int
  unranked: int


def rank(records: Iterable[Mapping[str, Any]], key: str = "score") -> tuple[list[str], int]:
  """Ids sorted by ``record[key]`` descending, then id ascending; returns (ids, number unranked).

  Raises ValueError naming an id that occurs twice.
  """
  scored: list[tuple[float, str]] = []
  seen: set[str] = set()
  unranked = 0
  for r in records:
    doc_id = r.get("id")
    if doc_id in seen:
      raise ValueError(f"document id {doc_id!r} has two score records")
    seen.add(doc_id)
    v = r.get(key)
    if v is None or not isinstance(v, (int, float)) or math.isnan(v):
      unranked += 1
      continue
    scored.append((-float(v), str(doc_id)))
  scored.sort()
  return [i for _, i in scored], unranked


def top_k(records: Iterable[Mapping[str, Any]], rate: float, key: str = "score") -> TopK:
  """The top ``rate`` percent of the ranked records by ``key``."""
  ids, unranked = rank(records, key)
  return TopK(ids[:k_for_rate(len(ids), rate)], len(ids), unranked)


def list_name(rate: float, method: str = "askllm") -> str:
  return f"{method}_r{variants.rate_tag(rate)}.txt"  # one naming rule for files and tasks


def write_topk_lists(scores: str | os.PathLike, rates: Sequence[float] = PAPER_RATES, *,
                     out_dir: str | os.PathLike | None = None, key: str = "score",
                     method: str = "askllm") -> dict[float, tuple[Path, int, int]]:
  """Writes one id list per rate (``{method}_r{rate}.txt``, best first) into ``out_dir`` (default:
  ``{scores dir}/selections``); returns ``{rate: (path, k, ranked)}``."""
  records = load_score_records(scores)
  ids, _ = rank(records, key)
  base = Path(scores) if Path(scores).is_dir() else Path(scores).parent
  out = Path(out_dir) if out_dir is not None else base / "selections"
  written = {}
  for rate in rates:
    k = k_for_rate(len(ids), rate)
    written[rate] = (variants.write_id_list(out / list_name(rate, method), ids[:k]), k, len(ids))
  return written


def register_askllm_variants(scores: str | os.PathLike, base_task: str = "c4_en_raw",
                             rates: Sequence[float] = PAPER_RATES, *, out_dir: str | os.PathLike | None = None,
                             key: str = "score", method: str = "askllm") -> list:
  """Public entry point for other projects: from a score file/dir, write the top-k id lists and register
  ``{base}_{method}_r{rate}`` seqio tasks (``c4_en_raw`` → ``c4_en_askllm_r20``). Returns the tasks."""
  written = write_topk_lists(scores, rates, out_dir=out_dir, key=key, method=method)
  return variants.register_variants(base_task, method, {r: p for r, (p, _, _) in written.items()})
