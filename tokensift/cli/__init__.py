"""The ``tokensift`` command line: every argparse of the project lives in this package.

One module per subcommand (``tokensift.cli.refine``, ``.score``, ...) with ``register(subparsers)`` and the
command's function; the flags several commands share are defined once in ``tokensift.cli.args``. The modules are
imported here plainly (the layer contracts, ``.importlinter``, see them) and import nothing heavy at top level:
JAX loads only when a command runs, TensorFlow and seqio only for a command that reads a seqio task, so
``tokensift --help`` and ``tokensift refine --input ...`` start in well under a second.

One style for every subcommand: the same flag for the same idea (``--out`` where the command writes, ``--model_dir``
only for t5x's MODEL_DIR, ``--tokens_per_batch`` / ``--max_batch``, ``--mesh_data`` / ``--mesh_model``, ``--vocab``,
``--no_progress``; ``tests/test_cli_style.py`` checks it), defaults in ``--help``, user errors as one line
(``tokensift CMD: error: ...``, exit 2) and TensorFlow/XLA start-up output only with ``--verbose``.
"""

from __future__ import annotations

import argparse
import os
import sys

from tokensift.cli import (
  distill,
  embed,
  inspect_task,
  pipeline,
  reference_losses,
  refine,
  score,
  select,
  tasks,
  token_view,
  topk,
  train,
)

# The modules that contribute subcommands, in help order. Each defines register(subparsers).
COMMAND_MODULES = (
  tasks,
  inspect_task,
  reference_losses,
  train,
  token_view,
  score,
  topk,
  embed,
  distill,
  select,
  refine,
  pipeline,
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Every option's default in ``--help`` (argparse's ArgumentDefaultsHelpFormatter; unset ones, None / False / an
  empty list, say nothing) and descriptions printed as written (their examples)."""

  def _get_help_string(self, action: argparse.Action) -> str:
    return (super()._get_help_string(action) or "") if _shows_default(action.default) else (action.help or "")


def _shows_default(default) -> bool:
  return not (default is None or default is False or default == [] or default == "" or default == argparse.SUPPRESS)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
  actions = parser._actions  # noqa: SLF001  (argparse keeps the subcommands there)
  subparsers = argparse._SubParsersAction  # noqa: SLF001
  return {name: p for a in actions if isinstance(a, subparsers) for name, p in a.choices.items()}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="tokensift",
    formatter_class=HelpFormatter,
    description="Data-efficient LM pre-training: ProX refinement, ASK-LLM / DENSITY selection, Rho-1 SLM.",
  )
  parser.add_argument(
    "--data_dir", default=None, help="sample-data root (default: $TOKENSIFT_DATA_DIR, else ../shared/data)"
  )
  parser.add_argument(
    "--verbose",
    action="store_true",
    help="show TensorFlow/XLA start-up output (oneDNN, CUDA/cuInit notices) and library warnings",
  )
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  for mod in COMMAND_MODULES:
    mod.register(sub)
  for p in _subparsers(parser).values():
    p.formatter_class = HelpFormatter
    # also after the command (tokensift score ... --verbose); SUPPRESS keeps the global flag's value otherwise
    p.add_argument(
      "--verbose",
      action="store_true",
      default=argparse.SUPPRESS,
      help="show TensorFlow/XLA start-up output (same as tokensift --verbose)",
    )
    for action in p._actions:  # noqa: SLF001  an option without help text still shows its default
      if action.help is None and action.option_strings and _shows_default(action.default):
        action.help = "(default: %(default)s)"
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if not args.verbose:  # before TensorFlow/JAX are imported (the commands import them when they run)
    from tokensift.core import quiet

    quiet.silence_logging_env()
    if argv is None:  # the console script: its own process, so fd 2 may be filtered (never in-process callers)
      quiet.filter_native_stderr()
  if args.data_dir:
    os.environ["TOKENSIFT_DATA_DIR"] = args.data_dir
  if not getattr(args, "func", None):
    parser.print_help()
    return 2
  from tokensift.core.paths import ConfigError
  from tokensift.core.storage import LockedError

  if getattr(args, "task", None) and not getattr(args, "input", None):
    # commands reading a seqio task see every family (refined, selection variants); files need no seqio
    import tokensift.all_tasks  # noqa: F401
  try:
    return int(args.func(args) or 0)
  except (ConfigError, FileNotFoundError, IsADirectoryError, ValueError, LockedError) as e:
    message = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())  # one line (gin's span several)
    print(f"tokensift {args.command}: error: {message}", file=sys.stderr)
    return 2
