"""``tokensift tasks``: list the registered seqio tasks."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser("tasks", help="list the registered tokensift seqio tasks")
  p.add_argument("--all", action="store_true", help="include tasks registered by other packages")
  p.set_defaults(func=cmd_tasks)


def cmd_tasks(args) -> int:
  import seqio
  import tokensift.all_tasks  # registers every task family
  import tokensift.tasks

  names = tokensift.tasks.register_all()
  shown = sorted(seqio.TaskRegistry.names()) if args.all else sorted(set(names))
  for name in shown:
    task = seqio.get_mixture_or_task(name)
    vocab = task.output_features["targets"].vocabulary
    print(f"{name:40s} splits={','.join(sorted(task.splits))}  vocab={type(vocab).__name__}({vocab.vocab_size})")
  return 0
