"""``tokensift inspect``: print tokenized examples of a task decoded back to text."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser("inspect", help="print tokenized examples of a task decoded back to text")
  p.add_argument("task")
  p.add_argument("--split", default="validation")
  p.add_argument("-n", type=int, default=3, help="number of examples")
  p.add_argument("--length", type=int, default=128, help="targets sequence length (tokens)")
  p.set_defaults(func=cmd_inspect)


def cmd_inspect(args) -> int:
  import seqio
  import tokensift.all_tasks  # noqa: F401  (registers every task family)

  if args.task not in seqio.TaskRegistry.names():
    raise ValueError(f"unknown task {args.task!r}; `tokensift tasks` lists them")
  task = seqio.get_mixture_or_task(args.task)
  if args.split not in task.splits:
    raise ValueError(f"task {args.task!r} has no split {args.split!r}; it has {sorted(task.splits)}")
  vocab = task.output_features["targets"].vocabulary
  ds = task.get_dataset(sequence_length={"targets": args.length}, split=args.split, shuffle=False)
  for i, ex in enumerate(ds.take(args.n).as_numpy_iterator()):
    ids = ex["targets"].tolist()
    print(f"--- [{i}] id={ex['id'].decode()} tokens={len(ids)} (truncated to {args.length})")
    print(f"ids: {ids[:24]}{' ...' if len(ids) > 24 else ''}")
    print(vocab.decode(ids))
  return 0
