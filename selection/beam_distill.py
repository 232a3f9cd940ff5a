"""Scoring with a distilled head (``distill.score_embeddings``) as an Apache Beam pipeline: the same shard files
and ``.done`` markers as the single-process job (``tokensift score --head H --embeddings E`` without
``--runner``), so ``topk``, ``select`` and the variants read them unchanged.

Pipeline (one per run, over every unfinished shard ``i`` of ``n``)::

    Create([i, ...]) -> Reshuffle -> ScoreShard   (``distill.score_embeddings`` for shard i/n on one worker: it
                                                   reads only shard i's units of the embed job's output, writes
                                                   its pieces, the shard file and the marker)

A shard is scored on one worker: the head is a matrix product, so moving the embeddings between workers would
cost more than scoring them; the parallelism comes from the shards (use ``shards`` >= workers). Restartable as
the single-process job: finished shards (marker) are skipped before the pipeline starts, a shard's finished
pieces are not scored again, and a rerun with another head or input into the same directory is refused (one
line, before any worker starts).
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

from tokensift.core import beam_util, jobs, storage
from tokensift.selection import distill


def pending_shards(out_dir: str, count: int, config: dict[str, Any]) -> list[int]:
  """Shards of the scoring job without a completion marker; ValueError when a marker comes from another config
  (``jobs.run_sharded``'s guard, checked here before any worker starts)."""
  want = json.loads(json.dumps(config, sort_keys=True, default=str))
  todo = []
  for i in range(count):
    marker = storage.join(out_dir, f"{jobs.ShardSpec(i, count).stem(distill.SCORE_JOB)}.done")
    if not storage.exists(marker):
      todo.append(i)
      continue
    old = json.loads(storage.read_bytes(marker)).get("config")
    if old != want:
      raise ValueError(f"{marker} was written with config {old} but this run uses {want}; use another output dir")
  return todo


def _score_shard(index: int, *, head_dir: str, embeddings: str, out_dir: str, count: int, piece_size: int, fmt: str):
  res = distill.score_embeddings(
    head_dir, embeddings, out_dir, shard=jobs.ShardSpec(index, count), piece_size=piece_size, fmt=fmt, progress=False
  )
  return index, res.stats.get("records", 0)


def run_score_head_beam(
  head_dir: str | os.PathLike,
  embeddings: str | os.PathLike,
  out_dir: str | os.PathLike,
  *,
  shards: int = 1,
  piece_size: int = 4096,
  fmt: str = "jsonl",
  runner: str = beam_util.LOCAL,
  workers: int = 2,
  beam_args: Sequence[str] = (),
) -> dict[int, dict[str, Any]]:
  """Scores every shard (``shards`` of them) of an embed job's output with the head in one Beam pipeline; returns
  ``{shard: stats}`` of the shards this run committed (finished shards are skipped). The files are those of
  ``distill.score_embeddings`` on each shard ``i/shards``."""
  import apache_beam as beam

  if not isinstance(shards, int) or shards < 1:
    raise ValueError(f"shards must be an int >= 1, got {shards!r}")
  if fmt not in jobs.FORMATS:
    raise ValueError(f"unknown output format {fmt!r}: use 'jsonl' or 'parquet'")
  head_dir, embeddings, out_dir = str(head_dir), str(embeddings), str(out_dir)
  head = distill.load_head(head_dir)  # the one-line errors, before any worker starts
  distill.check_embedding_model(head, embeddings)
  distill.embedding_units(embeddings, shards)
  todo = pending_shards(out_dir, shards, distill.score_config(head, embeddings))
  if not todo:
    return {}
  storage.makedirs(out_dir)
  opts = beam_util.pipeline_options(runner, workers, beam_args)
  with beam.Pipeline(options=opts) as p:
    _ = (
      p
      | "Shards" >> beam.Create(todo)
      | "SpreadShards" >> beam.Reshuffle()
      | "ScoreShard"
      >> beam.Map(
        _score_shard,
        head_dir=head_dir,
        embeddings=embeddings,
        out_dir=out_dir,
        count=shards,
        piece_size=piece_size,
        fmt=fmt,
      )
    )
  committed = {}
  for i in todo:
    marker = storage.join(out_dir, f"{jobs.ShardSpec(i, shards).stem(distill.SCORE_JOB)}.done")
    committed[i] = json.loads(storage.read_bytes(marker))["stats"]
  return committed
