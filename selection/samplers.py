"""Samplers over per-document scores (DENSITY, ASK-LLM): inverse propensity, top-k, bottom-k, random.

All functions are pure, take ``scores: [n]`` (host arrays) and return int64 indices into them, in selection
order (top-k: best first; exact inverse propensity: the order the successive sampling drew them; Bernoulli
inverse propensity and random: as documented per function); the ``k`` for a sampling rate is
``keep.keep_count(n, rate)`` (one rule for every selector). Randomness comes from ``numpy.random.Generator``
(PCG64) seeded by ``seed``: the same inputs and seed give the same selection on every machine.

**Keyed by document id** (``sample(..., ids=...)``, what ``tokensift select`` uses): each document's random
number is a pure function of ``(seed, id)`` (``id_uniforms``: BLAKE2b of the id), so a selection does not
depend on the order or sharding of the input, and an Apache Beam pipeline that sees the documents in any order
selects exactly the same ones. Every method then reduces to "the ``k`` best by a per-document key"
(``selection_keys``; ties by id ascending): top-k (key = score), bottom-k (-score), random (a uniform) and
exact-size inverse propensity (``log(1/score) + Gumbel``).

Inverse propensity (DESIGN §5; Sachdeva et al. 2024, Algorithm 2 with the typo fixed): keep ``x`` with
probability proportional to ``1 / score(x)``. Two variants:

- ``exact=True`` (default): exactly ``k`` documents, weighted sampling without replacement with weights
  ``1 / score`` via the Gumbel-top-k trick (equivalent to Efraimidis & Spirakis 2006 keys ``u^(1/w)``): the top
  ``k`` of ``log w_i + Gumbel_i``.
- ``exact=False``: independent (Poisson) sampling with inclusion probability ``p_i = min(1, c / score_i)``,
  ``c`` chosen so that ``sum p_i = k`` (the expected size). Inclusion probabilities are then *exactly*
  proportional to ``1 / score`` (except where capped at 1), so the expected kernel density of the sample at
  any point is ``sum_x p_x k(x, y)``: flat wherever ``score`` varies slowly on the kernel's scale.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

METHODS = ("ips", "topk", "bottomk", "random")


def _check_scores(scores, *, log: bool = False, positive: bool = False) -> np.ndarray:
  s = np.asarray(scores, dtype=np.float64)
  if s.ndim != 1:
    raise ValueError(f"scores must be 1-D, got shape {s.shape}")
  bad = ~np.isfinite(s)
  if bad.any():
    rows = np.flatnonzero(bad)
    raise ValueError(f"{rows.size} of {s.size} scores are not finite (indices {rows[:10].tolist()})")
  if positive and not log and (s <= 0).any():
    rows = np.flatnonzero(s <= 0)
    raise ValueError(f"inverse propensity needs scores > 0; {rows.size} are <= 0 (indices {rows[:10].tolist()})")
  return s


def _check_k(k: int, n: int) -> int:
  if not (isinstance(k, (int, np.integer)) and 0 <= k <= n):
    raise ValueError(f"k must be an int in [0, {n}], got {k!r}")
  return int(k)


def top_k(scores, k: int) -> np.ndarray:
  """Indices of the ``k`` highest scores, highest first (ties: lower index first)."""
  s = _check_scores(scores)
  k = _check_k(k, s.size)
  return np.lexsort((np.arange(s.size), -s))[:k].astype(np.int64)


def bottom_k(scores, k: int) -> np.ndarray:
  """Indices of the ``k`` lowest scores, lowest first (ties: lower index first)."""
  s = _check_scores(scores)
  k = _check_k(k, s.size)
  return np.lexsort((np.arange(s.size), s))[:k].astype(np.int64)


def random_sample(n: int, k: int, *, seed: int = 0) -> np.ndarray:
  """``k`` of ``range(n)`` uniformly without replacement, in the order drawn."""
  k = _check_k(k, n)
  return np.random.default_rng(seed).permutation(n)[:k].astype(np.int64)


def _log_weights(scores, log: bool) -> np.ndarray:
  """log(1 / score), shifted so that the largest is 0. [n] float64."""
  s = _check_scores(scores, log=log, positive=True)
  lw = -s if log else -np.log(s)
  return lw - lw.max()


def inverse_propensity_probs(scores, k: int, *, log: bool = False) -> np.ndarray:
  """Inclusion probabilities ``p_i = min(1, c / score_i)`` with ``sum p = k``. float64 [n].

  ``log=True``: ``scores`` are log densities (e.g. from ``log_kernel_sums``).
  """
  lw = _log_weights(scores, log)
  n = lw.size
  k = _check_k(k, n)
  if k == 0:
    return np.zeros(n)
  w = np.exp(lw)  # in (0, 1]
  order = np.argsort(-w, kind="stable")
  ws = w[order]
  tail = np.cumsum(ws[::-1])[::-1]  # tail[t] = sum of ws[t:]
  # Water-filling: the t largest weights are capped at p = 1; t is the smallest with c_t * ws[t] <= 1, where
  # c_t = (k - t) / sum(ws[t:]) spreads the remaining k - t over the uncapped weights.
  t = np.arange(k)
  with np.errstate(divide="ignore", invalid="ignore"):
    c = (k - t) / tail[:k]
    ok = np.flatnonzero((tail[:k] > 0) & (c * ws[:k] <= 1.0 + 1e-12))
  if ok.size:
    t0 = int(ok[0])
    p_sorted = np.concatenate([np.ones(t0), np.minimum(1.0, c[t0] * ws[t0:])])
  else:  # only possible when weights underflow: keep the k lightest-density documents
    p_sorted = np.zeros(n)
    p_sorted[:k] = 1.0
  p = np.empty(n)
  p[order] = p_sorted
  return p


def inverse_propensity_sample(scores, k: int, *, seed: int = 0, exact: bool = True, log: bool = False) -> np.ndarray:
  """Indices sampled with probability proportional to ``1 / score`` (see the module docstring).

  exact=True: exactly ``k`` indices, in the order of successive weighted sampling. exact=False: a Poisson sample
  of expected size ``k``, in ascending index order. log=True: ``scores`` are log densities.
  """
  rng = np.random.default_rng(seed)
  if exact:
    lw = _log_weights(scores, log)
    k = _check_k(k, lw.size)
    keys = lw + rng.gumbel(size=lw.size)
    return np.lexsort((np.arange(lw.size), -keys))[:k].astype(np.int64)
  p = inverse_propensity_probs(scores, k, log=log)
  return np.flatnonzero(rng.random(p.size) < p).astype(np.int64)


def sample(
  method: str, scores, k: int, *, seed: int = 0, exact: bool = True, log: bool = False, ids: Sequence[str] | None = None
) -> np.ndarray:
  """Dispatches on ``method`` in ``METHODS`` (scores: densities, or log densities with ``log=True``).

  With ``ids``, randomness is keyed by document id (see the module docstring) and the selection is the ``k``
  best by ``selection_keys`` (exact-size methods; ``exact=False`` Poisson IPS draws its uniforms from the ids).
  """
  if ids is not None:
    if method == "ips" and not exact:
      p = inverse_propensity_probs(scores, k, log=log)
      if len(ids) != p.size:
        raise ValueError(f"{len(ids)} ids for {p.size} scores")
      return np.flatnonzero(id_uniforms(ids, seed) < p).astype(np.int64)
    return top_by_key(selection_keys(method, scores, ids, seed=seed, log=log), ids, k)
  if method == "ips":
    return inverse_propensity_sample(scores, k, seed=seed, exact=exact, log=log)
  if method == "topk":
    return top_k(scores, k)
  if method == "bottomk":
    return bottom_k(scores, k)
  if method == "random":
    return random_sample(len(np.asarray(scores)), k, seed=seed)
  raise ValueError(f"unknown sampling method {method!r}; choose one of {METHODS}")


def id_uniforms(ids: Sequence[str], seed: int = 0) -> np.ndarray:
  """One uniform number in (0, 1) per document, a pure function of ``(seed, id)``. float64 [n].

  BLAKE2b-64 of ``"{seed}\\0{id}"`` (stdlib ``hashlib``: no order, process or platform dependence), top 53 bits.
  """
  out = np.empty(len(ids), np.float64)
  prefix = f"{int(seed)}\0".encode()
  for i, doc_id in enumerate(ids):
    h = int.from_bytes(hashlib.blake2b(prefix + str(doc_id).encode("utf-8"), digest_size=8).digest(), "little")
    out[i] = ((h >> 11) + 0.5) / 9007199254740992.0  # 2**53
  return out


def selection_keys(method: str, scores, ids: Sequence[str], *, seed: int = 0, log: bool = False) -> np.ndarray:
  """Per-document keys: ``method`` keeps the ``k`` documents with the largest key (ties: id ascending). [n] float64.

  ``scores`` are densities (or log densities with ``log=True``; for ``topk``/``bottomk`` any scores).
  """
  if method not in METHODS:
    raise ValueError(f"unknown sampling method {method!r}; choose one of {METHODS}")
  s = _check_scores(scores, log=log, positive=(method == "ips"))
  if len(ids) != s.size:
    raise ValueError(f"{len(ids)} ids for {s.size} scores")
  if method == "topk":
    return s.copy()
  if method == "bottomk":
    return -s
  u = id_uniforms(ids, seed)
  if method == "random":
    return u
  log_w = -s if log else -np.log(s)
  return log_w - np.log(-np.log(u))  # log(1/score) + Gumbel(u)


def top_by_key(keys, ids: Sequence[str], k: int) -> np.ndarray:
  """Indices of the ``k`` largest keys, largest first, ties by id ascending. int64 [k]."""
  keys = np.asarray(keys, np.float64)
  k = _check_k(k, keys.size)
  if keys.size == 0:
    return np.zeros(0, np.int64)
  return np.lexsort((np.asarray(ids, dtype=str), -keys))[:k].astype(np.int64)
