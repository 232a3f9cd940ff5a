"""The document-input arguments shared by ``tokensift score`` and ``tokensift embed``: a seqio task or files,
and the rows they yield (``(id, text)`` or counted skips, as ``score_job.task_rows`` / ``file_rows``)."""
from __future__ import annotations

import argparse
from typing import Any, Iterable


def add_document_args(p: argparse.ArgumentParser, verb: str, out_help: str) -> None:
  """Adds --task | --input, --split, --id_field, --text_field, --id_from and --out to ``p``; ``verb`` names
  what the command does to the documents (``"scored"``), ``out_help`` describes the output directory."""
  src = p.add_mutually_exclusive_group(required=True)
  src.add_argument("--task", help=f"a registered seqio task; its source's id/text are {verb}")
  src.add_argument("--input", nargs="+", help="JSON-lines (.jsonl/.json/.gz) or Parquet files / globs")
  p.add_argument("--split", default="train", help="task split (with --task)")
  p.add_argument("--id_field", default="id")
  p.add_argument("--text_field", default="text")
  p.add_argument("--id_from", default="require",
                 help="rows without an id (with --input): 'require' = counted skip, 'line' = {file}:{line}, or a "
                      "field to use instead (e.g. url)")
  p.add_argument("--out", required=True, help=out_help)


def document_rows(args: argparse.Namespace) -> tuple[Iterable[Any], str]:
  """(rows, input description) for the parsed arguments; the description goes into the job's config guard, so
  a resumed job refuses a different input."""
  from tokensift.selection.score_job import file_rows, task_rows
  if args.task:
    return task_rows(args.task, args.split), f"task:{args.task}:{args.split}"
  rows = file_rows(args.input, id_field=args.id_field, text_field=args.text_field, id_from=args.id_from)
  return rows, "files:" + ",".join(args.input) + f"|{args.id_field}|{args.text_field}|{args.id_from}"
