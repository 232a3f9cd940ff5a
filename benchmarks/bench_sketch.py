"""RACE sketch scoring of N = 1M synthetic 384-d embeddings on CPU (target <= 60 s) and its rank agreement with
exact kernel sums on a 20k subsample (target Spearman >= 0.8), measured in the same run.

Timed: pass 1 (``build_sketch``) + pass 2 (``sketch_scores``) over all N points, compile excluded (a warm-up
on one chunk) and reported. Exact peer: Gaussian kernel sums (median-heuristic bandwidth) of a seeded random
subsample of ``--subsample`` points among themselves, which estimate the full density up to a constant (the
exact sums of 20k queries over all 1M keys, 1.5e13 FLOPs, are out of reach on a CPU); Spearman of the sketch
scores of those points against them. Run once per configuration given (``--configs R:K``, default: the paper's
1000 rows with the default K = 4, and two smaller sketches, 600 x 3 and 400 x 2).

  python benchmarks/bench_sketch.py [--n 1000000] [--configs 1000:4,600:3,400:2] [--subsample 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--n", type=int, default=1_000_000)
  ap.add_argument("--d", type=int, default=384)
  ap.add_argument("--configs", default="1000:4,600:3,400:2", help="comma-separated ROWS:HASHES")
  ap.add_argument("--buckets", type=int, default=20000)
  ap.add_argument("--width", type=float, default=1.5)
  ap.add_argument("--subsample", type=int, default=20000)
  add_results_flag(ap)
  args = ap.parse_args()

  import jax
  import numpy as np
  from scipy.stats import spearmanr

  from bench_kernel_sums import synthetic_embeddings
  from tokensift.selection import density_kernels as dk
  from tokensift.selection import lsh_sketch as ls

  t = time.perf_counter()
  x = synthetic_embeddings(args.n, args.d)
  print(f"N={args.n} d={args.d} synthetic embeddings in {time.perf_counter() - t:.1f} s; devices={jax.devices()}")
  sub = np.sort(np.random.default_rng(1).choice(args.n, size=min(args.subsample, args.n), replace=False))
  t = time.perf_counter()
  exact = dk.log_kernel_sums(x[sub], config=dk.KernelConfig(bandwidth="median"))
  t_exact = time.perf_counter() - t
  print(f"exact Gaussian sums on the {len(sub)}-point subsample: {t_exact:.1f} s")
  for spec in args.configs.split(","):
    rows, hashes = (int(v) for v in spec.split(":"))
    cfg = ls.SketchConfig(rows=rows, buckets=args.buckets, hashes=hashes, width=args.width)
    t = time.perf_counter()
    ls.sketch_scores(ls.build_sketch(x[: cfg.chunk], cfg), x[: cfg.chunk])  # compile both passes
    t_compile = time.perf_counter() - t
    t = time.perf_counter()
    sketch = ls.build_sketch(x, cfg)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    scores = ls.sketch_scores(sketch, x)
    t2 = time.perf_counter() - t
    rho = spearmanr(scores[sub], exact)[0]
    print(
      f"sketch R={rows} B={args.buckets} K={hashes} w={args.width}: pass 1 {t1:.1f} s + pass 2 {t2:.1f} s = "
      f"{t1 + t2:.1f} s for {args.n} points (target <= 60 s; ratio {60 / (t1 + t2):.2f}); compile "
      f"{t_compile:.1f} s; Spearman vs exact on the subsample {rho:.3f} (target >= 0.8)"
    )


if __name__ == "__main__":
  main()
  record_results("bench_sketch")
