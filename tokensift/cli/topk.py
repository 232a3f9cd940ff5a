"""``tokensift topk``: top-k ids at sampling rates, as id lists: by ASK-LLM score (a score job's output) or by
perplexity (a reference-losses job's output; low / middle / high, the ASK-LLM paper's baseline).

Examples::

    tokensift topk runs/score --rates 10,20,40
    tokensift topk runs/ref --by perplexity --mode middle --rates 10,20,40 --runner local
"""

from __future__ import annotations

import argparse

from tokensift.cli.args import add_runner_args, beam_args_of, rates_of


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
    "topk",
    help="ASK-LLM or perplexity selection: top-k ids at sampling rates, as id lists",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument(
    "scores",
    help="score job output dir (all shards finished) or one score file; with --by "
    "perplexity: the reference-losses job's output dir",
  )
  p.add_argument("--by", choices=["askllm", "perplexity"], default="askllm", help="what ranks the documents")
  p.add_argument(
    "--mode",
    choices=["low", "middle", "high"],
    default="middle",
    help="with --by perplexity: keep the lowest, the middle or the highest perplexities",
  )
  p.add_argument("--split", default="train", help="with --by perplexity: the reference-losses split")
  p.add_argument("--rates", default="10,20,40,60,80", help="sampling rates in percent, comma-separated")
  p.add_argument(
    "--out",
    default=None,
    help="directory for askllm_r{rate}.txt / ppl_{mode}_r{rate}.txt (default: "
    "SCORES/selections, or the perplexity score file's folder)",
  )
  p.add_argument("--key", default="score", help="record field to rank by (e.g. logp_yes_variants)")
  p.add_argument(
    "--base_task",
    default=None,
    help="also register {base}_askllm_r{rate} (or {base}_ppl_{mode}_r{rate}) seqio variants in this "
    "process (a check; launches register them with $TOKENSIFT_SELECTIONS=base=DIR/selections)",
  )
  add_runner_args(p)
  p.set_defaults(func=cmd_topk)


def cmd_topk(args) -> int:
  if args.by == "perplexity":
    return _perplexity_topk(args)
  from tokensift.selection import topk

  rates = rates_of(args.rates)
  if args.runner:
    from tokensift.selection import beam_select

    paths = beam_select.run_topk(
      args.scores,
      rates,
      out_dir=args.out,
      key=args.key,
      runner=args.runner,
      workers=args.beam_workers,
      beam_args=beam_args_of(args),
    )
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


def _perplexity_topk(args) -> int:
  """The perplexity filter (``selection.perplexity``): the reference losses' score file, then the id lists in the
  ASK-LLM top-k's format (one process, or Beam with ``--runner``)."""
  from tokensift.selection import id_lists, perplexity

  rates = rates_of(args.rates)
  scores, lists = perplexity.topk_from_reference_losses(
    args.scores,
    args.mode,
    rates,
    split=args.split,
    out_dir=args.out,
    runner=args.runner,
    **({"workers": args.beam_workers, "beam_args": beam_args_of(args)} if args.runner else {}),
  )
  print(f"perplexity scores: {scores}")
  for rate, entry in lists.items():
    path, k = (entry, len(id_lists.read_id_list(entry))) if args.runner else entry[:2]
    print(f"rate {rate:g}%: {k} ids ({args.mode} perplexity) -> {path}")
  if args.base_task:
    tasks = perplexity.register_perplexity_variants(scores, args.mode, args.base_task, rates, out_dir=args.out)
    print("registered: " + ", ".join(t.name for t in tasks))
  return 0
