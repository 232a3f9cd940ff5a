"""``tokensift train``: the embedded trainer (one machine), gin-configured SLM or CLM training.

Nothing heavy is imported at module level (``tokensift --help`` stays fast); the command imports JAX/TF when it
runs.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tokensift.cli.args import add_gin_args


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser("train", help="embedded trainer (one machine): gin-configured SLM or CLM training")
  add_run_gin_args(p)
  p.set_defaults(func=cmd_train)


def add_run_gin_args(p: argparse.ArgumentParser) -> None:
  """The trainer's gin flags (``train``, ``token-view``): gin files and bindings, and the run's directories."""
  add_gin_args(p, example="TRAIN_STEPS = 10")
  p.add_argument(
    "--model_dir",
    default=None,
    help="the run directory in t5x's MODEL_DIR sense (checkpoints, metrics; a rerun resumes): sets the "
    "gin macro MODEL_DIR",
  )
  p.add_argument("--ref_dir", default=None, help="sets the gin macro REF_DIR (reference-loss files)")


def parse_gin(args) -> None:
  """Parses ``--gin_file``/``--gin`` (+ ``--model_dir``/``--ref_dir`` macros); includes resolve against the
  current directory, the repository root and each gin file's folder and its parent."""
  import gin
  from tokensift.core import gin_parse, paths

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
  gin_parse.parse_files_and_bindings(args.gin_file, bindings)


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
  print(
    json.dumps(
      {
        "step": result.step,
        "resumed_from": result.resumed_from,
        "train": result.last_train,
        "eval": result.last_eval,
        "steps_per_second": round(result.steps_per_second, 3),
        "tokens_per_second": round(result.tokens_per_second, 1),
      },
      sort_keys=True,
    )
  )
  return 0
