"""The flags shared by several commands, each defined once: the document input (``--task/--split`` or ``--input``
globs, ``--id_field``, ``--text_field``, ``--shard``, ``--out``), the device mesh, multi-host JAX, the Beam runner,
progress bars and gin files. Light: argparse and the document layer's ``DocumentInput`` only."""

from __future__ import annotations

import argparse
import json

from tokensift.core import docs


def add_input_args(
  p: argparse.ArgumentParser,
  verb: str,
  out_help: str,
  *,
  files: bool = True,
  default_task: str | None = None,
  several_splits: bool = False,
  split_help: str = "",
) -> argparse._MutuallyExclusiveGroup | None:
  """Adds the input flags to ``p``; ``verb`` says what the command does to the documents (``"scored"``);
  ``files=False`` for commands that need a task's tokenized features (only ``--task``); ``default_task``: the
  task read when neither ``--task`` nor ``--input`` is given; ``several_splits``: ``--split`` (also ``--splits``)
  takes a comma-separated list of a task's splits; ``split_help`` is added to its help. Returns the
  ``--task``/``--input`` group (None with ``files=False``), so a command can add another source to it."""
  if files:
    src = p.add_mutually_exclusive_group(required=default_task is None)
    src.add_argument(
      "--task", default=default_task, help=f"a registered seqio task; its source's rows (id, text) are {verb}"
    )
    src.add_argument(
      "--input",
      nargs="+",
      metavar="GLOB",
      help="JSON-lines (.jsonl/.json, .gz) or Parquet files or globs, local or remote (gs://, s3://; "
      "install gcsfs / s3fs); a directory is an error",
    )
  else:
    p.add_argument(
      "--task",
      default=default_task,
      required=default_task is None,
      help=f"a registered seqio task whose documents are {verb}",
    )
  several = several_splits or not files
  p.add_argument(
    "--split",
    *(["--splits"] if several else []),
    dest="split",
    default="train",
    help="task split (with --task)" + ("; several as a comma-separated list" if several else "") + split_help,
  )
  if files:
    p.add_argument(
      "--id_field",
      default="id",
      help="the row field that is the document id (e.g. url); rows without one get their position "
      "({file}:{row} for Parquet, {file}@{byte offset} for JSON lines); a repeated id is a "
      "counted skip",
    )
    p.add_argument("--text_field", default="text")
  p.add_argument(
    "--shard",
    default="0/1",
    help="INDEX/COUNT: this run reads only its own split of the input (files, row groups, byte "
    "ranges or the task's shard_info) and writes {name}-INDEX-of-COUNT.*",
  )
  p.add_argument("--out", required=True, help=out_help)
  return src if files else None


def input_from_args(args: argparse.Namespace) -> tuple[docs.DocumentInput, docs.ShardSpec]:
  """The validated input the flags describe and the shard (ValueError / FileNotFoundError / IsADirectoryError
  naming the bad value)."""
  shard = docs.ShardSpec.parse(args.shard)
  if getattr(args, "input", None):
    inp = docs.DocumentInput(files=tuple(args.input), id_field=args.id_field, text_field=args.text_field)
  else:
    inp = docs.DocumentInput(
      task=args.task,
      split=args.split,
      id_field=getattr(args, "id_field", "id"),
      text_field=getattr(args, "text_field", "text"),
    )
  return inp.validate(), shard


def add_mesh_args(p: argparse.ArgumentParser) -> None:
  """The mesh flags of every model command (``score``, ``embed``, ``refine``): one spelling everywhere."""
  p.add_argument("--mesh_data", type=int, default=-1, help="data-parallel mesh axis (-1: all local devices)")
  p.add_argument("--mesh_model", type=int, default=1, help="model-parallel mesh axis")


def add_distributed_args(p: argparse.ArgumentParser) -> None:
  """Multi-host JAX (``tokensift.core.multihost.initialize_from_args`` reads them)."""
  p.add_argument(
    "--distributed",
    action="store_true",
    help="multi-host: jax.distributed.initialize() (also $TOKENSIFT_DISTRIBUTED=1); each process "
    "runs job shard (i*P + process_index)/(n*P) on its local devices",
  )
  p.add_argument("--coordinator_address", default=None, help="host:port of process 0 (auto on Cloud TPU / SLURM)")
  p.add_argument("--num_processes", type=int, default=None)
  p.add_argument("--process_id", type=int, default=None)


def add_runner_args(p: argparse.ArgumentParser) -> None:
  """``--runner`` / ``--beam_workers`` / ``--beam_args``: the same three flags on every command with a Beam
  pipeline. Without ``--runner`` the command runs in this process."""
  p.add_argument(
    "--runner",
    default=None,
    help="run as an Apache Beam pipeline: 'local' (Beam's in-process FnApiRunner, works offline) or a "
    "Beam runner name such as DataflowRunner / FlinkRunner / SparkRunner (default: this process)",
  )
  p.add_argument("--beam_workers", type=int, default=2, help="worker processes of the local Beam runner")
  p.add_argument(
    "--beam_args",
    default="",
    help='Beam pipeline options passed through, one string, e.g. "--project=P --region=R --temp_location=gs://B/tmp"',
  )


def beam_args_of(args: argparse.Namespace) -> list[str]:
  """``--beam_args`` split as a shell would."""
  import shlex

  return shlex.split(args.beam_args or "")


def add_progress_arg(p: argparse.ArgumentParser) -> None:
  p.add_argument("--no_progress", action="store_true", help="no progress bars")


def add_gin_args(p: argparse.ArgumentParser, *, default_file: str | None = None, example: str) -> None:
  """``--gin_file`` (repeatable; required unless ``default_file``) and ``--gin`` bindings (``example`` shows one)."""
  p.add_argument(
    "--gin_file",
    action="append",
    default=None,
    required=default_file is None,
    help="gin file (repeatable; later ones override" + (f"; default {default_file})" if default_file else ")"),
  )
  p.add_argument("--gin", action="append", default=[], help=f'gin binding, e.g. "{example}" (repeatable)')


def rates_of(text: str) -> list[float]:
  """``--rates 10,20,40`` as floats; ValueError naming the bad value."""
  try:
    return [float(r) for r in text.split(",") if r.strip()]
  except ValueError:
    raise ValueError(f"--rates {text!r}: expected comma-separated percentages such as 10,20,40") from None


def report_shard(
  res, shard: docs.ShardSpec, stats: dict, *, job_name: str, out: str, p_index: int, p_count: int
) -> None:
  """What a sharded job command prints when its shard ends: the shard's file and ``stats`` as JSON, the bad rows
  it skipped, and, from the last host to finish, the hosts marker (``multihost.finish_hosts``)."""
  from tokensift.core import multihost

  shard_info = {"file": str(res.path), "shard": f"{shard.index}/{shard.count}", "resumed_pieces": res.resumed_pieces}
  print(json.dumps({**shard_info, **stats}, indent=1, default=str))
  n_skip = sum(stats.get("skipped", {}).values())
  if n_skip:
    print(f"skipped {n_skip} bad rows: {stats['skipped']}")
  if multihost.finish_hosts(out, job_name, p_index, p_count) is not None:
    print(f"all {p_count} hosts finished: {out}/{job_name}.hosts.json")
