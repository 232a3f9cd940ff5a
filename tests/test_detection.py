"""Detection metrics on hand-made cases with known answers; the perplexity selector against NumPy."""

import math

import numpy as np
import pytest

from tokensift.pipeline import detection as det
from tokensift.selection import perplexity as ppl


def test_roc_auc_known_cases():
  assert det.roc_auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
  assert det.roc_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
  # 2 positives x 2 negatives = 4 pairs: (0.9>0.5), (0.9>0.3), (0.4<0.5), (0.4>0.3) -> 3/4
  assert det.roc_auc([0.9, 0.4, 0.5, 0.3], [True, True, False, False]) == 0.75
  assert det.roc_auc([0.5, 0.5], [True, False]) == 0.5  # a tie counts one half
  assert det.roc_auc([1.0, 2.0], [True, True]) is None


def test_precision_recall_counts():
  r = det.precision_recall([True, True, False, False, True], [True, False, True, False, True])
  assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 1)
  assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
  none = det.precision_recall([False, False], [False, False])
  assert none["precision"] is None and none["recall"] is None
  with pytest.raises(ValueError, match="shape"):
    det.precision_recall([True], [True, False])


def test_kept_share_and_cluster_share():
  rows = det.kept_share_by_rate([5, 4, 3, 2, 1, 0], [False, False, True, False, True, True], [50.0, 100.0])
  assert rows[0] == {"rate": 50.0, "junk_kept": pytest.approx(1 / 3), "clean_kept": pytest.approx(2 / 3)}
  assert rows[1]["junk_kept"] == rows[1]["clean_kept"] == 1.0
  assert det.cluster_keep_share([True, False, True, True, False], [0, 0, None, 1, 1]) == {0: 0.5, 1: 0.5}


def test_removed_lines():
  raw = "menu\nfirst real line\ncookie banner\nsecond real line\nfooter"
  assert det.removed_lines(raw, "first real line\nsecond real line") == [0, 2, 4]
  assert det.removed_lines(raw, None) == [0, 1, 2, 3, 4]
  assert det.removed_lines(raw, raw.replace("second", "2nd")) == []  # an in-place edit removes nothing
  assert det.removed_lines("a\nb\nc", "a\nc") == [1]


def test_paired_comparison():
  r = det.paired_comparison([5.0, 5.1, 4.9, 5.05], [5.5, 5.62, 5.38, 5.5])
  assert r["mean_diff"] == pytest.approx(-0.4875) and r["seeds_agreeing"] == 4 and r["beyond_noise"]
  assert r["p"] < 0.01 and r["t"] < 0
  noisy = det.paired_comparison([5.0, 5.3, 4.8], [5.1, 5.0, 5.0])
  assert not noisy["beyond_noise"] and noisy["seeds_agreeing"] == 2
  with pytest.raises(ValueError, match="paired"):
    det.paired_comparison([1.0], [2.0])


@pytest.mark.parametrize("mode", ppl.MODES)
@pytest.mark.parametrize("rate", [10.0, 33.0, 50.0, 100.0])
def test_perplexity_selector_matches_numpy(mode, rate):
  rng = np.random.default_rng(7)
  losses = [rng.gamma(2.0, 1.5, size=rng.integers(5, 60)) for _ in range(41)]
  log_ppl = ppl.log_perplexity(losses)
  np.testing.assert_allclose(log_ppl, [np.mean(x) for x in losses])
  log_ppl[3] = log_ppl[4]  # a tie: broken by index
  got = ppl.select_indices(log_ppl, rate, mode)
  k = {10.0: 4, 33.0: 14, 50.0: 21, 100.0: 41}[rate]  # 41 documents: 4.1, 13.53, 20.5 (half up: 21), 41
  order = np.argsort(log_ppl, kind="stable")
  start = {"low": 0, "middle": (41 - k) // 2, "high": 41 - k}[mode]
  np.testing.assert_array_equal(got, np.sort(order[start : start + k]))
  perp = np.exp(log_ppl)
  if mode == "low" and rate < 100:  # every kept document has lower perplexity than every dropped one
    assert perp[got].max() <= np.delete(perp, got).min()
  assert math.isnan(ppl.log_perplexity([[]])[0])
  with pytest.raises(ValueError, match="mode='median'"):
    ppl.select_indices(log_ppl, rate, "median")


def test_askllm_diagnostics_hand_made():
  """3 clean documents and 2 junk kinds. P(yes): clean 0.2, 0.1, 0.05; spam 0.3 (above every clean: AUC 0),
  salad 0.075 (above one clean of three: AUC 2/3). Normalised by P(no), the spam's 0.3 / (0.3 + 0.6) = 1/3
  is below every clean document's (0.8, 0.5, 0.5): AUC 1 against it."""
  from tokensift.pipeline import evidence

  p = [(0.2, 0.05), (0.1, 0.1), (0.05, 0.05), (0.3, 0.6), (0.075, 0.075)]
  recs = [{"logp_yes": math.log(y), "logp_no": math.log(n)} for y, n in p]
  lab = lambda kind, jk=None: {"kind": kind, "junk_kind": jk}
  labs = [lab("clean"), lab("dup"), lab("clean"), lab("junk", "spam"), lab("junk", "salad")]
  d = evidence.askllm_diagnostics(recs, labs)
  assert d["auc_by_junk_kind"] == {"salad": pytest.approx(2 / 3), "spam": 0.0}
  assert d["auc_normalised_by_junk_kind"]["spam"] == 1.0
  assert d["auc_normalised_by_junk_kind"]["salad"] == pytest.approx(2 / 3)  # 0.5 vs 0.8, 0.5 (tie), 0.5 (tie)
  assert d["auc_normalised"] == pytest.approx((3 + 2 / 3 * 3) / 6)
  assert d["yes_no_mass_clean"] == pytest.approx((0.25 + 0.2 + 0.1) / 3)
  assert d["yes_no_mass_junk"] == pytest.approx((0.9 + 0.15) / 2)
  assert d["p_yes_junk"] == pytest.approx(0.1875)
  # + two distilled-head records (no P(no)): in the P(yes) AUC, not in the yes/no readouts of the judge
  head = [{"logp_yes": math.log(p), "logp_no": None, "scorer": "distilled:x"} for p in (0.5, 0.01)]
  d2 = evidence.askllm_diagnostics(recs + head, labs + [lab("clean"), lab("junk", "spam")])
  assert d2["judge_docs"] == 5 and d["judge_docs"] == 5
  assert d2["auc_by_junk_kind"]["spam"] == pytest.approx(5 / 8)  # spam 0.3 under 1 of 4 clean, 0.01 under all 4
  for k in ("auc_normalised", "auc_normalised_by_junk_kind", "yes_no_mass_clean", "yes_no_mass_junk"):
    assert d2[k] == d[k], k
