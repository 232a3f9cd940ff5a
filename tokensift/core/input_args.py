"""The one set of input flags of every document command (``refine``, ``score``, ``embed``, ``reference-losses``):
``--task/--split`` or ``--input`` globs, ``--id_field``, ``--text_field``, ``--shard i/n`` and ``--out`` (where the
command writes); and the ``docs.DocumentInput`` they describe (validated before any output exists, so a
misspelled task or a pattern that matches nothing leaves nothing behind)."""
from __future__ import annotations

import argparse

from tokensift.core import docs


def add_input_args(p: argparse.ArgumentParser, verb: str, out_help: str, *, files: bool = True,
                   default_task: str | None = None, several_splits: bool = False, split_help: str = "") -> None:
  """Adds the input flags to ``p``; ``verb`` says what the command does to the documents (``"scored"``);
  ``files=False`` for commands that need a task's tokenized features (only ``--task``); ``default_task``: the
  task read when neither ``--task`` nor ``--input`` is given; ``several_splits``: ``--split`` (also ``--splits``)
  takes a comma-separated list of a task's splits; ``split_help`` is added to its help."""
  if files:
    src = p.add_mutually_exclusive_group(required=default_task is None)
    src.add_argument("--task", default=default_task,
                     help=f"a registered seqio task; its source's rows (id, text) are {verb}")
    src.add_argument("--input", nargs="+", metavar="GLOB",
                     help="JSON-lines (.jsonl/.json, .gz) or Parquet files or globs, local or remote (gs://, s3://; "
                          "install gcsfs / s3fs); a directory is an error")
  else:
    p.add_argument("--task", default=default_task, required=default_task is None,
                   help=f"a registered seqio task whose documents are {verb}")
  several = several_splits or not files
  p.add_argument("--split", *(["--splits"] if several else []), dest="split", default="train",
                 help="task split (with --task)" + ("; several as a comma-separated list" if several else "") + split_help)
  if files:
    p.add_argument("--id_field", default="id",
                   help="the row field that is the document id (e.g. url); rows without one get their position "
                        "({file}:{row} for Parquet, {file}@{byte offset} for JSON lines); a repeated id is a "
                        "counted skip")
    p.add_argument("--text_field", default="text")
  p.add_argument("--shard", default="0/1",
                 help="INDEX/COUNT: this run reads only its own split of the input (files, row groups, byte "
                      "ranges or the task's shard_info) and writes {name}-INDEX-of-COUNT.*")
  p.add_argument("--out", required=True, help=out_help)


def add_mesh_args(p: argparse.ArgumentParser) -> None:
  """The mesh flags of every model command (``score``, ``embed``, ``refine``): one spelling everywhere."""
  p.add_argument("--mesh_data", type=int, default=-1, help="data-parallel mesh axis (-1: all local devices)")
  p.add_argument("--mesh_model", type=int, default=1, help="model-parallel mesh axis")


def input_from_args(args: argparse.Namespace) -> tuple[docs.DocumentInput, docs.ShardSpec]:
  """The validated input the flags describe and the shard (ValueError / FileNotFoundError / IsADirectoryError
  naming the bad value)."""
  shard = docs.ShardSpec.parse(args.shard)
  if getattr(args, "input", None):
    inp = docs.DocumentInput(files=tuple(args.input), id_field=args.id_field, text_field=args.text_field)
  else:
    inp = docs.DocumentInput(task=args.task, split=args.split, id_field=getattr(args, "id_field", "id"),
                             text_field=getattr(args, "text_field", "text"))
  return inp.validate(), shard
