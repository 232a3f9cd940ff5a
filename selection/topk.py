"""ASK-LLM selection: top-k documents by score, without replacement, at a sampling rate (paper: 10, 20, 40,
60, 80% of C4), written as id lists; and seqio variants of a base task built from a score file or directory.

Ranking: score descending, ties broken by id ascending (deterministic across shards and runs). ``k`` for a rate
``r`` percent of ``n`` scored documents is ``keep.keep_count(n, r)`` (round half up, at least 1). Records whose
score is missing or NaN are not ranked; they are counted (``TopK.unranked``), never silently dropped.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tokensift.core import jobs
from tokensift.selection import id_lists
from tokensift.selection.keep import PAPER_RATES, keep_count

SCORE_JOB = "score"


def load_score_records(path: str | os.PathLike, name: str = SCORE_JOB) -> list[dict[str, Any]]:
  """Records of a score file (``.jsonl``/``.parquet``) or of every shard of a finished score job directory
  (local or URL). Raises FileNotFoundError for a missing path, ValueError naming missing shards."""
  out: list[dict[str, Any]] = []
  for f in jobs.finished_files(path, name, what="scores"):
    out.extend(jobs.iter_records(f))
  return out


@dataclasses.dataclass(frozen=True)
class TopK:
  """Selected ids (best first), how many records were ranked, and how many could not be (no/NaN score)."""

  ids: list[str]
  ranked: int
  unranked: int


def rank(
  records: Iterable[Mapping[str, Any]], key: str = "score", stats: dict[str, Any] | None = None
) -> tuple[list[str], int]:
  """Ids sorted by ``record[key]`` descending, then id ascending; returns (ids, number unranked).

  An id with several records (ids from a field such as ``url`` are unique within a job shard only) keeps its
  first record in shard order; the count goes to ``stats["repeated_ids"]`` and the log, never two entries.
  """
  scored: list[tuple[float, str]] = []
  seen: set[str] = set()
  unranked = repeated = 0
  for r in records:
    doc_id = r.get("id")
    if doc_id in seen:
      repeated += 1
      continue
    seen.add(str(doc_id))
    v = r.get(key)
    if v is None or not isinstance(v, (int, float)) or math.isnan(v):
      unranked += 1
      continue
    scored.append((-float(v), str(doc_id)))
  if repeated:
    import logging

    logging.getLogger(__name__).warning("%d repeated document ids in the scores: kept the first of each", repeated)
  if stats is not None:
    stats["repeated_ids"] = repeated
  scored.sort()
  return [i for _, i in scored], unranked


def top_k(records: Iterable[Mapping[str, Any]], rate: float, key: str = "score") -> TopK:
  """The top ``rate`` percent of the ranked records by ``key``."""
  ids, unranked = rank(records, key)
  return TopK(ids[: keep_count(len(ids), rate)], len(ids), unranked)


def list_name(rate: float, method: str = "askllm") -> str:
  return f"{method}_r{id_lists.rate_tag(rate)}.txt"  # one naming rule for files and tasks


def write_topk_lists(
  scores: str | os.PathLike,
  rates: Sequence[float] = PAPER_RATES,
  *,
  out_dir: str | os.PathLike | None = None,
  key: str = "score",
  method: str = "askllm",
) -> dict[float, tuple[Path | str, int, int]]:
  """Writes one id list per rate (``{method}_r{rate}.txt``, best first) into ``out_dir`` (default:
  ``{scores dir}/selections``); returns ``{rate: (path, k, ranked)}``."""
  records = load_score_records(scores)
  ids, _ = rank(records, key)
  from tokensift.core import storage

  if out_dir is None:
    fs, p = storage.url_to_fs(str(scores))
    base = p if fs.isdir(p) else p.rsplit("/", 1)[0]
    out_dir = storage.join(storage.full_url(fs, base), "selections")
  written = {}
  for rate in rates:  # a str or Path directory, local or remote (gs://...)
    k = keep_count(len(ids), rate)
    path = storage.as_local_or_url(storage.join(out_dir, list_name(rate, method)))
    written[rate] = (id_lists.write_id_list(path, ids[:k]), k, len(ids))
  return written


def register_askllm_variants(
  scores: str | os.PathLike,
  base_task: str = "c4_en_raw",
  rates: Sequence[float] = PAPER_RATES,
  *,
  out_dir: str | os.PathLike | None = None,
  key: str = "score",
  method: str = "askllm",
) -> list:
  """Public entry point for other projects: from a score file/dir, write the top-k id lists and register
  ``{base}_{method}_r{rate}`` seqio tasks (``c4_en_raw`` → ``c4_en_askllm_r20``). Returns the tasks."""
  from tokensift.selection import variants  # seqio: only where tasks are registered

  written = write_topk_lists(scores, rates, out_dir=out_dir, key=key, method=method)
  return variants.register_variants(base_task, method, {r: p for r, (p, _, _) in written.items()})
