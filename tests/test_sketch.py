"""RACE sketch: rank agreement with exact sums on real C4 MiniLM embeddings, exact merging of per-shard sketches,
unbiasedness against the p-stable collision probability, 1 vs 8 devices, save/load, errors."""

import jax
import numpy as np
import pytest
from scipy.stats import norm, spearmanr

from tokensift.models.partitioning import make_mesh
from tokensift.selection import density_kernels as dk
from tokensift.selection import lsh_sketch as ls
from test_embed_job import c4_embeddings


def test_spearman_against_exact_sums_on_real_embeddings():
  _, emb = c4_embeddings()
  exact = dk.log_kernel_sums(emb)  # Gaussian, default bandwidth (median_n; with "median" rho is 0.838 as well)
  sketch = ls.build_sketch(emb)  # paper size: 1000 rows x 20000 buckets
  assert sketch.counts.shape == (1000, 20000) and sketch.counts.sum() == 1000 * 200
  scores = ls.sketch_scores(sketch, emb)
  rho = spearmanr(scores, exact)[0]
  assert rho >= 0.8, rho
  assert (scores >= 1).all()  # each point meets itself in every row


def test_merging_shard_sketches_equals_one_sketch_over_all_data():
  _, emb = c4_embeddings()
  cfg = ls.SketchConfig(rows=64, buckets=512, seed=3, chunk=32)
  whole = ls.build_sketch(emb, cfg)
  parts = [ls.build_sketch(emb[a:b], cfg) for a, b in ((0, 37), (37, 150), (150, 200))]
  merged = ls.merge_sketches(parts)
  np.testing.assert_array_equal(merged.counts, whole.counts)
  assert merged.num_points == 200
  np.testing.assert_array_equal(ls.sketch_scores(merged, emb), ls.sketch_scores(whole, emb))
  # one device builds the same sketch as 8, and adding to an existing sketch is a merge
  one = ls.build_sketch(emb[37:], cfg, mesh=make_mesh(devices=jax.devices()[:1]), sketch=parts[0])
  np.testing.assert_array_equal(one.counts, whole.counts)
  np.testing.assert_array_equal((parts[0] + parts[1] + parts[2]).counts, whole.counts)


def test_scores_estimate_the_p_stable_collision_kernel():
  # Datar et al. 2004: P[h(x) = h(y)] = 1 - 2 Phi(-w/c) - 2/(sqrt(2 pi) w/c) (1 - exp(-w^2 / 2c^2)), c = |x - y|
  rng = np.random.default_rng(0)
  x = rng.normal(size=(30, 4)).astype(np.float32)
  cfg = ls.SketchConfig(rows=4000, buckets=4096, hashes=2, width=2.0, seed=1, chunk=64)
  scores = ls.sketch_scores(ls.build_sketch(x, cfg), x)
  c = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1))
  r = np.where(c > 0, cfg.width / np.maximum(c, 1e-12), np.inf)
  with np.errstate(divide="ignore", invalid="ignore"):
    p = np.where(c > 0, 1 - 2 * norm.cdf(-r) - 2 / (np.sqrt(2 * np.pi) * r) * (1 - np.exp(-r * r / 2)), 1.0)
  expected = (p**cfg.hashes).sum(1) + 30 / cfg.buckets  # + chance collisions of folded buckets
  np.testing.assert_allclose(scores, expected, rtol=0.05, atol=0.05)


def test_save_load_and_merge_errors(tmp_path):
  x = np.random.default_rng(1).normal(size=(20, 6)).astype(np.float32)
  cfg = ls.SketchConfig(rows=8, buckets=64)
  s = ls.build_sketch(x, cfg)
  back = ls.Sketch.load(s.save(tmp_path / "s.npz"))
  assert back.config == cfg and back.dim == 6 and back.num_points == 20
  np.testing.assert_array_equal(back.counts, s.counts)
  with pytest.raises(ValueError, match="same config"):
    ls.merge_sketches([s, ls.build_sketch(x, ls.SketchConfig(rows=8, buckets=64, seed=1))])
  with pytest.raises(ValueError, match="dimension 5, expected 6"):
    ls.sketch_scores(s, x[:, :5])
  bad = x.copy()
  bad[4] = np.nan
  with pytest.raises(ValueError, match=r"1 of 20 rows contain NaN or inf \(rows \[4\]\)"):
    ls.build_sketch(bad, cfg)
  with pytest.raises(ValueError, match="width"):
    ls.SketchConfig(width=0.0)
