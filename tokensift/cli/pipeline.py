"""``tokensift pipeline``: the main job on the bundled samples (or your data), configured with gin.

Examples::

    tokensift pipeline --run_dir runs/demo                     # gin_configs/pipeline/default.gin
    tokensift pipeline --run_dir runs/demo                     # again: every stage is done, nothing runs
    tokensift pipeline --run_dir runs/x --gin "config.CorpusConfig.max_docs = 64" --restart_from score
    tokensift pipeline --gin_file gin_configs/pipeline/mini.gin --run_dir /tmp/mini
"""

from __future__ import annotations

import argparse

from tokensift.cli.args import add_gin_args, add_progress_arg

DEFAULT_GIN = "gin_configs/pipeline/default.gin"


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
    "pipeline",
    help="the whole job: refine -> ASK-LLM score -> embed -> DENSITY -> select -> "
    "reference losses -> train SLM/CLM -> evaluate -> HTML report (resumable stages)",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument(
    "--run_dir",
    required=True,
    help="the run directory, where this command writes (one folder per stage, "
    "report/index.html) and what a rerun resumes",
  )
  add_gin_args(p, default_file=DEFAULT_GIN, example="config.CorpusConfig.max_docs = 64")
  p.add_argument("--restart_from", default=None, help="delete this stage's folder and every later one, then run")
  p.add_argument("--until", default=None, help="stop after this stage")
  add_progress_arg(p)
  p.set_defaults(func=cmd_pipeline)


def cmd_pipeline(args) -> int:
  import os

  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  from tokensift.pipeline import config, run

  cfg = config.parse_gin(args.gin_file or [DEFAULT_GIN], args.gin)
  run.run_pipeline(cfg, args.run_dir, progress=not args.no_progress, restart_from=args.restart_from, until=args.until)
  return 0
