"""The refine job as an Apache Beam pipeline: the same shard files and ``.done`` markers as ``job.run_refine``
(``tokensift refine`` without ``--runner``), so refined tasks, variants and the pipeline read them unchanged.

Pipeline (one per run, over every unfinished shard ``i`` of ``n``)::

    Create([i, ...]) -> Reshuffle -> ReadShard      (the document layer: shard i's units, ``docs.read_units`` +
                                                     ``docs.unique_ids``, or a task's shard; cut into pieces of
                                                     ``piece_size`` items, exactly as ``jobs.run_sharded`` cuts)
                     -> Reshuffle -> RefinePiece    (programmer + executor on one piece; written as the piece
                                                     file + ``.meta.json`` of ``jobs.write_piece``)
                     -> GroupByKey(i) -> Commit     (``jobs.commit_shard``: stats merged, pieces streamed into
                                                     the shard file in piece order, marker, pieces removed)

Reading a shard is one sequential step (one worker per shard) because the ``repeated id`` rule is defined on the
shard's row order. ``spread_pieces=True`` (model programmers: the refinement is where the time goes) reshuffles
the pieces so that every worker refines; ``False`` (the rule programmer, ~6k documents per CPU-second: moving
the documents between processes would cost as much as refining them) refines each piece in the worker that
read it, fused into one stage, and the parallelism comes from the shards (use ``shards`` >= workers).
Restartable like the single-process job: finished shards (marker) are skipped, finished pieces (meta file) are
not refined again, and a rerun with another config into the same directory is refused.

The programmer is built on each worker by ``programmer_factory`` (a picklable callable), so the rule programmer
and a refining model (loaded once per worker process) both run here; a model on Beam workers runs on their CPUs
(or their own accelerators), see docs/jobs_at_scale.md.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Sequence

from tokensift.core import beam_util, docs, jobs, storage
from tokensift.refine import executor as ex
from tokensift.refine import job


def _shard_items(inp: docs.DocumentInput, shard: docs.ShardSpec):
  """Shard ``shard``'s items in row order, from the document layer (units for files, shard_info for tasks)."""
  if inp.task:
    return docs.unique_ids(docs.task_rows(inp.task, inp.split, shard, id_field=inp.id_field, text_field=inp.text_field))
  units = docs.shard_units(docs.plan_units(storage.expand(list(inp.files)), shard.count), shard)
  return docs.unique_ids(docs.read_units(units, id_field=inp.id_field, text_field=inp.text_field))


def read_pieces(index: int, *, inp: docs.DocumentInput, count: int, piece_size: int):
  """``((index, k), items)`` for the pieces of shard ``index``: ``piece_size`` items (Documents and Skips) each,
  the cut ``jobs.run_sharded`` makes; then ``(index, None)`` so that a shard without rows is committed too."""
  piece: list = []
  k = 0
  for item in _shard_items(inp, docs.ShardSpec(index, count)):
    piece.append(item)
    if len(piece) == piece_size:
      yield (index, k), piece
      piece, k = [], k + 1
  if piece:
    yield (index, k), piece


def _make_refine_fn(programmer_factory, count_tokens_factory, exec_config, out_dir, name, count, fmt, config_json):
  import apache_beam as beam

  class RefinePiece(beam.DoFn):
    def setup(self):
      self.programmer = programmer_factory()
      self.count_tokens = count_tokens_factory(self.programmer) if count_tokens_factory is not None else None

    def process(self, element):
      (index, k), items = element
      work = jobs.work_dir(out_dir, docs.ShardSpec(index, count).stem(name))
      if not jobs.piece_done(work, k):
        report = docs.ReadReport()
        batch = []
        for item in items:
          if isinstance(item, docs.Skip):
            report.skip(item.reason, item.where)
          else:
            batch.append(item)
        records = job.refine_documents(batch, self.programmer, exec_config=exec_config, count_tokens=self.count_tokens)
        if not storage.exists(storage.join(work, "config.json")):  # pieces may finish in any order here
          storage.makedirs(work)
          storage.atomic_write_bytes(storage.join(work, "config.json"), config_json.encode())
        jobs.write_piece(
          work, k, records, report, fmt=fmt, schema=None, summarize=job.summarize, config_json=config_json
        )
      yield index, k

  return RefinePiece()


def _commit(element, *, out_dir, name, count, fmt, config_json):
  index, ks = element
  ks = sorted(k for k in ks if k is not None)
  if ks != list(range(len(ks))):
    raise RuntimeError(f"refine shard {index}/{count}: pieces {ks} are not 0..{len(ks) - 1}")
  stem = docs.ShardSpec(index, count).stem(name)
  stats = jobs.commit_shard(out_dir, stem, len(ks), fmt=fmt, schema=None, config_json=config_json)
  return index, stats


def pending_shards(out_dir: str, name: str, count: int, config_json: str) -> list[int]:
  """Shards without a completion marker; ValueError when a marker or unfinished pieces come from another
  config (the single-process job's guard)."""
  todo = []
  for i in range(count):
    stem = docs.ShardSpec(i, count).stem(name)
    marker = storage.join(out_dir, f"{stem}.done")
    if storage.exists(marker):
      old = json.loads(storage.read_bytes(marker)).get("config")
      if old != json.loads(config_json):
        raise ValueError(
          f"{marker} was written with config {old} but this run uses {json.loads(config_json)}; "
          "use another output dir or delete it"
        )
      continue
    cfg_file = storage.join(jobs.work_dir(out_dir, stem), "config.json")
    if storage.exists(cfg_file) and storage.read_bytes(cfg_file).decode() != config_json:
      raise ValueError(
        f"unfinished pieces in {jobs.work_dir(out_dir, stem)} come from another config; delete "
        "them or use the same config"
      )
    todo.append(i)
  return todo


def run_refine_beam(
  *,
  inp: docs.DocumentInput,
  out_dir: str,
  programmer_factory: Callable[[], Any],
  programmer_name: str,
  shards: int = 1,
  fmt: str = "jsonl",
  piece_size: int = 256,
  exec_config: ex.ExecConfig = ex.DEFAULT_CONFIG,
  count_tokens_factory: Callable[[Any], job.TokenCounter] | None = None,
  config: dict[str, Any] | None = None,
  name: str = job.JOB_NAME,
  runner: str = beam_util.LOCAL,
  workers: int = 2,
  beam_args: Sequence[str] = (),
  spread_pieces: bool = True,
) -> dict[int, dict[str, Any]]:
  """Refines every shard of ``inp`` (``shards`` of them) in one Beam pipeline; returns ``{shard: stats}`` of the
  shards this run committed (finished shards are skipped). ``count_tokens_factory(programmer)`` (optional) gives
  the token counter on a worker. ``config`` and ``programmer_name`` make the same
  marker config as ``job.run_refine`` with the same arguments."""
  import apache_beam as beam

  if fmt not in jobs.FORMATS:
    raise ValueError(f"unknown output format {fmt!r}: use 'jsonl' or 'parquet'")
  if not isinstance(piece_size, int) or piece_size < 1:
    raise ValueError(f"piece_size must be an int >= 1, got {piece_size!r}")
  inp.validate()
  out_dir = str(out_dir)
  cfg = dict(config or {}, programmer=programmer_name, exec=dataclasses.asdict(exec_config))
  config_json = json.dumps(cfg, sort_keys=True, default=str)
  todo = pending_shards(out_dir, name, shards, config_json)
  if not todo:
    return {}
  storage.makedirs(out_dir)
  committed: dict[int, dict[str, Any]] = {}
  opts = beam_util.pipeline_options(runner, workers, beam_args)
  with beam.Pipeline(options=opts) as p:
    idx = p | "Shards" >> beam.Create(todo) | "SpreadShards" >> beam.Reshuffle()
    pieces = idx | "ReadShard" >> beam.FlatMap(read_pieces, inp=inp, count=shards, piece_size=piece_size)
    if spread_pieces:
      pieces = pieces | "SpreadPieces" >> beam.Reshuffle()
    done = pieces | "RefinePiece" >> beam.ParDo(
      _make_refine_fn(programmer_factory, count_tokens_factory, exec_config, out_dir, name, shards, fmt, config_json)
    )
    empty = idx | "ShardKeys" >> beam.Map(lambda i: (i, None))
    _ = (
      (done, empty)
      | "Flatten" >> beam.Flatten()
      | "ByShard" >> beam.GroupByKey()
      | "Commit" >> beam.Map(_commit, out_dir=out_dir, name=name, count=shards, fmt=fmt, config_json=config_json)
    )
  for i in todo:
    marker = storage.join(out_dir, f"{docs.ShardSpec(i, shards).stem(name)}.done")
    committed[i] = json.loads(storage.read_bytes(marker))["stats"]
  return committed
