"""Samplers: inverse propensity flattens density on a dense-cluster + sparse-outlier mixture (in expectation,
exactly, and on a seeded draw); exact sizes; inclusion probabilities proportional to 1/score; top/bottom-k,
random; determinism and errors."""

import numpy as np
import pytest

from tokensift.selection import density_kernels as dk
from tokensift.selection import samplers as S

N_CLUSTER, N_OUT, DIM = 900, 100, 8


def _mixture(seed=0):
  """900 points in one tight cluster, 100 outliers spread over a box 40x wider."""
  rng = np.random.default_rng(seed)
  cluster = rng.normal(0, 0.1, size=(N_CLUSTER, DIM))
  outliers = rng.uniform(-4, 4, size=(N_OUT, DIM))
  x = np.concatenate([cluster, outliers]).astype(np.float32)
  is_out = np.r_[np.zeros(N_CLUSTER, bool), np.ones(N_OUT, bool)]
  return x, is_out


H = 0.5  # one bandwidth for every density below


def _log_density(x, keys=None, weights=None):
  return dk.log_kernel_sums(x, keys, config=dk.KernelConfig(bandwidth=H), key_weights=weights)


def _spread(log_dens):
  """Flatness of a density profile: standard deviation of the log density (0 = perfectly flat)."""
  return float(np.std(log_dens))


def test_ips_flattens_density_in_expectation_exactly():
  # E[sum_{x in sample} k(x, y)] = sum_x p_x k(x, y): computed exactly with key weights p (no randomness).
  # With p = c / s (no probability capped at 1) it is c * sum_x k(x, y) / s(x) ~ c: flat.
  x, is_out = _mixture()
  logs = _log_density(x)
  k = 50  # small enough that no inclusion probability reaches 1
  p = S.inverse_propensity_probs(logs, k, log=True)
  assert p.sum() == pytest.approx(k) and p.max() < 1
  expected = _log_density(x, x, p)
  assert _spread(expected) < 0.05 * _spread(logs), (_spread(expected), _spread(logs))
  # and the expected share of outliers far above their 10% base rate
  assert p[is_out].sum() / p.sum() > 0.4


@pytest.mark.parametrize("exact", [True, False])
def test_ips_sample_over_represents_outliers_and_is_flatter(exact):
  x, is_out = _mixture()
  logs = _log_density(x)
  k = 50
  idx = S.inverse_propensity_sample(logs, k, seed=3, exact=exact, log=True)
  if exact:
    assert len(idx) == k and len(set(idx.tolist())) == k
  else:
    assert abs(len(idx) - k) < 20 and np.all(np.diff(idx) > 0)
  frac_out = is_out[idx].mean()
  assert frac_out > 6 * is_out.mean(), frac_out  # >> the 10% base rate
  uniform = S.random_sample(len(x), k, seed=3)
  # density of each sample measured within the sample itself: IPS's is far flatter than the input's, and than a
  # uniform sample's (which inherits the input's imbalance)
  s_ips = _spread(_log_density(x[idx]))
  s_in = _spread(logs)
  s_uni = _spread(_log_density(x[uniform]))
  assert s_ips < 0.5 * s_in and s_ips < 0.5 * s_uni, (s_ips, s_in, s_uni)
  # histogram of the input's density over the sample: the cluster no longer dominates
  assert is_out[uniform].mean() < 0.2


def test_bernoulli_inclusion_frequencies_are_proportional_to_inverse_score():
  rng = np.random.default_rng(0)
  scores = rng.uniform(1, 50, size=40)
  p = S.inverse_propensity_probs(scores, 8)
  uncapped = p < 1
  ratio = (p * scores)[uncapped]
  np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)  # p_i ∝ 1/score_i exactly
  hits = np.zeros(40)
  trials = 3000
  for seed in range(trials):
    hits[S.inverse_propensity_sample(scores, 8, seed=seed, exact=False)] += 1
  freq = hits / trials
  assert np.abs(freq - p).max() < 4 * np.sqrt(0.25 / trials) + 1e-9


def test_probabilities_cap_at_one_and_sum_to_k():
  scores = np.array([0.001, 0.002, 5, 5, 5, 5, 5, 5])
  p = S.inverse_propensity_probs(scores, 4)
  assert p[:2].tolist() == [1.0, 1.0]
  np.testing.assert_allclose(p[2:], 2 / 6)
  assert p.sum() == pytest.approx(4)
  assert S.inverse_propensity_probs(scores, 8).tolist() == [1.0] * 8
  # log input gives the same probabilities
  np.testing.assert_allclose(S.inverse_propensity_probs(np.log(scores), 4, log=True), p)


def test_exact_ips_is_seeded_and_prefers_low_density():
  scores = np.r_[np.full(50, 100.0), np.full(50, 1.0)]
  a = S.inverse_propensity_sample(scores, 20, seed=7)
  assert np.array_equal(a, S.inverse_propensity_sample(scores, 20, seed=7))
  assert not np.array_equal(a, S.inverse_propensity_sample(scores, 20, seed=8))
  assert (a >= 50).mean() > 0.8


def test_top_bottom_random_and_dispatch():
  s = np.array([3.0, 1.0, 3.0, 7.0, 0.5])
  assert S.top_k(s, 3).tolist() == [3, 0, 2]
  assert S.bottom_k(s, 2).tolist() == [4, 1]
  r = S.random_sample(5, 5, seed=1)
  assert sorted(r.tolist()) == [0, 1, 2, 3, 4]
  assert S.sample("topk", s, 1).tolist() == [3]
  assert S.sample("bottomk", s, 1).tolist() == [4]
  assert len(S.sample("ips", s, 2, seed=0)) == 2


def test_errors_name_the_problem():
  with pytest.raises(ValueError, match=r"1 of 3 scores are not finite \(indices \[1\]\)"):
    S.top_k([1.0, np.nan, 2.0], 1)
  with pytest.raises(ValueError, match=r"scores > 0; 1 are <= 0 \(indices \[0\]\)"):
    S.inverse_propensity_sample([0.0, 1.0], 1)
  with pytest.raises(ValueError, match=r"k must be an int in \[0, 2\], got 3"):
    S.top_k([1.0, 2.0], 3)
  with pytest.raises(ValueError, match="unknown sampling method 'foo'"):
    S.sample("foo", [1.0], 1)


def test_id_keyed_samples_ignore_input_order_and_follow_the_weights():
  rng = np.random.default_rng(0)
  ids = [f"doc-{i}" for i in range(400)]
  logs = rng.normal(size=400)
  perm = rng.permutation(400)
  for method in S.METHODS:
    a = [ids[i] for i in S.sample(method, logs, 50, seed=4, log=True, ids=ids)]
    b = [ids[perm[i]] for i in S.sample(method, logs[perm], 50, seed=4, log=True, ids=[ids[j] for j in perm])]
    assert a == b, method  # same documents, same order, whatever order the input came in
  assert S.sample("topk", logs, 5, ids=ids).tolist() == np.argsort(-logs)[:5].tolist()
  # the uniforms are a pure function of (seed, id), uniform on (0, 1)
  u = S.id_uniforms([str(i) for i in range(20000)], seed=1)
  assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
  assert not np.array_equal(u[:10], S.id_uniforms([str(i) for i in range(10)], seed=2))
  # ips keeps low-density documents more often: inclusion rate of the densest fifth vs the sparsest fifth
  big = [f"d{i}" for i in range(5000)]
  dens = np.repeat([0.0, 3.0], 2500)  # log densities: half sparse, half 20x denser
  kept = S.sample("ips", dens, 1000, seed=0, log=True, ids=big)
  sparse = np.sum(kept < 2500)
  assert sparse > 900  # weights 1/density: ~95% of the sample from the sparse half
  # keys order ties by id ascending
  assert S.top_by_key([1.0, 1.0, 2.0], ["b", "a", "c"], 3).tolist() == [2, 1, 0]
