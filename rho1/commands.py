"""``tokensift reference-losses``, ``tokensift train`` and ``tokensift token-view`` (Rho-1 SLM).

Nothing heavy is imported at module level (the CLI's ``--help`` stays fast); each command imports JAX/TF when
it runs.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tokensift.core.input_args import add_input_args


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser("reference-losses", help="per-token losses of a reference model over a task's documents "
                     "(sharded, resumable), for Rho-1 SLM training")
  add_input_args(p, "scored by the reference model ('targets')", "output directory (ref_losses_{split}-*-of-*"
                 ".parquet + .done markers)", files=False, default_task="owm_raw_smollm2")
  p.add_argument("--model", default="smollm2",
                 help="'smollm2' (offline SmolLM2-135M GGUF), an HF Llama directory or a .gguf file")
  p.set_defaults(split="train,validation")
  p.add_argument("--max_length", type=int, default=1024, help="tokens per document kept (longer ones truncated)")
  p.add_argument("--max_docs", type=int, default=None, help="only the first N documents of each split (of this shard)")
  p.add_argument("--batch_tokens", type=int, default=4096, help="tokens per forward pass")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--no_progress", action="store_true")
  from tokensift.core.multihost import add_distributed_args
  add_distributed_args(p)
  p.set_defaults(func=cmd_reference_losses)

  p = sub.add_parser("train", help="embedded trainer (one machine): gin-configured SLM or CLM training")
  _add_gin_args(p)
  p.set_defaults(func=cmd_train)

  p = sub.add_parser("token-view", help="HTML page colouring a document's tokens by SLM selection and excess "
                     "loss, from a trained run")
  _add_gin_args(p)
  p.add_argument("--out", required=True, help="output .html file")
  p.add_argument("--split", default="validation")
  p.add_argument("--doc", type=int, default=0, help="index of the document in the split")
  p.add_argument("--ratio", type=float, default=None, help="selection ratio (default: the run's LossConfig)")
  p.set_defaults(func=cmd_token_view)


def _add_gin_args(p: argparse.ArgumentParser) -> None:
  p.add_argument("--gin_file", action="append", required=True, help="gin file (repeatable; later ones override)")
  p.add_argument("--gin", action="append", default=[], help="gin binding, e.g. \"TRAIN_STEPS = 10\" (repeatable)")
  p.add_argument("--model_dir", default=None, help="sets the gin macro MODEL_DIR")
  p.add_argument("--ref_dir", default=None, help="sets the gin macro REF_DIR (reference-loss files)")


def cmd_reference_losses(args) -> int:
  from tokensift.core import docs
  from tokensift.rho1 import reference_losses
  splits = [s for s in args.split.split(",") if s]
  from tokensift.core import multihost
  shard = docs.ShardSpec.parse(args.shard)
  for split in splits:  # a misspelled task or split: one line, before anything is loaded or written
    docs.task_source(args.task, split)
  shard, p_index, p_count = multihost.initialize_from_args(args, shard)
  results = reference_losses.compute_reference_losses(
      task=args.task, out_dir=args.out, model=args.model, splits=splits, shard=shard,
      max_length=args.max_length, max_docs=args.max_docs, batch_tokens=args.batch_tokens, dtype=args.dtype,
      progress=not args.no_progress)
  for split, res in results.items():
    state = "already done" if res.skipped_done else "written"
    print(f"{split}: {res.path} ({state}) {json.dumps(res.stats, sort_keys=True)}")
    multihost.finish_hosts(args.out, reference_losses.job_name(split), p_index, p_count)
  return 0


def parse_gin(args) -> None:
  """Parses ``--gin_file``/``--gin`` (+ ``--model_dir``/``--ref_dir`` macros); includes resolve against the
  current directory, the repository root and each gin file's folder and its parent."""
  import gin
  from tokensift.core import paths
  gin.clear_config()
  search = [Path.cwd(), paths.repo_root()]
  for f in args.gin_file:
    if not Path(f).exists() and not any((s / f).exists() for s in search):
      raise FileNotFoundError(f"gin file {f!r} not found (searched {', '.join(map(str, search))})")
    search += [Path(f).resolve().parent, Path(f).resolve().parent.parent]
  for s in dict.fromkeys(str(s) for s in search):
    gin.add_config_file_search_path(s)
  bindings = list(args.gin)
  if args.model_dir:
    bindings.append(f"MODEL_DIR = {str(args.model_dir)!r}")
  if args.ref_dir:
    bindings.append(f"REF_DIR = {str(args.ref_dir)!r}")
  gin.parse_config_files_and_bindings(args.gin_file, bindings)


def configured_experiment():
  """(TrainConfig, network) from the parsed gin config (``loop.experiment``'s bindings)."""
  import gin
  from tokensift.trainer import loop
  return gin.get_configurable(loop.experiment)()


def cmd_train(args) -> int:
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  from tokensift.trainer import loop
  parse_gin(args)
  config, network = configured_experiment()
  result = loop.train(config, network)
  print(json.dumps({"step": result.step, "resumed_from": result.resumed_from, "train": result.last_train,
                    "eval": result.last_eval, "steps_per_second": round(result.steps_per_second, 3),
                    "tokens_per_second": round(result.tokens_per_second, 1)}, sort_keys=True))
  return 0


def cmd_token_view(args) -> int:
  from tokensift.trainer import token_view
  parse_gin(args)
  config, network = configured_experiment()
  path = token_view.write_view(config, network, args.out, split=args.split, doc_index=args.doc, ratio=args.ratio)
  print(f"wrote {path}")
  return 0
