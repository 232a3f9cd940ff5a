"""``tokensift reference-losses``: the reference model's per-token losses for Rho-1 SLM (``reference_losses``).

Nothing heavy is imported at module level (the CLI's ``--help`` stays fast); each command imports JAX/TF when
it runs (TensorFlow and seqio only with ``--task``).
"""

from __future__ import annotations

import argparse
import json

from tokensift.cli.args import add_distributed_args, add_input_args, add_progress_arg, input_from_args


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
    "reference-losses",
    help="per-token losses of a reference model over a task's documents (sharded, resumable), for Rho-1 SLM training",
  )
  add_input_args(
    p,
    "scored by the reference model ('targets')",
    "output directory (ref_losses_{split}-*-of-*.parquet + .done markers)",
    default_task="owm_raw_smollm2",
    several_splits=True,
    split_help=" (default: train,validation; with --input one name, default train, that names the output files)",
  )
  p.add_argument(
    "--model", default="smollm2", help="'smollm2' (offline SmolLM2-135M GGUF), an HF Llama directory or a .gguf file"
  )
  p.set_defaults(split=None)
  p.add_argument("--max_length", type=int, default=1024, help="tokens per document kept (longer ones truncated)")
  p.add_argument("--max_docs", type=int, default=None, help="only the first N documents of each split (of this shard)")
  p.add_argument("--tokens_per_batch", type=int, default=4096, help="tokens per forward pass")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  add_progress_arg(p)
  add_distributed_args(p)
  p.set_defaults(func=cmd_reference_losses)


def cmd_reference_losses(args) -> int:
  from tokensift.core import docs
  from tokensift.rho1 import reference_losses
  from tokensift.core import multihost

  shard = docs.ShardSpec.parse(args.shard)
  if args.input:  # files: tokenized with the reference model's tokenizer; one output split (default train)
    inp, shard = input_from_args(args)
    splits, task = [args.split or "train"], None
    if "," in splits[0]:
      raise ValueError(
        f"--split {args.split!r} with --input: the files are one split; give one name (it names the output files)"
      )
  else:
    inp, task = None, args.task
    splits = [s for s in (args.split or "train,validation").split(",") if s]
    for split in splits:  # a misspelled task or split: one line, before anything is loaded or written
      docs.task_source(args.task, split)
  shard, p_index, p_count = multihost.initialize_from_args(args, shard)
  results = reference_losses.compute_reference_losses(
    task=task,
    inp=inp,
    out_dir=args.out,
    model=args.model,
    splits=splits,
    shard=shard,
    max_length=args.max_length,
    max_docs=args.max_docs,
    batch_tokens=args.tokens_per_batch,
    dtype=args.dtype,
    progress=not args.no_progress,
  )
  for split, res in results.items():
    state = "already done" if res.skipped_done else "written"
    print(f"{split}: {res.path} ({state}) {json.dumps(res.stats, sort_keys=True)}")
    multihost.finish_hosts(args.out, reference_losses.job_name(split), p_index, p_count)
  return 0
