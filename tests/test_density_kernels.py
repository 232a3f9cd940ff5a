"""Exact DENSITY kernel sums: sklearn agreement on real MiniLM embeddings of C4, brute-force agreement for every
kernel, tiling/padding/streaming, 1 vs 8 devices, bandwidth heuristics, bad-input errors."""

import dataclasses

import jax
import numpy as np
import pytest
from sklearn.neighbors import KernelDensity

from tokensift.models.partitioning import make_mesh
from tokensift.selection import density_kernels as dk
from test_embed_job import c4_embeddings


def _brute(x, y, kernel, h, w=None):
  x, y = x.astype(np.float64), y.astype(np.float64)
  if kernel == "cosine":
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
  d2 = ((y[:, None, :] - x[None, :, :]) ** 2).sum(-1)
  k = np.exp(-np.sqrt(d2) / h) if kernel == "laplacian" else np.exp(-d2 / (2 * h * h))
  return k @ (np.ones(len(x)) if w is None else w)


def _mesh1():
  return make_mesh(devices=jax.devices()[:1])


def test_gaussian_matches_sklearn_on_real_minilm_embeddings():
  _, emb = c4_embeddings()
  n, d = emb.shape
  assert (n, d) == (200, 384)
  h_med = dk.bandwidth_heuristic(emb, "median")
  for h in (h_med, h_med / 2, h_med / 4):  # broad to nearly self-only kernels
    ours = dk.log_kernel_sums(emb, config=dk.KernelConfig(bandwidth=h))
    lin = dk.kernel_sums(emb, config=dk.KernelConfig(bandwidth=h))
    kde = KernelDensity(kernel="gaussian", bandwidth=h).fit(emb.astype(np.float64))
    ref = dk.log_sums_from_sklearn(kde.score_samples(emb.astype(np.float64)), n, d, h)
    # |log a - log b| <= 1e-4  <=>  relative difference <= ~1e-4
    assert np.abs(ours - ref).max() <= 1e-4, (h, np.abs(ours - ref).max())
    assert np.abs(lin / np.exp(ref) - 1).max() <= 1e-4
    assert (lin >= 1.0 - 1e-5).all()  # the self term


def test_one_device_and_eight_devices_identical_on_real_embeddings():
  _, emb = c4_embeddings()
  assert len(jax.devices()) == 8
  configs = [dk.KernelConfig(kernel=k, query_block=16, key_block=64) for k in dk.KERNELS]
  configs += [dk.KernelConfig(kernel=k) for k in dk.KERNELS]  # default tiles
  for cfg in configs:
    # the symmetric self-density path (keys=None) and the general streamed path (keys given)
    for keys in (None, emb):
      eight = dk.kernel_sums(emb, keys, config=cfg)
      one = dk.kernel_sums(emb, keys, config=cfg, mesh=_mesh1())
      np.testing.assert_array_equal(eight, one)
      if cfg == dk.KernelConfig():
        np.testing.assert_array_equal(
          dk.log_kernel_sums(emb, keys, config=cfg), dk.log_kernel_sums(emb, keys, config=cfg, mesh=_mesh1())
        )
    # the default bandwidth, median_n (~0.45 here, median 1.38), scales the float32 rounding of
    # |x|^2 + |y|^2 - 2 x.y by 1 / (2 h^2) ~ 2.5: the two paths round the self term differently
    np.testing.assert_allclose(dk.kernel_sums(emb, config=cfg), dk.kernel_sums(emb, emb, config=cfg), rtol=6e-6)


@pytest.mark.parametrize("kernel", dk.KERNELS)
def test_every_kernel_matches_brute_force_with_padding_and_streamed_key_chunks(kernel):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(203, 12)).astype(np.float32)  # 203: not a multiple of any block
  q = rng.normal(size=(37, 12)).astype(np.float32) * 0.7
  w = rng.uniform(0, 2, size=203)
  w[::9] = 0.0
  h = 2.5
  cfg = dk.KernelConfig(kernel=kernel, bandwidth=h, query_block=8, key_block=16, key_chunk=48)  # 5 key chunks
  got = dk.kernel_sums(q, x, config=cfg, key_weights=w)
  np.testing.assert_allclose(got, _brute(x, q, kernel, h, w), rtol=2e-5)
  got_log = dk.log_kernel_sums(q, x, config=cfg)
  np.testing.assert_allclose(got_log, np.log(_brute(x, q, kernel, h)), atol=2e-5)
  # one chunk, bigger blocks: the same sums
  np.testing.assert_allclose(
    dk.kernel_sums(q, x, config=dk.KernelConfig(kernel=kernel, bandwidth=h)), _brute(x, q, kernel, h), rtol=2e-5
  )


@pytest.mark.parametrize("kernel", dk.KERNELS)
@pytest.mark.parametrize("n", [5, 203])
def test_self_density_symmetric_path_matches_brute_force(kernel, n):
  x = np.random.default_rng(n).normal(size=(n, 12)).astype(np.float32)
  x[1] = x[0]  # an exact duplicate: k = 1
  cfg = dk.KernelConfig(kernel=kernel, bandwidth=2.0, self_block=16)  # 203 rows -> 16 blocks of 16
  ref = _brute(x, x, kernel, 2.0)
  np.testing.assert_allclose(dk.kernel_sums(x, config=cfg), ref, rtol=2e-5)
  np.testing.assert_allclose(dk.log_kernel_sums(x, config=cfg), np.log(ref), atol=2e-5)
  np.testing.assert_allclose(dk.kernel_sums(x, config=dataclasses.replace(cfg, symmetric=False)), ref, rtol=2e-5)


def test_log_space_survives_tiny_bandwidth_where_linear_underflows():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(50, 8)).astype(np.float32)
  q = x[:5] + 0.5  # no key near these queries
  h = 0.05
  lin = dk.kernel_sums(q, x, config=dk.KernelConfig(bandwidth=h))
  assert (lin == 0).all()
  logs = dk.log_kernel_sums(q, x, config=dk.KernelConfig(bandwidth=h))
  d2 = ((q[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
  ref = np.log(np.exp(-(d2 - d2.min(1, keepdims=True)) / (2 * h * h)).sum(1)) - d2.min(1) / (2 * h * h)
  np.testing.assert_allclose(logs, ref, rtol=1e-5)


def test_bandwidth_heuristics():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(400, 5))
  h = dk.bandwidth_heuristic(x, "median")
  d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))[np.triu_indices(400, 1)]
  assert h == pytest.approx(np.median(d), rel=1e-5)
  assert dk.bandwidth_heuristic(x, "scott") == pytest.approx(np.sqrt(x.var(0).mean()) * 400 ** (-1 / 9), rel=1e-5)
  # the default config resolves the default heuristic, median_n, on the keys
  _, used = dk.log_kernel_sums(x, return_bandwidth=True)
  assert used == pytest.approx(h / np.sqrt(2 * np.log(400)), rel=1e-6)
  assert dk.bandwidth_heuristic(x) == pytest.approx(used, rel=1e-6)
  # more points than `sample`: the median of the seeded subsample's pairs
  sub = x[dk.subsample_indices(400, 50, seed=3)]
  d = np.sqrt(((sub[:, None] - sub[None]) ** 2).sum(-1))[np.triu_indices(50, 1)]
  assert dk.bandwidth_heuristic(x, "median", sample=50, seed=3) == pytest.approx(np.median(d), rel=1e-5)
  h4, h3 = (dk.bandwidth_heuristic(x, "median", sample=50, seed=s) for s in (4, 3))
  assert h4 != h3
  with pytest.raises(ValueError, match="identical"):
    dk.bandwidth_heuristic(np.ones((10, 3)))


def test_bad_embeddings_are_rejected_naming_rows():
  x = np.random.default_rng(3).normal(size=(20, 4)).astype(np.float32)
  bad = x.copy()
  bad[3, 1] = np.nan
  bad[11, 0] = np.inf
  with pytest.raises(ValueError, match=r"2 of 20 rows contain NaN or inf \(rows \[3, 11\]\)"):
    dk.kernel_sums(bad, config=dk.KernelConfig(bandwidth=1.0))
  with pytest.raises(ValueError, match=r"keys: 2 of 20 rows"):
    dk.kernel_sums(x, bad, config=dk.KernelConfig(bandwidth=1.0))
  with pytest.raises(ValueError, match="dimension 5, expected 4"):
    dk.kernel_sums(x, np.zeros((3, 5), np.float32), config=dk.KernelConfig(bandwidth=1.0))
  with pytest.raises(ValueError, match="2-D"):
    dk.kernel_sums(x[0])
  with pytest.raises(ValueError, match="bandwidth"):
    dk.KernelConfig(bandwidth=-1.0)
  with pytest.raises(ValueError, match="unknown kernel 'epanechnikov'"):
    dk.KernelConfig(kernel="epanechnikov")
  with pytest.raises(ValueError, match="key_weights"):
    dk.kernel_sums(x, config=dk.KernelConfig(bandwidth=1.0), key_weights=np.ones(19))


def test_median_n_heuristic_gives_one_over_n_at_the_median_distance():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(300, 6))
  med = dk.bandwidth_heuristic(x, "median")
  h = dk.bandwidth_heuristic(x, "median_n")
  assert h == pytest.approx(med / np.sqrt(2 * np.log(300)), rel=1e-9)
  assert np.exp(-(med**2) / (2 * h * h)) == pytest.approx(1 / 300, rel=1e-9)  # Gaussian kernel at the median
  hl = dk.bandwidth_heuristic(x, "median_n", kernel="laplacian")
  assert np.exp(-med / hl) == pytest.approx(1 / 300, rel=1e-9)
  _, used = dk.log_kernel_sums(x, config=dk.KernelConfig(bandwidth="median_n"), return_bandwidth=True)
  assert used == pytest.approx(h, rel=1e-6)
  with pytest.raises(ValueError, match="median_n bandwidth heuristic needs at least 2 embeddings, got 1"):
    dk.bandwidth_heuristic(x[:1], "median_n")


def test_median_n_lets_real_near_duplicates_stand_out():
  """Real MiniLM embeddings of 40 C4 documents + 5 edited copies of one of them (the known-answer corpus's
  near-duplicate edits): under the plain median bandwidth the cluster's log density is within 0.1 of the other
  documents' and inverse propensity keeps it like random; under median_n it is far denser and mostly dropped."""
  import random

  from tokensift.pipeline import known_answer as ka
  from tokensift.selection import samplers
  from test_embed_job import c4_documents, embedder

  texts = [d.text for d in c4_documents()[:40]]
  rng = random.Random(0)
  texts += [ka.near_duplicate(texts[0], rng) for _ in range(5)]
  x = embedder().embed(texts)[0]
  dup = np.zeros(len(texts), bool)
  dup[0], dup[40:] = True, True
  share = {}
  for bw in ("median", "median_n"):
    logs = np.asarray(dk.log_kernel_sums(x, config=dk.KernelConfig(bandwidth=bw)), np.float64)
    gap = logs[dup].mean() - logs[~dup].mean()
    assert (gap < 0.1) if bw == "median" else (gap > 1.0), (bw, gap)
    kept = [
      np.isin(np.flatnonzero(dup), samplers.inverse_propensity_sample(logs, 22, seed=s, log=True)).mean()
      for s in range(50)
    ]
    share[bw] = float(np.mean(kept))
  assert share["median"] > 0.4 and share["median_n"] < 0.25, share


def test_subsample_is_seeded_and_o_of_sample_memory():
  import tracemalloc

  a = dk.subsample_indices(10_000_000, 1000, seed=7)
  assert a.shape == (1000,) and len(np.unique(a)) == 1000 and (np.diff(a) > 0).all()
  assert 0 <= a[0] and a[-1] < 10_000_000
  np.testing.assert_array_equal(a, dk.subsample_indices(10_000_000, 1000, seed=7))
  assert not np.array_equal(a, dk.subsample_indices(10_000_000, 1000, seed=8))
  np.testing.assert_array_equal(dk.subsample_indices(30, 1000, seed=7), np.arange(30))
  tracemalloc.start()
  try:
    dk.subsample_indices(10_000_000, 1000, seed=7)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < 4_000_000, peak  # a permutation of n would take 80 MB


def test_one_bandwidth_default_everywhere():
  from tokensift.cli import build_parser
  from tokensift.pipeline.config import SelectionConfig
  from tokensift.selection.select_job import SelectConfig

  cli = build_parser().parse_args(["select", "emb", "--out", "o"]).bandwidth
  assert dk.DEFAULT_BANDWIDTH == "median_n"
  assert dk.KernelConfig().bandwidth == SelectConfig().bandwidth == SelectionConfig().bandwidth == cli == "median_n"
