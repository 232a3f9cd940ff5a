"""Exact DENSITY kernel sums (Gaussian, N x N, d = 384) against two peers measured in the same run.

1. ``sklearn.neighbors.KernelDensity(kernel="gaussian", bandwidth=h).score_samples`` (exact: atol = rtol = 0,
   float64), target >= 100x. sklearn is timed on the first ``--sklearn_queries`` queries against all N keys
   and its time scaled by N / queries (its cost is linear in the number of queries); agreement is the largest
   relative difference of the sums on those queries (log-density converted to sums, compared in log space).
2. A plain jitted ``x @ y.T`` of the same shape ([N, d] x [d, N], materialized [N, N] fp32 output), target:
   kernel sums reach >= 0.6 of its FLOP/s (both counted as 2 N^2 d), measured on the general path
   (``kernel_sums(x, x)``: queries x streamed keys). The self density ``kernel_sums(x)`` (the DENSITY score)
   takes the symmetric path, which computes each pair of blocks once (half the FLOPs); it is timed too.

Data: N synthetic unit-norm "embeddings" (a mixture of 64 clusters of different sizes and spreads on the
384-d sphere, seed 0); bandwidth by the median heuristic. JAX runs on the default device (CPU here, one device
unless XLA_FLAGS says otherwise); compile time is excluded (one warm-up call on the same shapes) and reported.

  python benchmarks/bench_kernel_sums.py [--n 20000] [--d 384] [--sklearn_queries 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def synthetic_embeddings(n: int, d: int, clusters: int = 64, seed: int = 0):
  """float32 [n, d] unit vectors: a mixture of Zipf-sized clusters of different spreads (built in chunks)."""
  import numpy as np

  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(clusters, d))
  centers /= np.linalg.norm(centers, axis=1, keepdims=True)
  sizes = 1.0 / np.arange(1, clusters + 1) ** 1.1  # Zipf-like cluster sizes: dense and sparse regions
  which = rng.choice(clusters, size=n, p=sizes / sizes.sum())
  spread = rng.uniform(0.4, 1.2, size=clusters)
  out = np.empty((n, d), np.float32)
  for s in range(0, n, 100_000):
    w = which[s : s + 100_000]
    x = centers[w] + spread[w, None] * rng.normal(size=(len(w), d)) / np.sqrt(d)
    out[s : s + len(w)] = x / np.linalg.norm(x, axis=1, keepdims=True)
  return out


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--n", type=int, default=20000)
  ap.add_argument("--d", type=int, default=384)
  ap.add_argument("--sklearn_queries", type=int, default=1000)
  ap.add_argument("--repeats", type=int, default=3)
  add_results_flag(ap)
  args = ap.parse_args()

  import jax
  import jax.numpy as jnp
  import numpy as np
  from sklearn.neighbors import KernelDensity

  from tokensift.selection import density_kernels as dk

  n, d = args.n, args.d
  x = synthetic_embeddings(n, d)
  h = dk.bandwidth_heuristic(x, "median")
  cfg = dk.KernelConfig(bandwidth=h)
  flops = 2.0 * n * n * d
  print(f"N={n} d={d} bandwidth={h:.4f} (median heuristic) devices={jax.devices()}")

  def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
      t = time.perf_counter()
      fn()
      times.append(time.perf_counter() - t)
    return min(times)

  t = time.perf_counter()
  logs = dk.log_kernel_sums(x, config=cfg)
  first = time.perf_counter() - t
  t_log = best_of(lambda: dk.log_kernel_sums(x, config=cfg), args.repeats)
  dk.kernel_sums(x, config=cfg)
  t_lin = best_of(lambda: dk.kernel_sums(x, config=cfg), args.repeats)
  dk.log_kernel_sums(x, x, config=cfg)
  t_glog = best_of(lambda: dk.log_kernel_sums(x, x, config=cfg), args.repeats)
  dk.kernel_sums(x, x, config=cfg)
  t_glin = best_of(lambda: dk.kernel_sums(x, x, config=cfg), args.repeats)
  print("self density, symmetric path (each pair of blocks once: ~N^2 d FLOPs):")
  print(f"  kernel_sums(x):              {t_lin:8.3f} s")
  print(f"  log_kernel_sums(x):          {t_log:8.3f} s (first call incl. compile {first:.2f} s)")
  print("general path (queries x streamed keys: 2 N^2 d FLOPs):")
  print(f"  kernel_sums(x, x):           {t_glin:8.3f} s  {flops / t_glin / 1e9:7.1f} GFLOP/s")
  print(f"  log_kernel_sums(x, x):       {t_glog:8.3f} s  {flops / t_glog / 1e9:7.1f} GFLOP/s")

  xj = jnp.asarray(x)
  matmul = jax.jit(lambda a, b: a @ b.T)
  matmul(xj, xj).block_until_ready()
  t_mm = best_of(lambda: matmul(xj, xj).block_until_ready(), args.repeats)
  print(f"peer: jitted x @ y.T [{n},{d}]x[{d},{n}]: {t_mm:8.3f} s  {flops / t_mm / 1e9:7.1f} GFLOP/s")
  print(
    f"  ratio of FLOP/s vs matmul (general path, same FLOPs): linear {t_mm / t_glin:.2f}, log-space "
    f"{t_mm / t_glog:.2f}  (target >= 0.6); symmetric path time vs matmul: {t_mm / t_log:.2f}x faster"
  )

  q = min(args.sklearn_queries, n)
  x64 = x.astype(np.float64)
  kde = KernelDensity(kernel="gaussian", bandwidth=h).fit(x64)
  t = time.perf_counter()
  ref_logdens = kde.score_samples(x64[:q])
  t_sk_q = time.perf_counter() - t
  t_sk = t_sk_q * n / q
  ref = dk.log_sums_from_sklearn(ref_logdens, n, d, h)
  rel = np.abs(np.expm1(logs[:q].astype(np.float64) - ref)).max()
  print(f"peer: sklearn KernelDensity.score_samples: {t_sk_q:.2f} s for {q} queries -> {t_sk:.1f} s for {n} (scaled)")
  print(
    f"  speed-up vs sklearn: self density (log) {t_sk / t_log:.0f}x, (linear) {t_sk / t_lin:.0f}x; general path "
    f"(log) {t_sk / t_glog:.0f}x  (target >= 100x)"
  )
  print(f"  agreement on {q} queries: max relative difference of the sums {rel:.2e}  (target <= 1e-4)")


if __name__ == "__main__":
  main()
  record_results("bench_kernel_sums")
