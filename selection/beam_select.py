"""DENSITY selection and ASK-LLM top-k as Apache Beam pipelines: the same files as ``select_job.select`` and
``topk.write_topk_lists``, for corpora that do not fit one machine (Dataflow, Flink, Spark; locally Beam's
in-process runner, see ``tokensift.core.beam_util``).

DENSITY (``run_select``), per DESIGN §5:
- embeddings are read file by file (the embed job's Parquet/JSON-lines shards), each row keyed by its position
  (file index, row) so that outputs come out in the single-process order;
- density: the RACE sketch's pass 1 is a ``CombineFn`` (``SketchCombineFn``) whose accumulators are per-worker
  sketches merged by adding counts (exact: integer sums do not depend on order), pass 2 a map with the merged
  sketch as a side input; exact kernel sums (``--density exact``, small N) gather the points on one worker;
- samplers: every method is "the k best by a per-document key" keyed by document id
  (``samplers.selection_keys``), so the choice is the single-process one whatever order Beam delivers;
- exact top-k without a global sort (``exact_top``): approximate quantiles bracket the k-th key, the elements
  inside the bracket (about 6N / quantiles of them) are sorted on one worker to find the exact cutoff.

ASK-LLM (``run_topk``): score records (``{id, score}``) ranked by score descending, id ascending, top
``k = keep.keep_count(n, rate)`` per rate (round half up, at least 1); records without a finite score are counted,
never ranked.

Not in the Beam pipeline (use the single-process command): an ASK-LLM pool inside DENSITY
(``askllm_fraction``) and Poisson-size inverse propensity (``exact_size=False``), whose constant needs the
sorted weights of the whole pool.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import posixpath
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from tokensift.core import beam_util, storage
from tokensift.selection import lsh_sketch, samplers
from tokensift.selection.keep import keep_count
from tokensift.selection.select_job import SelectConfig

QUANTILES = 10000  # quantile resolution of the top-k bracket: about 6 N / QUANTILES elements reach one worker
BATCH = 4096  # points per sketch / key batch


class SketchCombineFn:
  """Beam ``CombineFn`` (built lazily so that importing this module does not import Beam): batches of points
  ``(ids, x [b, d])`` -> one ``lsh_sketch.Sketch``; accumulators are partial sketches merged exactly."""

  def __new__(cls, config: lsh_sketch.SketchConfig, dim: int):
    import apache_beam as beam

    class _Fn(beam.CombineFn):
      def create_accumulator(self):
        return None  # allocated on first input: an empty [R, B] sketch is 160 MB at the paper's size

      def add_input(self, acc, batch):
        _, x = batch
        return lsh_sketch.build_sketch(x, config, sketch=acc)

      def merge_accumulators(self, accs):
        parts = [a for a in accs if a is not None]
        return lsh_sketch.merge_sketches(parts) if parts else None

      def extract_output(self, acc):
        return acc if acc is not None else lsh_sketch.empty_sketch(config, dim)

    return _Fn()


def _check_finite_batch(batch, dim: int):
  ids, x = batch
  if x.shape[1] != dim:
    raise ValueError(f"embeddings have dimension {x.shape[1]}, expected {dim} (ids {ids[:5]})")
  bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
  if bad.size:
    raise ValueError(f"{bad.size} embeddings contain NaN or inf (ids {[ids[i] for i in bad[:5]]})")
  return batch


def _embedding_rows(file: tuple[int, str]) -> Iterator[tuple[tuple[int, int], str, np.ndarray]]:
  """((file index, row), id, float32 [d]) for every row of one embed-job output file."""
  from tokensift.selection import embed_job

  fi, path = file
  ids, rows = embed_job.read_embeddings_file(path)
  for r, (doc_id, vec) in enumerate(zip(ids, rows)):
    yield (fi, r), doc_id, np.asarray(vec, np.float32)


def _batches(rows: Sequence[tuple[Any, str, np.ndarray]]):
  rows = list(rows)
  return [r[0] for r in rows], [r[1] for r in rows], np.stack([r[2] for r in rows])


def _exact_density(rows, cfg: SelectConfig):
  from tokensift.selection.select_job import density_scores

  rows = sorted(rows, key=lambda r: r[0])
  x = np.stack([r[2] for r in rows])
  logs, how = density_scores(x, dataclasses.replace(cfg, density="exact"))
  return [(r[0], r[1], float(v)) for r, v in zip(rows, logs)], how


def _sketch_density(batch, sketch):
  pos, ids, x = batch
  scores = lsh_sketch.sketch_scores(sketch, x)
  return [(p, i, float(np.log(np.float64(s)))) for p, i, s in zip(pos, ids, scores)]


def _keys(rows, cfg: SelectConfig):
  """(pos, id, log density) rows -> (t, (pos, id, log density)) with t = (-key, id): ascending t = best first."""
  rows = list(rows)
  ids = [r[1] for r in rows]
  keys = samplers.selection_keys(cfg.method, np.array([r[2] for r in rows]), ids, seed=cfg.seed, log=True)
  return [((-float(k), r[1]), r) for k, r in zip(keys, rows)]


def _bracket(n: int, k: int, q: Sequence[Any]):
  """(lo, hi) keys around the k-th smallest of n, from approximate quantiles q (min .. max)."""
  if k <= 0 or n == 0:
    return None
  nq = len(q) - 1
  eps = min(1e-2, 1.0 / (nq + 1)) if nq > 0 else 1.0
  j_lo = math.floor((k - 2 * eps * n - 1) * nq / n)
  j_hi = math.ceil((k + 2 * eps * n + 1) * nq / n)
  return q[max(0, min(nq, j_lo))], q[max(0, min(nq, j_hi))]


def _cutoff(bracket, below: int, inside: list, k: int):
  if bracket is None:
    return None
  inside = sorted(inside)
  if not below < k <= below + len(inside):
    raise RuntimeError(
      f"top-k bracket missed rank {k}: {below} keys below it, {len(inside)} inside "
      "(the quantile sketch's error bound was exceeded; raise beam_select.QUANTILES)"
    )
  return inside[k - below - 1]


def exact_top(keyed, n, k_of_n, *, label: str):
  """The elements ``(t, value)`` of ``keyed`` whose ``t`` is among the ``k = k_of_n(n)`` smallest (t distinct);
  ``n`` is a singleton PCollection with the element count."""
  import apache_beam as beam
  from apache_beam.pvalue import AsList, AsSingleton

  q = (
    keyed
    | f"{label}/Q" >> beam.Map(lambda e: e[0])
    | f"{label}/Quantiles" >> beam.ApproximateQuantiles.Globally(QUANTILES + 1)
  )
  bracket = n | f"{label}/Bracket" >> beam.Map(lambda c, qs: _bracket(c, k_of_n(c), qs), qs=AsSingleton(q))
  below = (
    keyed
    | f"{label}/Below" >> beam.Filter(lambda e, b: b is not None and e[0] < b[0], b=AsSingleton(bracket))
    | f"{label}/CountBelow" >> beam.combiners.Count.Globally()
  )
  inside = keyed | f"{label}/Inside" >> beam.FlatMap(
    lambda e, b: [e[0]] if b is not None and b[0] <= e[0] <= b[1] else [], b=AsSingleton(bracket)
  )
  cut = bracket | f"{label}/Cutoff" >> beam.Map(
    lambda b, c, ins, nn: _cutoff(b, c, ins, k_of_n(nn)), c=AsSingleton(below), ins=AsList(inside), nn=AsSingleton(n)
  )
  return keyed | f"{label}/Keep" >> beam.Filter(lambda e, t: t is not None and e[0] <= t, t=AsSingleton(cut))


def first_of_each_id(rows, id_of, pos_of, label: str):
  """Keeps, for every id, the element with the smallest position (the first in shard order), as the
  single-process readers do (``embed_job.first_of_each``, ``topk.rank``): ids from a field such as ``url`` are
  unique within a job shard only. Returns (kept elements, singleton count of dropped repeats)."""
  import apache_beam as beam

  grouped = rows | f"{label}/ById" >> beam.Map(lambda e: (id_of(e), e)) | f"{label}/Group" >> beam.GroupByKey()
  kept = grouped | f"{label}/First" >> beam.Map(lambda kv: min(kv[1], key=pos_of))
  repeats = (
    grouped
    | f"{label}/Extra" >> beam.Map(lambda kv: sum(1 for _ in kv[1]) - 1)
    | f"{label}/Sum" >> beam.CombineGlobally(sum)
  )
  return kept, repeats


def _write_parquet_from_jsonl(src: str, dst: str, schema) -> str:
  import pyarrow as pa
  import pyarrow.parquet as pq

  fs, path = storage.url_to_fs(dst)
  tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.tmp-beam")
  with fs.open(tmp, "wb") as f, pq.ParquetWriter(f, schema) as w:
    with storage.open_file(src, "rt") as lines:
      buf = []
      for line in lines:
        buf.append(json.loads(line))
        if len(buf) == 65536:
          w.write_table(pa.Table.from_pylist(buf, schema=schema))
          buf = []
      if buf:
        w.write_table(pa.Table.from_pylist(buf, schema=schema))
  fs.mv(tmp, path)
  storage.remove(src)
  return dst


def run_select(
  embeddings: str | os.PathLike,
  out_dir: str | os.PathLike,
  cfg: SelectConfig = SelectConfig(),
  *,
  runner: str = beam_util.LOCAL,
  workers: int = 2,
  beam_args: Sequence[str] = (),
) -> dict[str, Any]:
  """DENSITY selection on Beam; writes what ``select_job.select`` writes (id lists, density.parquet,
  select.json) and returns the summary."""
  import apache_beam as beam
  import pyarrow as pa
  from apache_beam.pvalue import AsSingleton
  from tokensift.selection import embed_job, id_lists

  if cfg.askllm_fraction is not None or not cfg.exact_size:
    raise ValueError(
      "the Beam select pipeline runs exact-size samplers over all embedded documents; for an "
      "ASK-LLM pool (askllm_fraction) or Poisson sampling use the single-process `tokensift select`"
    )
  files = [str(f) for f in embed_job.embedding_files(embeddings)]
  n_rows, dim = _count_and_dim(files)
  if n_rows == 0:
    raise ValueError(f"no embeddings in {str(embeddings)!r}")
  mode = cfg.density if cfg.density != "auto" else ("exact" if n_rows <= cfg.exact_limit else "sketch")
  out = str(out_dir)
  fs, out_path = storage.url_to_fs(out)
  fs.makedirs(out_path, exist_ok=True)
  with beam.Pipeline(options=beam_util.pipeline_options(runner, workers, beam_args)) as p:
    all_rows = (
      p
      | "Files" >> beam.Create(list(enumerate(files)))
      | "Reshuffle" >> beam.Reshuffle()
      | "Rows" >> beam.FlatMap(_embedding_rows)
    )
    rows, repeats = first_of_each_id(all_rows, lambda r: r[1], lambda r: r[0], "UniqueIds")
    batches = (
      rows
      | "Batch" >> beam.BatchElements(min_batch_size=BATCH, max_batch_size=BATCH)
      | "ToArrays" >> beam.Map(_batches)
      | "Finite" >> beam.Map(lambda b: (b[0], *_check_finite_batch((b[1], b[2]), dim)))
    )
    if mode == "exact":
      dens = (
        batches
        | "Unbatch" >> beam.FlatMap(lambda b: list(zip(*b)))
        | "All" >> beam.combiners.ToList()
        | "Exact" >> beam.Map(_exact_density, cfg=cfg)
      )
      how_pc = dens | "How" >> beam.Map(lambda d: d[1])
      scored = dens | "Scores" >> beam.FlatMap(lambda d: d[0])
    else:
      sk_cfg = cfg.sketch_config()
      sketch = (
        batches
        | "ForSketch" >> beam.Map(lambda b: (b[1], b[2]))
        | "Pass1" >> beam.CombineGlobally(SketchCombineFn(sk_cfg, dim))
      )
      scored = batches | "Pass2" >> beam.FlatMap(_sketch_density, sketch=AsSingleton(sketch))
      how_pc = p | "HowSketch" >> beam.Create([{"density": "sketch", "sketch": dataclasses.asdict(sk_cfg)}])
    n = scored | "N" >> beam.combiners.Count.Globally()
    dens_tmp = posixpath.join(out, ".density.jsonl.tmp-beam")
    dens_done = beam_util.write_ordered_lines(
      scored | "DensityLines" >> beam.Map(lambda r: (r[0], json.dumps({"id": r[1], "log_density": r[2]}))),
      dens_tmp,
      label="WriteDensity",
    )
    schema = pa.schema([("id", pa.string()), ("log_density", pa.float64())])
    _ = dens_done | "DensityParquet" >> beam.Map(
      lambda src: _write_parquet_from_jsonl(src, posixpath.join(out, "density.parquet"), schema)
    )
    keyed = (
      scored
      | "KeyBatch" >> beam.BatchElements(min_batch_size=BATCH, max_batch_size=BATCH)
      | "Keys" >> beam.FlatMap(_keys, cfg=cfg)
    )
    stats = []
    for rate in cfg.rates:
      tag = f"R{id_lists.rate_tag(rate)}"
      kept = exact_top(keyed, n, lambda c, r=rate: keep_count(c, r), label=f"Top{tag}")
      name = f"{cfg.tag}_r{id_lists.rate_tag(rate)}.txt"
      beam_util.write_ordered_lines(
        kept | f"Lines{tag}" >> beam.Map(lambda e: (e[0], e[1][1])), posixpath.join(out, name), label=f"Write{tag}"
      )
      # exactly rounded means (order-free, bounded accumulators), as the single-process select computes them
      stats.append(
        kept
        | f"Stats{tag}" >> beam.Map(lambda e: e[1][2])
        | f"Mean{tag}" >> beam.CombineGlobally(ExactMeanFn())
        | f"Summ{tag}" >> beam.Map(lambda m, rr=rate, nm=name: (rr, nm, m[1], m[0]))
      )
    pool_mean = (
      scored
      | "PoolLogs" >> beam.Map(lambda r: r[2])
      | "PoolMean" >> beam.CombineGlobally(ExactMeanFn())
      | "PoolMeanValue" >> beam.Map(lambda m: m[0])
    )
    summary = {"config": dataclasses.asdict(cfg), "embeddings": str(embeddings), "askllm_scores": None, "dim": dim}
    _ = (
      stats
      | "AllStats" >> beam.Flatten()
      | "StatsList" >> beam.combiners.ToList()
      | "Summary"
      >> beam.Map(
        _write_summary,
        out=out,
        summary=summary,
        how=AsSingleton(how_pc),
        pool_mean=AsSingleton(pool_mean),
        n=AsSingleton(n),
        repeats=AsSingleton(repeats),
      )
    )
  with fs.open(posixpath.join(out_path, "select.json"), "rb") as f:
    return json.loads(f.read())


def _compress(partials: list[float]) -> list[float]:
  """Shewchuk's non-overlapping partials of ``partials`` (the recipe behind ``math.fsum``): same exact sum, few
  floats, so an accumulator stays small whatever it has absorbed."""
  out: list[float] = []
  for x in partials:
    i = 0
    for y in out:
      if abs(x) < abs(y):
        x, y = y, x
      hi = x + y
      lo = y - (hi - x)
      if lo:
        out[i] = lo
        i += 1
      x = hi
    out[i:] = [x]
  return out


class ExactMeanFn:
  """Beam ``CombineFn`` (built lazily): ``(mean, count)`` of floats with an exactly rounded sum (``math.fsum``), so
  the result does not depend on how Beam splits and merges; accumulators are bounded lists of partials."""

  def __new__(cls):
    import apache_beam as beam

    class _Fn(beam.CombineFn):
      def create_accumulator(self):
        return [], 0

      def add_input(self, acc, x):
        parts, n = acc
        parts.append(float(x))
        return (_compress(parts) if len(parts) > 64 else parts), n + 1

      def merge_accumulators(self, accs):
        parts, n = [], 0
        for p, c in accs:
          parts, n = _compress(parts + p), n + c
        return parts, n

      def extract_output(self, acc):
        parts, n = acc
        return (math.fsum(parts) / n if n else None), n

    return _Fn()


def _write_summary(stats, out: str, summary: dict, how: dict, pool_mean: float, n: int, repeats: int) -> None:
  rates = {f"{r:g}": {"file": name, "k": k, "mean_log_density": m} for r, name, k, m in sorted(stats)}
  full = {
    **summary,
    "documents": n,
    "pool": n,
    "embedded_repeated_ids": repeats,
    **how,
    "mean_log_density_pool": pool_mean,
    "rates": rates,
  }
  fs, path = storage.url_to_fs(posixpath.join(out, "select.json"))
  with fs.open(path + ".tmp-beam", "wb") as f:
    f.write(json.dumps(full, indent=1, default=str).encode())  # pyright: ignore[reportArgumentType]  (opened "wb")
  fs.mv(path + ".tmp-beam", path)


def _count_and_dim(files: Sequence[str]) -> tuple[int, int]:
  """Rows over all files (Parquet footers only) and the dimension of the first embedding."""
  import pyarrow.parquet as pq
  from tokensift.core import jobs

  n, dim = 0, 0
  for f in files:
    if f.endswith(".parquet"):
      pf = pq.ParquetFile(f)
      n += pf.metadata.num_rows
      if not dim and pf.metadata.num_rows:
        dim = len(pf.read_row_group(0, columns=["embedding"]).column(0)[0])
    else:
      recs = jobs.read_records(f)
      n += len(recs)
      if not dim and recs:
        dim = len(recs[0]["embedding"])
  return n, dim


def _score_rows(file: tuple[int, str]) -> Iterator[tuple[tuple[int, int], dict[str, Any]]]:
  """((file index, row), record) for every record of one score file."""
  from tokensift.core import jobs

  fi, path = file
  for r, rec in enumerate(jobs.iter_records(path)):
    yield (fi, r), rec


def run_topk(
  scores: str | os.PathLike,
  rates: Sequence[float],
  *,
  out_dir: str | os.PathLike | None = None,
  key: str = "score",
  method: str = "askllm",
  runner: str = beam_util.LOCAL,
  workers: int = 2,
  beam_args: Sequence[str] = (),
) -> dict[float, str]:
  """ASK-LLM top-k id lists on Beam: the files ``topk.write_topk_lists`` writes. Returns ``{rate: path}``."""
  import apache_beam as beam
  from tokensift.core import jobs
  from tokensift.selection.topk import SCORE_JOB, list_name

  files = [str(f) for f in jobs.finished_files(scores, SCORE_JOB, what="scores")]
  src = Path(scores)
  out = str(out_dir) if out_dir is not None else str((src if src.is_dir() else src.parent) / "selections")

  def ranked(r):
    v = r[1].get(key)
    if v is None or not isinstance(v, (int, float)) or math.isnan(v):
      return []
    return [((-float(v), str(r[1]["id"])), str(r[1]["id"]))]

  written = {}
  with beam.Pipeline(options=beam_util.pipeline_options(runner, workers, beam_args)) as p:
    all_recs = (
      p
      | "Files" >> beam.Create(list(enumerate(files)))
      | "Reshuffle" >> beam.Reshuffle()
      | "Records" >> beam.FlatMap(_score_rows)
    )
    recs, _ = first_of_each_id(all_recs, lambda r: str(r[1].get("id")), lambda r: r[0], "UniqueIds")
    keyed = recs | "Rank" >> beam.FlatMap(ranked)
    n = keyed | "N" >> beam.combiners.Count.Globally()
    for rate in rates:
      tag = f"R{rate:g}".replace(".", "p")
      kept = exact_top(keyed, n, lambda c, r=rate: keep_count(c, r), label=f"Top{tag}")
      path = posixpath.join(out, list_name(rate, method))
      beam_util.write_ordered_lines(kept | f"Lines{tag}" >> beam.Map(lambda e: (e[0], e[1])), path, label=f"Write{tag}")
      written[rate] = path
  return written
