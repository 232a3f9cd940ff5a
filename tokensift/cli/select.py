"""``tokensift select``: DENSITY / ASK-LLM+DENSITY selections as id lists (and seqio task variants)."""

from __future__ import annotations

import argparse

from tokensift.cli.args import add_progress_arg, add_runner_args, beam_args_of, rates_of


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
    "select",
    help="DENSITY selection (inverse propensity, top/bottom-k, random; optionally "
    "within the top ASK-LLM fraction) -> id lists and seqio variants",
  )
  p.add_argument("embeddings", help="embed job output dir (all shards finished) or one embeddings file")
  p.add_argument("--out", required=True, help="directory for the id lists, density.parquet and select.json")
  p.add_argument(
    "--method",
    default="ips",
    choices=["ips", "topk", "bottomk", "random"],
    help="ips = keep with probability proportional to 1/density (default)",
  )
  p.add_argument("--rates", default="10,20,40,60,80", help="sampling rates, percent of the embedded documents")
  p.add_argument(
    "--density",
    default="auto",
    choices=["auto", "exact", "sketch"],
    help="exact kernel sums, RACE sketch, or auto (exact up to --exact_limit documents)",
  )
  p.add_argument("--exact_limit", type=int, default=200_000)
  p.add_argument("--kernel", default="gaussian", choices=["gaussian", "laplacian", "cosine"])
  p.add_argument(
    "--bandwidth",
    default="median_n",
    help="a float, or 'median_n' (median distance / sqrt(2 ln n): near-duplicates stand out) / 'median' / 'scott'",
  )
  p.add_argument("--sketch_rows", type=int, default=1000)
  p.add_argument("--sketch_buckets", type=int, default=20000)
  p.add_argument("--sketch_hashes", type=int, default=4)
  p.add_argument("--sketch_width", type=float, default=1.5)
  p.add_argument("--askllm_scores", default=None, help="ASK-LLM score job dir or file ({id, score, ...})")
  p.add_argument(
    "--askllm_fraction",
    type=float,
    default=None,
    help="pool = the top PERCENT of documents by ASK-LLM score; the density sampler picks within it",
  )
  p.add_argument("--askllm_key", default="score", help="score record field to rank by")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--poisson", action="store_true", help="IPS as independent draws (expected size k)")
  p.add_argument(
    "--base_task",
    default=None,
    help="register {base}_{tag}_r{rate} seqio variants (e.g. c4_en_raw -> c4_en_density_r20)",
  )
  add_progress_arg(p)
  add_runner_args(p)
  p.set_defaults(func=cmd_select)


def _bandwidth(text: str):
  from tokensift.selection.density_kernels import BANDWIDTH_HEURISTICS

  if text in BANDWIDTH_HEURISTICS:
    return text
  try:
    return float(text)
  except ValueError:
    raise ValueError(f"--bandwidth {text!r}: expected a float or one of {BANDWIDTH_HEURISTICS}") from None


def cmd_select(args) -> int:
  from tokensift.selection import select_job

  rates = tuple(rates_of(args.rates))
  cfg = select_job.SelectConfig(
    method=args.method,
    rates=rates,
    density=args.density,
    kernel=args.kernel,
    bandwidth=_bandwidth(args.bandwidth),
    exact_limit=args.exact_limit,
    sketch_rows=args.sketch_rows,
    sketch_buckets=args.sketch_buckets,
    sketch_hashes=args.sketch_hashes,
    sketch_width=args.sketch_width,
    askllm_fraction=args.askllm_fraction,
    askllm_key=args.askllm_key,
    seed=args.seed,
    exact_size=not args.poisson,
  )
  if args.runner:
    from tokensift.selection import beam_select

    if args.askllm_scores:
      raise ValueError(
        "--askllm_scores with --runner: the Beam select pipeline has no ASK-LLM pool; run "
        "`tokensift select` without --runner"
      )
    s = beam_select.run_select(
      args.embeddings, args.out, cfg, runner=args.runner, workers=args.beam_workers, beam_args=beam_args_of(args)
    )
    print(f"{s['documents']} embedded documents (Beam, {args.runner}); density: {s['density']}")
    for rate, info in s["rates"].items():
      print(f"rate {rate}%: {info['k']} ids -> {args.out}/{info['file']}")
    print(f"summary: {args.out}/select.json")
    return 0
  res = select_job.select(
    args.embeddings,
    args.out,
    cfg,
    askllm_scores=args.askllm_scores,
    base_task=args.base_task,
    progress=not args.no_progress,
  )
  s = res.summary
  how = (
    f"exact {s['kernel']} kernel sums, bandwidth {s['bandwidth']:.4g}"
    if s["density"] == "exact"
    else f"RACE sketch {s['sketch']['rows']}x{s['sketch']['buckets']}"
  )
  print(f"{s['documents']} embedded documents, pool {s['pool']}; density: {how}")
  for key in ("askllm_scored_not_embedded", "embedded_not_scored", "askllm_unranked"):
    if s.get(key):
      print(f"note: {s[key]} documents {key.replace('_', ' ')}")
  for rate, (path, k) in res.lists.items():
    print(f"rate {rate:g}%: {k} ids -> {path}")
  print(f"summary: {args.out}/select.json")
  if res.tasks:
    print("registered (this process): " + ", ".join(res.tasks))
  base = args.base_task or "c4_en_raw"
  from tokensift.selection.id_lists import variant_name

  print("use the selection from your code (e.g. a task module imported by t5x/seqio):")
  print("  from tokensift.selection.variants import register_variant")
  for rate, (path, _) in res.lists.items():
    print(f"  register_variant({variant_name(base, cfg.tag, rate)!r}, {base!r}, {str(path.resolve())!r})")
  print(
    f"or all at once: tokensift.selection.variants.register_selection_dir({base!r}, {str(args.out)!r}), or for a "
    f"t5x launch: export TOKENSIFT_SELECTIONS={base}={args.out}"
  )
  return 0
