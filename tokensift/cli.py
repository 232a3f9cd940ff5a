"""The ``tokensift`` command line.

Each subcommand lives in a small module with ``register(subparsers)``; those modules import nothing heavy at
top level (TensorFlow/JAX load only when a command runs), so ``tokensift --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Modules that contribute subcommands, in help order. Each defines register(subparsers).
COMMAND_MODULES = [
    "tokensift.commands_tasks",
    "tokensift.rho1.commands",
    "tokensift.trainer.commands",
    "tokensift.selection.commands_score",
    "tokensift.selection.commands_density",
    "tokensift.refine.commands",
    "tokensift.pipeline.commands",
]


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="tokensift",
      description="Data-efficient LM pre-training: ProX refinement, ASK-LLM / DENSITY selection, Rho-1 SLM.")
  parser.add_argument("--data_dir", default=None,
                      help="sample-data root (default: $TOKENSIFT_DATA_DIR, else ../shared/data)")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  for mod in COMMAND_MODULES:
    importlib.import_module(mod).register(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.data_dir:
    os.environ["TOKENSIFT_DATA_DIR"] = args.data_dir
  if not getattr(args, "func", None):
    parser.print_help()
    return 2
  from tokensift.core.paths import ConfigError
  from tokensift.core.storage import LockedError
  if getattr(args, "task", None):  # commands reading a seqio task see every family (refined, selection variants)
    import tokensift.all_tasks  # noqa: F401
  try:
    return int(args.func(args) or 0)
  except (ConfigError, FileNotFoundError, IsADirectoryError, ValueError, LockedError) as e:
    print(f"tokensift {args.command}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
