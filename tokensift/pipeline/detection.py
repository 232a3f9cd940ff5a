"""Detection metrics against known answers (pure functions; DESIGN §12): ROC AUC, precision/recall, the share of
junk kept at each selection rate, the share of each near-duplicate cluster kept, the random selector
(the perplexity filter is ``tokensift.selection.perplexity``), lines removed by a refinement, and a paired
comparison over seeds."""

from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike

from tokensift.selection.keep import keep_count


def roc_auc(scores: ArrayLike, positive: ArrayLike) -> float | None:
  """Area under the ROC curve of ``scores`` ranking the ``positive`` items first (ties count one half);
  None when one class is empty. sklearn's implementation (a maintained library) does the work."""
  from sklearn.metrics import roc_auc_score

  y = np.asarray(positive, bool)
  if y.all() or not y.any():
    return None
  return float(roc_auc_score(y, np.asarray(scores, np.float64)))


def precision_recall(predicted: Sequence[bool], truth: Sequence[bool]) -> dict[str, Any]:
  """Precision, recall and F1 of boolean predictions (None where undefined), with the counts."""
  p, t = np.asarray(predicted, bool), np.asarray(truth, bool)
  if p.shape != t.shape:
    raise ValueError(f"predicted {p.shape} and truth {t.shape} differ in shape")
  tp, fp, fn = int(np.sum(p & t)), int(np.sum(p & ~t)), int(np.sum(~p & t))
  prec = tp / (tp + fp) if tp + fp else None
  rec = tp / (tp + fn) if tp + fn else None
  f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if prec is not None and rec is not None else None)
  return {"tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1}


def random_select(n: int, rate: float, seed: int = 0) -> np.ndarray:
  """The random baseline: indices (ascending) of ``keep_count(n, rate)`` of ``range(n)`` drawn uniformly without
  replacement (``samplers.random_sample``, seeded)."""
  from tokensift.selection import samplers

  return np.sort(samplers.random_sample(n, keep_count(n, rate), seed=seed))


def kept_share_by_rate(scores: ArrayLike, is_junk: ArrayLike, rates: Sequence[float]) -> list[dict[str, Any]]:
  """Top-``keep_count(n, rate)`` by ``scores`` (highest kept) at each rate: share of junk and of clean documents
  kept."""
  s, j = np.asarray(scores, np.float64), np.asarray(is_junk, bool)
  order = np.lexsort((np.arange(s.size), -s))
  out = []
  for r in rates:
    kept = np.zeros(s.size, bool)
    kept[order[: keep_count(s.size, r)]] = True
    out.append(
      {
        "rate": float(r),
        "junk_kept": float(kept[j].mean()) if j.any() else None,
        "clean_kept": float(kept[~j].mean()) if (~j).any() else None,
      }
    )
  return out


def cluster_keep_share(kept: ArrayLike, cluster: Sequence[int | None]) -> dict[int, float]:
  """For each cluster id: the share of its members that are ``kept``."""
  k = np.asarray(kept, bool)
  out: dict[int, list[bool]] = {}
  for i, c in enumerate(cluster):
    if c is not None:
      out.setdefault(int(c), []).append(bool(k[i]))
  return {c: float(np.mean(v)) for c, v in sorted(out.items())}


def removed_lines(raw: str, refined: str | None) -> list[int]:
  """0-based numbers of the lines of ``raw`` (split on '\\n') that are absent from ``refined`` (every line
  when ``refined`` is None, i.e. the document was dropped). A line changed in place (normalize) is kept."""
  a = raw.split("\n")
  if refined is None:
    return list(range(len(a)))
  b = refined.split("\n")
  out = []
  for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
    if op == "delete":
      out += range(i1, i2)
    elif op == "replace":  # lines edited in place survive; lines with no counterpart were removed
      out += range(i1 + (j2 - j1), i2) if i2 - i1 > j2 - j1 else []
  return out


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
  """``a`` vs ``b`` per seed (same seeds, same order): mean and sd of ``a - b``, the paired t statistic and
  two-sided p (scipy), how many seeds agree in sign, and ``beyond_noise``: p < 0.05 and every seed agrees."""
  from scipy import stats

  x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if x.shape != y.shape or x.size < 2:
    raise ValueError(f"paired comparison needs two equal-length sequences of >= 2 values, got {x.size} and {y.size}")
  d = x - y
  sd = float(np.std(d, ddof=1))
  if sd == 0.0:
    t, p = (math.inf if d.mean() else 0.0), (0.0 if d.mean() else 1.0)
  else:
    res = stats.ttest_rel(x, y)
    t, p = float(res.statistic), float(res.pvalue)
  agree = int(max(np.sum(d < 0), np.sum(d > 0)))
  return {
    "mean_diff": float(d.mean()),
    "sd_diff": sd,
    "t": t,
    "p": p,
    "seeds": int(d.size),
    "seeds_agreeing": agree,
    "beyond_noise": bool(p < 0.05 and agree == d.size and d.mean() != 0),
  }
