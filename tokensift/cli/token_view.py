"""``tokensift token-view``: a trained run's SLM token selections as an HTML page."""

from __future__ import annotations

import argparse

from tokensift.cli.train import add_run_gin_args, configured_experiment, parse_gin


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
    "token-view", help="HTML page colouring a document's tokens by SLM selection and excess loss, from a trained run"
  )
  add_run_gin_args(p)
  p.add_argument("--out", required=True, help="output .html file")
  p.add_argument("--split", default="validation")
  p.add_argument("--doc", type=int, default=0, help="index of the document in the split")
  p.add_argument(
    "--slm_ratio",
    type=float,
    default=None,
    help="fraction of tokens selected, in (0, 1] (default: the run's LossConfig.slm_ratio)",
  )
  p.set_defaults(func=cmd_token_view)


def cmd_token_view(args) -> int:
  from tokensift.trainer import token_view

  parse_gin(args)
  config, network = configured_experiment()
  path = token_view.write_view(
    config, network, args.out, split=args.split, doc_index=args.doc, slm_ratio=args.slm_ratio
  )
  print(f"wrote {path}")
  return 0
