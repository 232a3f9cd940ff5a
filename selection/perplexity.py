"""Perplexity filtering: the one perplexity selector (the ASK-LLM paper's baseline; with a small reference model
a selector in its own right, Ankner et al. 2024). The main job's evidence and the jobs below both use it.

A document's log perplexity is its mean token loss under the reference model: the ``reference-losses`` job's
records ``{id, targets, ref_losses}`` (``rho1.reference_losses.read_reference_losses``). Modes:

- ``low``: the ``k`` documents of lowest perplexity; ``high``: the ``k`` highest;
- ``middle``: drop the tails symmetrically, as the paper's "middle" filter does: of the ``n`` documents sorted by
  perplexity keep the ``k`` at sorted positions ``[(n - k) // 2, (n - k) // 2 + k)`` (for odd ``n - k`` the extra
  dropped document is at the low end). These slices are nested (the slice at ``k`` holds the one at ``k - 1``),
  so each document has an *entry rank* (the smallest ``k`` whose slice holds it) and the selection at every rate
  is a prefix of one ranking, as for ASK-LLM.

``k = keep.keep_count(n, rate)`` (rates in percent). Documents with no tokens (NaN log perplexity) are not ranked.

Arrays (``select_indices``): ties broken by position (stable sort). Jobs (``perplexity_records`` and below): the
documents are first sorted by id, so ties break by id and the result does not depend on shard order; every
mode becomes a score column (``ppl_low`` = -log ppl, ``ppl_high`` = log ppl, ``ppl_middle`` = -entry rank) whose
``topk.rank`` order (descending, then id ascending) is the mode's ranking. A file of those records is therefore a
score file that the ASK-LLM tools take unchanged: ``topk.write_topk_lists(..., key="ppl_middle",
method="ppl_middle")`` writes ``ppl_middle_r20.txt`` lists, ``beam_select.run_topk`` does it on Beam,
``select_job.select(askllm_scores=file, SelectConfig(askllm_key="ppl_middle", askllm_fraction=...))`` uses the
filter as DENSITY's pool, and variants are named ``c4_en_ppl_middle_r20``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from tokensift.selection.keep import PAPER_RATES, keep_count

MODES = ("low", "middle", "high")
SCORES_FILE = "perplexity.parquet"


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}: use one of {MODES}")
  return mode


def method_name(mode: str) -> str:
  """The selection method (id-list file stem and variant tag) of a mode: ``ppl_low|ppl_middle|ppl_high``."""
  return f"ppl_{check_mode(mode)}"


def log_perplexity(token_losses: Sequence[Sequence[float]]) -> np.ndarray:
  """Mean token loss (log perplexity) of each document: [n] float64 (NaN for a document with no tokens)."""
  return np.asarray([float(np.mean(t)) if len(t) else math.nan for t in token_losses], np.float64)


def middle_entry_rank(n: int) -> np.ndarray:
  """int64 [n]: for sorted position ``p``, the smallest ``k`` whose middle slice ``[(n-k)//2, (n-k)//2 + k)``
  holds ``p`` (a permutation of 1..n; the middle selection at ``k`` is the positions with rank <= k)."""
  ks = np.arange(1, n + 1, dtype=np.int64)
  starts = (n - ks) // 2
  grew_low = np.concatenate([[True], starts[1:] < starts[:-1]]) if n else np.zeros(0, bool)
  entered = np.where(grew_low, starts, starts + ks - 1)  # the position each step k adds
  rank = np.empty(n, np.int64)
  rank[entered] = ks
  return rank


def _finite(log_ppl, what: str = "log_ppl") -> np.ndarray:
  x = np.asarray(log_ppl, np.float64)
  if x.ndim != 1:
    raise ValueError(f"{what} must be 1-D [n], got shape {x.shape}")
  bad = np.flatnonzero(~np.isfinite(x))
  if bad.size:
    raise ValueError(
      f"{bad.size} {what} values are NaN/inf (positions {bad[:5].tolist()}); drop documents with no tokens first"
    )
  return x


def select_indices(log_ppl: ArrayLike, rate: float, mode: str) -> np.ndarray:
  """Indices (ascending) of the ``keep_count(n, rate)`` documents of lowest, middle or highest perplexity;
  ties broken by index. ``log_ppl``: [n] finite mean token losses (ValueError naming NaN/inf positions)."""
  check_mode(mode)
  x = _finite(log_ppl)
  n = x.size
  k = keep_count(n, rate)
  order = np.argsort(x, kind="stable")
  if mode == "low":
    chosen = order[:k]
  elif mode == "high":
    chosen = order[n - k :]
  else:
    chosen = order[middle_entry_rank(n) <= k]
  return np.sort(chosen.astype(np.int64))


# ----------------------------------------------------------------------------------------------- job level


def perplexity_records(
  records: Iterable[Mapping[str, Any]], *, stats: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
  """Reference-loss records ``{id, ref_losses, ...}`` -> score records, sorted by id::

    {"id", "log_ppl", "tokens", "ppl_low", "ppl_middle", "ppl_high"}

  (see the module docstring; the scores are None for a document with no tokens). An id with several records keeps
  the first (``stats["repeated_ids"]``); ``stats["no_tokens"]`` counts the unranked documents."""
  seen: dict[str, tuple[float, int]] = {}
  repeated = 0
  for r in records:
    doc_id = str(r["id"])
    if doc_id in seen:
      repeated += 1
      continue
    losses = r.get("ref_losses") or []
    seen[doc_id] = (float(log_perplexity([losses])[0]), len(losses))
  ids = sorted(seen)
  x = np.array([seen[i][0] for i in ids], np.float64)
  ok = np.flatnonzero(np.isfinite(x))
  order = ok[np.argsort(x[ok], kind="stable")]  # ascending log ppl, ties by id (ids are sorted)
  entry = np.zeros(len(ids), np.int64)
  entry[order] = middle_entry_rank(order.size)
  out = []
  for j, doc_id in enumerate(ids):
    v, tokens = seen[doc_id]
    finite = math.isfinite(v)
    out.append(
      {
        "id": doc_id,
        "log_ppl": v if finite else None,
        "tokens": tokens,
        "ppl_low": -v if finite else None,
        "ppl_middle": float(-entry[j]) if finite else None,
        "ppl_high": v if finite else None,
      }
    )
  if stats is not None:
    stats.update(repeated_ids=repeated, no_tokens=len(ids) - int(ok.size), documents=len(ids))
  return out


def write_perplexity_scores(
  ref_dir: str | os.PathLike, split: str = "train", out: str | os.PathLike | None = None
) -> Path:
  """Reads a finished ``reference-losses`` job's ``split`` and writes its score records (``perplexity_records``)
  to ``out`` (default ``{ref_dir}/perplexity_{split}.parquet``), atomically; returns the path. The ranking is
  global (the middle mode needs every document's position), so this runs on one process; memory: one id and a
  few numbers per document (the token losses are streamed)."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  from tokensift.rho1.reference_losses import read_reference_losses

  path = Path(out) if out is not None else Path(ref_dir) / f"perplexity_{split}.parquet"
  recs = perplexity_records(read_reference_losses(ref_dir, split))
  schema = pa.schema(
    [
      ("id", pa.string()),
      ("log_ppl", pa.float64()),
      ("tokens", pa.int64()),
      ("ppl_low", pa.float64()),
      ("ppl_middle", pa.float64()),
      ("ppl_high", pa.float64()),
    ]
  )
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  pq.write_table(pa.Table.from_pylist(recs, schema=schema), tmp)
  os.replace(tmp, path)
  return path


def write_perplexity_lists(
  scores: str | os.PathLike,
  mode: str,
  rates: Sequence[float] = PAPER_RATES,
  *,
  out_dir: str | os.PathLike | None = None,
) -> dict[float, tuple[Path | str, int, int]]:
  """The ``ppl_{mode}_r{rate}.txt`` id lists of a perplexity score file (``write_perplexity_scores``), through
  the ASK-LLM top-k writer (``topk.write_topk_lists``); returns ``{rate: (path, k, ranked)}``."""
  from tokensift.selection import topk

  method = method_name(mode)
  return topk.write_topk_lists(scores, rates, out_dir=out_dir, key=method, method=method)


def run_perplexity_topk_beam(
  scores: str | os.PathLike, mode: str, rates: Sequence[float] = PAPER_RATES, **kw
) -> dict[float, str]:
  """The same lists on Beam (``beam_select.run_topk`` with the mode's column; ``kw``: out_dir, runner, workers,
  beam_args)."""
  from tokensift.selection import beam_select

  method = method_name(mode)
  return beam_select.run_topk(scores, rates, key=method, method=method, **kw)


def topk_from_reference_losses(
  ref_dir: str | os.PathLike,
  mode: str,
  rates: Sequence[float] = PAPER_RATES,
  *,
  split: str = "train",
  out_dir: str | os.PathLike | None = None,
  runner: str | None = None,
  **beam_kw,
) -> tuple[Path, dict[float, Any]]:
  """What ``tokensift topk REF_DIR --by perplexity`` runs: the score file (``write_perplexity_scores``), then the
  id lists on one process or, with ``runner``, on Beam. Returns (score file, ``{rate: list path or (path, k,
  ranked)}``)."""
  scores = write_perplexity_scores(ref_dir, split)
  if runner:
    return scores, run_perplexity_topk_beam(scores, mode, rates, out_dir=out_dir, runner=runner, **beam_kw)
  return scores, write_perplexity_lists(scores, mode, rates, out_dir=out_dir)


def register_perplexity_variants(
  scores: str | os.PathLike,
  mode: str,
  base_task: str = "c4_en_raw",
  rates: Sequence[float] = PAPER_RATES,
  *,
  out_dir: str | os.PathLike | None = None,
) -> list:
  """Writes the lists and registers ``{base}_ppl_{mode}_r{rate}`` seqio variants (``c4_en_raw`` ->
  ``c4_en_ppl_middle_r20``; span-corruption and mixture bases as for ASK-LLM). Returns the tasks."""
  from tokensift.selection import topk

  method = method_name(mode)
  return topk.register_askllm_variants(scores, base_task, rates, out_dir=out_dir, key=method, method=method)
