"""``tokensift topk``: ASK-LLM selection, top-k ids by score at sampling rates, as id lists."""
from __future__ import annotations

import argparse

from tokensift.cli.args import add_runner_args, beam_args_of, rates_of


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser("topk", help="ASK-LLM selection: top-k ids by score at sampling rates, as id lists")
  p.add_argument("scores", help="score job output dir (all shards finished) or one score file")
  p.add_argument("--rates", default="10,20,40,60,80", help="sampling rates in percent, comma-separated")
  p.add_argument("--out", default=None, help="directory for askllm_r{rate}.txt (default: SCORES/selections)")
  p.add_argument("--key", default="score", help="record field to rank by (e.g. logp_yes_variants)")
  p.add_argument("--base_task", default=None,
                 help="also register {base}_askllm_r{rate} seqio variants in this process (a check; launches "
                      "register them with $TOKENSIFT_SELECTIONS=base=DIR/selections)")
  add_runner_args(p)
  p.set_defaults(func=cmd_topk)


def cmd_topk(args) -> int:
  from tokensift.selection import topk
  rates = rates_of(args.rates)
  if args.runner:
    from tokensift.selection import beam_select
    paths = beam_select.run_topk(args.scores, rates, out_dir=args.out, key=args.key, runner=args.runner,
                                 workers=args.beam_workers, beam_args=beam_args_of(args))
    from tokensift.selection import id_lists
    written = {r: (p, len(id_lists.read_id_list(p)), None) for r, p in paths.items()}
  else:
    written = topk.write_topk_lists(args.scores, rates, out_dir=args.out, key=args.key)
  for rate, (path, k, n) in written.items():
    print(f"rate {rate:g}%: {k}{'' if n is None else f' of {n}'} ids -> {path}")
  if args.base_task:
    from tokensift.selection import variants
    tasks = variants.register_variants(args.base_task, "askllm", {r: p for r, (p, _, _) in written.items()})
    print("registered: " + ", ".join(t.name for t in tasks))
  return 0
