"""DENSITY selection (optionally combined with ASK-LLM): embeddings (+ score files) -> id lists per sampling rate.

Steps (``select``):
1. Read the embed job's output (``embed_job.load_embeddings``): ``N`` documents.
2. Candidate pool: every embedded document, or with ASK-LLM scores the top ``askllm_fraction`` percent of the
   scored documents by ``askllm_key`` (ranked as ``topk.rank``: score descending, id ascending); documents
   scored but not embedded, or embedded but not scored, are counted in the summary (never silently lost).
3. Density of each pool document: exact Gaussian/Laplacian/cosine kernel sums over the pool
   (``density_kernels.log_kernel_sums``) or, above ``exact_limit`` documents (``density="auto"``) or on request,
   RACE sketch scores (``lsh_sketch``). Stored as ``density.parquet`` ``{id, log_density}``.
4. For each rate ``r`` (percent of ``N``; ``k = keep.keep_count(N, r)``): ``samplers.sample(method, ...)``;
   inverse propensity by default. Randomness is keyed by document id (``samplers.id_uniforms``), so the
   selection does not depend on input order or sharding (the Beam pipeline, ``beam_select``, picks the same
   documents); with one seed for every rate the keys are shared, so the exact-size IPS selection at 10% is
   contained in the one at 20%.
5. Write ``{tag}_r{rate}.txt`` id lists (``id_lists.write_id_list``, selection order) and ``select.json``;
   optionally register seqio variants ``id_lists.variant_name(base_task, tag, rate)``, e.g. ``c4_en_density_r20``.

``tag``: ``density`` (IPS), ``density_top``, ``density_bottom``, ``random``; prefixed ``askllm{f}_`` when an
ASK-LLM pool is used (``c4_en_askllm50_density_r20``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import posixpath
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tokensift.core import jobs
from tokensift.selection import density_kernels as dk
from tokensift.selection import samplers
from tokensift.selection.keep import PAPER_RATES, check_rate, keep_count

DENSITY_MODES = ("auto", "exact", "sketch")
TAGS = {"ips": "density", "topk": "density_top", "bottomk": "density_bottom", "random": "random"}


@dataclasses.dataclass(frozen=True)
class SelectConfig:
  """How documents are selected (stored in ``select.json``).

  rates: percentages of the embedded documents. askllm_fraction: percent of the ASK-LLM-ranked documents that
  form the pool (requires score files). exact_size: IPS draws exactly k (Gumbel top-k); else Poisson sampling
  of expected size k.
  """

  method: str = "ips"
  rates: tuple[float, ...] = PAPER_RATES
  density: str = "auto"
  kernel: str = "gaussian"
  bandwidth: float | str = dk.DEFAULT_BANDWIDTH
  exact_limit: int = 200_000
  sketch_rows: int = 1000
  sketch_buckets: int = 20000
  sketch_hashes: int = 4
  sketch_width: float = 1.5
  askllm_fraction: float | None = None
  askllm_key: str = "score"
  seed: int = 0
  exact_size: bool = True

  def __post_init__(self):
    if self.method not in samplers.METHODS:
      raise ValueError(f"unknown selection method {self.method!r}; choose one of {samplers.METHODS}")
    if self.density not in DENSITY_MODES:
      raise ValueError(f"unknown density mode {self.density!r}; choose one of {DENSITY_MODES}")
    if not self.rates:
      raise ValueError("give at least one sampling rate")
    for r in self.rates:
      check_rate(r, "sampling rate")
    if self.askllm_fraction is not None:
      check_rate(self.askllm_fraction, "askllm_fraction")
    dk.KernelConfig(kernel=self.kernel, bandwidth=self.bandwidth)  # validates both

  @property
  def tag(self) -> str:
    from tokensift.selection.id_lists import rate_tag  # one naming rule for rates

    base = TAGS[self.method]
    return base if self.askllm_fraction is None else f"askllm{rate_tag(self.askllm_fraction)}_{base}"

  def sketch_config(self):
    from tokensift.selection.lsh_sketch import SketchConfig

    return SketchConfig(
      rows=self.sketch_rows,
      buckets=self.sketch_buckets,
      hashes=self.sketch_hashes,
      width=self.sketch_width,
      seed=self.seed,
    )


@dataclasses.dataclass
class Selection:
  """What ``select`` wrote: ``lists`` maps rate -> (id-list path, k); ``summary`` is ``select.json``."""

  lists: dict[float, tuple[Path, int]]
  summary: dict[str, Any]
  tasks: list[str] = dataclasses.field(default_factory=list)


def density_scores(x: np.ndarray, cfg: SelectConfig, *, progress: bool = False) -> tuple[np.ndarray, dict]:
  """Log density of every row of ``x`` ([n, d]) within ``x``; and how it was computed."""
  mode = cfg.density
  if mode == "auto":
    mode = "exact" if len(x) <= cfg.exact_limit else "sketch"
  if mode == "exact":
    logs, h = dk.log_kernel_sums(
      x, config=dk.KernelConfig(kernel=cfg.kernel, bandwidth=cfg.bandwidth), progress=progress, return_bandwidth=True
    )
    return logs.astype(np.float64), {"density": "exact", "kernel": cfg.kernel, "bandwidth": h}
  from tokensift.selection import lsh_sketch as ls

  sk_cfg = cfg.sketch_config()
  sketch = ls.build_sketch(x, sk_cfg, progress=progress)
  scores = ls.sketch_scores(sketch, x, progress=progress)
  return np.log(scores.astype(np.float64)), {"density": "sketch", "sketch": dataclasses.asdict(sk_cfg)}


def _pool(ids: list[str], cfg: SelectConfig, askllm_scores: str | os.PathLike | None) -> tuple[np.ndarray, dict]:
  """Indices (into ids) of the candidate pool, and counts for the summary."""
  if askllm_scores is None:
    if cfg.askllm_fraction is not None:
      raise ValueError("askllm_fraction needs ASK-LLM score files (--askllm_scores)")
    return np.arange(len(ids)), {}
  from tokensift.selection import topk

  rank_stats: dict[str, Any] = {}
  ranked, unranked = topk.rank(topk.load_score_records(askllm_scores), cfg.askllm_key, stats=rank_stats)
  pos = {doc_id: i for i, doc_id in enumerate(ids)}
  ranked_emb = [d for d in ranked if d in pos]
  frac = 100.0 if cfg.askllm_fraction is None else cfg.askllm_fraction
  take = keep_count(len(ranked_emb), frac)
  pool = np.array([pos[d] for d in ranked_emb[:take]], dtype=np.int64)
  info = {
    "askllm_scored": len(ranked),
    "askllm_unranked": unranked,
    "askllm_scored_not_embedded": len(ranked) - len(ranked_emb),
    "embedded_not_scored": len(ids) - len(ranked_emb),
    "askllm_fraction": frac,
    "pool": int(take),
    "askllm_repeated_ids": rank_stats["repeated_ids"],
  }
  return pool, info


def select(
  embeddings: str | os.PathLike,
  out_dir: str | os.PathLike,
  cfg: SelectConfig = SelectConfig(),
  *,
  askllm_scores: str | os.PathLike | None = None,
  base_task: str | None = None,
  progress: bool = False,
) -> Selection:
  """Runs the selection (see the module docstring); returns the lists written (and tasks registered)."""
  from tokensift.selection import embed_job, id_lists

  emb_stats: dict[str, Any] = {}
  ids, x = embed_job.load_embeddings(embeddings, stats=emb_stats)  # validated before anything is written
  n = len(ids)
  pool, info = _pool(ids, cfg, askllm_scores)
  info["embedded_repeated_ids"] = emb_stats["repeated_ids"]
  if pool.size == 0:
    raise ValueError(f"the candidate pool is empty ({info}); do the ASK-LLM scores and embeddings share ids?")
  logs, how = density_scores(x[pool], cfg, progress=progress)
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  pool_ids = [ids[i] for i in pool]
  _write_density(out / "density.parquet", pool_ids, logs)
  lists: dict[float, tuple[Path, int]] = {}
  per_rate = {}
  for rate in cfg.rates:
    k = keep_count(n, rate)
    if k > pool.size:
      raise ValueError(
        f"rate {rate:g}% of {n} documents is {k}, more than the {pool.size} in the candidate pool "
        f"(askllm_fraction={cfg.askllm_fraction}); lower the rate or raise the fraction"
      )
    chosen = samplers.sample(cfg.method, logs, k, seed=cfg.seed, exact=cfg.exact_size, log=True, ids=pool_ids)
    sel_ids = [ids[pool[i]] for i in chosen]
    path = id_lists.write_id_list(out / f"{cfg.tag}_r{id_lists.rate_tag(rate)}.txt", sel_ids)
    lists[rate] = (Path(path), len(sel_ids))
    per_rate[f"{rate:g}"] = {
      "file": posixpath.basename(str(path)),
      "k": len(sel_ids),
      "mean_log_density": math.fsum(logs[chosen]) / len(chosen) if len(chosen) else None,
    }
  summary = {
    "config": dataclasses.asdict(cfg),
    "embeddings": str(embeddings),
    "askllm_scores": None if askllm_scores is None else str(askllm_scores),
    "documents": n,
    "dim": int(x.shape[1]),
    "pool": int(pool.size),
    **info,
    **how,
    "mean_log_density_pool": math.fsum(logs) / len(logs),
    "rates": per_rate,
  }
  jobs.atomic_write_bytes(out / "select.json", json.dumps(summary, indent=1, default=str).encode())
  result = Selection(lists, summary)
  if base_task:
    from tokensift.selection import variants  # seqio: only where tasks are registered

    tasks = variants.register_variants(base_task, cfg.tag, {r: p for r, (p, _) in lists.items()})
    result.tasks = [t.name for t in tasks]
  return result


def _write_density(path: Path, ids: Sequence[str], logs: np.ndarray) -> None:
  import pyarrow as pa
  import pyarrow.parquet as pq

  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  pq.write_table(pa.table({"id": list(ids), "log_density": np.asarray(logs, np.float64)}), tmp)
  os.replace(tmp, path)


def register_density_variants(selection_dir: str | os.PathLike, base_task: str = "c4_en_raw") -> list:
  """Registers the variants of every id list a ``select`` run wrote into ``selection_dir`` (reads its
  ``select.json``): for use from other projects' task modules. Returns the seqio tasks."""
  from tokensift.selection import variants

  d = Path(selection_dir)
  summary_file = d / "select.json"
  if not summary_file.exists():
    raise FileNotFoundError(f"{str(summary_file)!r} does not exist; run `tokensift select` first")
  summary = json.loads(summary_file.read_text())
  cfg = summary["config"]
  tag = SelectConfig(**{**cfg, "rates": tuple(cfg["rates"])}).tag
  lists: dict[int | float | str, str | os.PathLike] = {
    float(rate): d / info["file"] for rate, info in summary["rates"].items()
  }
  return variants.register_variants(base_task, tag, lists)
