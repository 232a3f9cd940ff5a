"""``tokensift distill``: fits a cheap ASK-LLM scorer, a head on the DENSITY embeddings that learns the judge's
score (``selection.distill``), and writes its fidelity to the judge on held-out documents.

Examples::

    tokensift distill --scores runs/score --embeddings runs/embed --out runs/head
    tokensift score --head runs/head --embeddings runs/embed --out runs/score_head --shard 0/8
"""

from __future__ import annotations

import argparse
import json

from tokensift.cli.args import rates_of
from tokensift.selection.distill import TARGETS, DistillConfig  # light: dataclasses, the defaults defined once
from tokensift.selection.distill_head import HeadConfig


def register(sub: argparse._SubParsersAction) -> None:
  d = DistillConfig()
  p = sub.add_parser(
    "distill",
    help="ASK-LLM distilled: fit a head from document embeddings to the judge's score",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument("--scores", required=True, help="the judge's score job output (dir, all shards finished, or file)")
  p.add_argument("--embeddings", required=True, help="the embed job's output (dir, all shards finished, or file)")
  p.add_argument("--out", required=True, help="head directory (head.safetensors, head.json, fidelity.json)")
  p.add_argument("--head", choices=["ridge", "mlp"], default=d.head.kind, help="linear (ridge) or a small MLP")
  p.add_argument(
    "--target", choices=list(TARGETS), default=d.target, help="logit of P(yes), or normalized: log P(yes) - log P(no)"
  )
  p.add_argument("--holdout", type=float, default=d.holdout, help="percent of documents held out (by id hash)")
  p.add_argument("--seed", type=int, default=d.seed)
  p.add_argument(
    "--rates", default=",".join(f"{r:g}" for r in d.rates), help="top-k overlap rates in percent, comma-separated"
  )
  p.set_defaults(func=cmd_distill)


def cmd_distill(args) -> int:
  from tokensift.selection import distill

  cfg = DistillConfig(
    head=HeadConfig(kind=args.head),
    target=args.target,
    holdout=args.holdout,
    seed=args.seed,
    rates=tuple(rates_of(args.rates)),
  )
  _, report = distill.distill(args.scores, args.embeddings, args.out, cfg)
  print(json.dumps(report, indent=1, default=str))
  return 0
