"""Exact kernel sums for DENSITY (DESIGN §5): ``score(y) = sum_x k(x, y)`` over document embeddings.

Kernels (``h`` = bandwidth, all with ``k(y, y) = 1``):

- ``gaussian``:  ``k(x, y) = exp(-|x - y|^2 / (2 h^2))``
- ``laplacian``: ``k(x, y) = exp(-|x - y| / h)``
- ``cosine``:    ``k(x, y) = exp(-(1 - cos(x, y)) / h^2)``, the von Mises-Fisher kernel; it equals the Gaussian
  kernel of bandwidth ``h`` on the L2-normalized embeddings (``|x^ - y^|^2 = 2 (1 - cos)``).

Bandwidth: a float, or a heuristic name resolved on the data (``bandwidth_heuristic``):

- ``"median"``: the median Euclidean distance between distinct pairs of a seeded subsample of at
  most 1000 points (the "median heuristic" of kernel methods, Gretton et al. 2012); a point at the median
  distance then contributes ``exp(-1/2)`` under the Gaussian kernel. Robust in high dimension.
- ``"median_n"`` (the default everywhere, ``DEFAULT_BANDWIDTH``): the median distance ``m`` (as above) shrunk so
  that a point at the median distance contributes
  ``1/n`` (``n`` = number of keys): ``h = m / sqrt(2 ln n)`` for the Gaussian and cosine kernels, ``m / ln n``
  for the Laplacian. The ``n`` points at typical distances then add up to about one self term, so a sum counts
  the neighbours much closer than typical (near-duplicates, dense topics). With ``"median"`` every pair of
  384-d MiniLM embeddings contributes ~``exp(-1/2)`` (distances concentrate: on the known-answer C4 corpus the
  1% and 50% quantiles of pairwise distance are 1.16 and 1.38), so all log densities agree to ~0.03 and
  inverse-propensity sampling keeps near-duplicate clusters at the random rate; ``"median_n"`` gives their
  members several times the density of other documents.
- ``"scott"``: Scott's rule ``sigma * n^(-1/(d+4))`` with ``sigma`` the root mean per-dimension variance. It is
  the textbook rule for low ``d``, but for 384-d unit embeddings it gives ``h`` ~ 0.05 while pairwise distances
  are ~1, so every sum collapses to the self term; offered for low-dimensional data only.

Computation: the Gaussian uses the matmul form ``|x|^2 + |y|^2 - 2 x.y`` (clamped at 0, fp32 accumulation), so
the cost is one ``[Bq, d] x [d, Bk]`` matmul per tile plus an ``exp``: the matmul roofline is the limit. Queries
are padded to a multiple of ``query_block * devices`` and sharded over every device of the mesh
(``shard_map``); inside a device a ``lax.map`` walks its query blocks and a ``lax.scan`` the key blocks; keys
are streamed from the host in chunks of ``key_chunk`` rows (padded keys carry weight 0), so device memory is
``O(queries / devices + key_chunk + Bq * Bk)`` for any N. The density of a set within itself (``keys=None``, the
DENSITY score) uses the symmetry ``k(x, y) = k(y, x)`` instead: each pair of blocks is computed once, its row
sums going to one block and its column sums to the other (``_self_sums``), half the FLOPs. On both paths each
query's sum is computed by the same sequence of operations whatever the device count, so 1 device and 8
devices give identical results.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

KERNELS = ("gaussian", "laplacian", "cosine")
BANDWIDTH_HEURISTICS = ("median", "median_n", "scott")
# One default for KernelConfig, select_job.SelectConfig, `tokensift select --bandwidth` and the pipeline: with plain
# "median" DENSITY gives near-duplicates no more density than the rest (module docstring).
DEFAULT_BANDWIDTH = "median_n"


@dataclasses.dataclass(frozen=True)
class KernelConfig:
  """What to sum and how to tile it.

  kernel: one of ``KERNELS``. bandwidth: float > 0 or a name in ``BANDWIDTH_HEURISTICS``.
  query_block x key_block: the tile computed at once ([Bq, Bk] floats). key_chunk: keys sent to the devices per
  step (rounded up to a multiple of key_block). symmetric: for the density of a set within itself (``keys=None``,
  no weights) compute each pair of blocks once (``_self_sums``; half the FLOPs) in tiles of
  ``self_block x self_block``.
  """

  kernel: str = "gaussian"
  bandwidth: float | str = DEFAULT_BANDWIDTH
  query_block: int = 256
  key_block: int = 2048
  key_chunk: int = 1 << 18
  symmetric: bool = True
  self_block: int = 512

  def __post_init__(self):
    if self.kernel not in KERNELS:
      raise ValueError(f"unknown kernel {self.kernel!r}; choose one of {KERNELS}")
    if isinstance(self.bandwidth, str):
      if self.bandwidth not in BANDWIDTH_HEURISTICS:
        raise ValueError(
          f"unknown bandwidth heuristic {self.bandwidth!r}; use a float > 0 or one of {BANDWIDTH_HEURISTICS}"
        )
    elif not (isinstance(self.bandwidth, (int, float)) and math.isfinite(self.bandwidth) and self.bandwidth > 0):
      raise ValueError(f"bandwidth must be a finite float > 0, got {self.bandwidth!r}")
    for name in ("query_block", "key_block", "key_chunk", "self_block"):
      v = getattr(self, name)
      if not (isinstance(v, int) and v > 0):
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def validate_embeddings(x, *, dim: int | None = None, name: str = "embeddings") -> np.ndarray:
  """Returns ``x`` as a C-contiguous float32 ``[n, d]`` array, or raises ValueError saying what is wrong.

  Rejects: not 2-D, zero rows, a dimension other than ``dim``, NaN or +-inf values (the message gives how many
  rows and the first offending row indices).
  """
  arr = np.asarray(x)
  if arr.ndim != 2:
    raise ValueError(f"{name} must be a 2-D array [n, d], got shape {arr.shape}")
  if arr.shape[0] == 0:
    raise ValueError(f"{name} is empty (shape {arr.shape})")
  if dim is not None and arr.shape[1] != dim:
    raise ValueError(f"{name} have dimension {arr.shape[1]}, expected {dim} (shape {arr.shape})")
  if not np.issubdtype(arr.dtype, np.floating):
    raise ValueError(f"{name} must be floating point, got dtype {arr.dtype}")
  bad = ~np.isfinite(arr).all(axis=1)
  if bad.any():
    rows = np.flatnonzero(bad)
    raise ValueError(
      f"{name}: {rows.size} of {arr.shape[0]} rows contain NaN or inf (rows "
      f"{rows[:10].tolist()}{' ...' if rows.size > 10 else ''})"
    )
  arr = np.ascontiguousarray(arr, dtype=np.float32)
  if not np.isfinite(arr).all():
    rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    raise ValueError(f"{name}: {rows.size} rows overflow float32 (rows {rows[:10].tolist()})")
  return arr


def l2_normalize(x: np.ndarray) -> np.ndarray:
  """Rows scaled to unit L2 norm (zero rows stay zero). x: [n, d] -> [n, d] float32."""
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def subsample_indices(n: int, k: int, seed: int) -> np.ndarray:
  """``min(n, k)`` distinct indices in ``[0, n)``, sorted (int64 ``[min(n, k)]``), the same for a seed. O(k) memory,
  not O(n): numpy's ``Generator.choice(n, k, replace=False)`` uses Floyd's algorithm (a set of k draws) when
  ``k <= n / 50`` and a partial shuffle of ``arange(n)`` otherwise, i.e. only when ``n < 50 k`` (numpy 2.x
  ``_generator.pyx``; measured: 1.3 MB peak for k = 1000 of n = 10^9), so no hand-written sampler is needed."""
  if n <= k:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def bandwidth_heuristic(
  x, method: str = DEFAULT_BANDWIDTH, *, kernel: str = "gaussian", sample: int = 1000, seed: int = 0
) -> float:
  """A bandwidth for ``x`` ([n, d]); see the module docstring. ``kernel='cosine'`` measures on unit rows."""
  x = validate_embeddings(x)
  if kernel == "cosine":
    x = l2_normalize(x)
  n, d = x.shape
  if method in ("median", "median_n"):
    if n < 2:
      raise ValueError(f"the {method} bandwidth heuristic needs at least 2 embeddings, got {n}")
    s = x[subsample_indices(n, sample, seed)].astype(np.float64)
    sq = (s * s).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * s @ s.T, 0.0)
    dist = np.sqrt(d2[np.triu_indices(len(s), k=1)])
    h = float(np.median(dist))
    if method == "median_n":  # the median-distance pair contributes exp(-ln n) = 1/n
      h = h / math.log(n) if kernel == "laplacian" else h / math.sqrt(2.0 * math.log(n))
  elif method == "scott":
    sigma = float(np.sqrt(x.astype(np.float64).var(axis=0).mean()))
    h = sigma * n ** (-1.0 / (d + 4))
  else:
    raise ValueError(f"unknown bandwidth heuristic {method!r}; use one of {BANDWIDTH_HEURISTICS}")
  if not h > 0:
    raise ValueError(f"bandwidth heuristic {method!r} gave {h} (are all embeddings identical?); pass a float")
  return h


def resolve_bandwidth(x, bandwidth: float | str, kernel: str = "gaussian") -> float:
  return float(bandwidth) if not isinstance(bandwidth, str) else bandwidth_heuristic(x, bandwidth, kernel=kernel)


def log_sums_from_sklearn(log_density, n: int, d: int, bandwidth: float):
  """Converts sklearn ``KernelDensity(kernel='gaussian', bandwidth=h).score_samples`` to ``log sum_x k(x, y)``.

  sklearn's density is ``(1/n) sum_x (2 pi h^2)^(-d/2) exp(-|x-y|^2 / 2h^2)``, so
  ``log sum = log_density + log n + (d/2) log(2 pi h^2)``.
  """
  return np.asarray(log_density, np.float64) + math.log(n) + 0.5 * d * math.log(2 * math.pi * bandwidth**2)


# ---------------------------------------------------------------------------------------------------------
# The jitted core.


def _tile_logits(kernel: str, q, a, k, b):
  """Log kernel values of one tile before the key weights: [Bq, Bk].

  q: [Bq, d] queries (pre-scaled, see ``_prepare``); a: [Bq] query terms; k: [Bk, d] keys; b: [Bk] key terms.
  """
  dot = jnp.dot(q, k.T, preferred_element_type=jnp.float32)  # [Bq, Bk], fp32 accumulation
  if kernel == "laplacian":
    # q, k unscaled; a = |q|^2, b = |k|^2; a[.] holds 1/h in the caller's closure instead (see _prepare).
    norms = a[:, None] + b[None, :]
    d2 = norms - 2.0 * dot
    # fp32 cancellation leaves |d2| ~ 1e-7 |x|^2 for (near-)identical rows, which sqrt would amplify to
    # ~3e-4 |x|: treat d2 below that noise level as 0 (so k(x, x) = 1 exactly)
    d2 = jnp.where(d2 <= 1e-6 * norms, 0.0, d2)
    return -jnp.sqrt(d2)
  # gaussian / cosine: q pre-scaled by 1/h^2, a = -|q|^2/(2h^2), b = -|k|^2/(2h^2): logit = -|q-k|^2/(2h^2) <= 0
  return jnp.minimum(dot + a[:, None] + b[None, :], 0.0)


def _local_sums(kernel: str, log: bool, qb: int, kb: int, inv_h: float):
  """Per-device function: local queries [nq, d] x one key chunk -> updated accumulators [nq]."""

  def fn(q, a, acc_m, acc_s, k, b, logw):
    nq, d = q.shape
    qs = q.reshape(nq // qb, qb, d)
    as_ = a.reshape(nq // qb, qb)
    ks = k.reshape(-1, kb, d)
    bs = b.reshape(-1, kb)
    ws = logw.reshape(-1, kb)
    ms = acc_m.reshape(nq // qb, qb)
    ss = acc_s.reshape(nq // qb, qb)

    def one_query_block(args):
      qi, ai, m0, s0 = args

      def body(carry, blk):
        m, s = carry
        kj, bj, wj = blk
        z = _tile_logits(kernel, qi, ai, kj, bj)
        if kernel == "laplacian":
          z = z * inv_h
        z = z + wj[None, :]  # log weights: 0 for real keys, -inf for padding
        if log:  # online log-sum-exp: carry (running max m, sum of exp(z - m))
          m_new = jnp.maximum(m, z.max(axis=1))
          m_safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
          s = s * jnp.exp(m - m_safe) + jnp.exp(z - m_safe[:, None]).sum(axis=1)
          return (m_new, s), None
        return (m, s + jnp.exp(z).sum(axis=1)), None

      (m, s), _ = lax.scan(body, (m0, s0), (ks, bs, ws))
      return m, s

    m, s = lax.map(one_query_block, (qs, as_, ms, ss))
    return m.reshape(nq), s.reshape(nq)

  return fn


@functools.lru_cache(maxsize=64)
def _compiled(mesh: Mesh, kernel: str, log: bool, qb: int, kb: int, inv_h: float):
  axes = tuple(mesh.axis_names)
  rows = P(axes)
  fn = jax.shard_map(
    _local_sums(kernel, log, qb, kb, inv_h),
    mesh=mesh,
    in_specs=(P(axes, None), rows, rows, rows, P(), P(), P()),
    out_specs=(rows, rows),
    check_vma=False,
  )
  return jax.jit(fn, donate_argnums=(2, 3))


def _default_mesh() -> Mesh:
  from tokensift.models.partitioning import make_mesh

  return make_mesh()


def _prepare(kernel: str, x: np.ndarray, h: float, is_query: bool):
  """(scaled rows, per-row term) for the tile formula; see ``_tile_logits``. float32."""
  if kernel == "cosine":
    x = l2_normalize(x)
  sq = np.einsum("nd,nd->n", x.astype(np.float64), x.astype(np.float64))
  if kernel == "laplacian":
    return x, sq.astype(np.float32)
  term = (-sq / (2.0 * h * h)).astype(np.float32)
  rows = (x * np.float32(1.0 / (h * h))).astype(np.float32) if is_query else x
  return rows, term


# ---------------------------------------------------------------------------------------------------------
# The density of a set within itself: k(x, y) = k(y, x), so each pair of blocks is computed once.
#
# The N points are cut into nb blocks of b rows (nb a multiple of 2 lcm(8, devices)). Step 0 sums the diagonal
# tiles; step t = 1..nb/2 pairs block I with block I+t (mod nb): the tile's row sums go to block I, its column
# sums to block I+t (a "travelling" accumulator that rotates with the key blocks, ring-passed between devices with
# ppermute, and is rotated home at the end); when nb is even the last step's pairs appear twice and only the row
# sums are kept. Every block's sum is accumulated in the same order whatever the device count (for counts
# dividing 8, the block layout is identical too), so 1 and 8 devices give identical sums. No log space is
# needed: every sum holds its self term k(y, y) = 1, so terms that underflow float32 are < 1e-38 of it.


def _self_local(kernel: str, inv_h: float, nb: int, ndev: int, axes):

  def fn(q, a, k, bt, mask):  # local: q, k [m, b, d]; a, bt, mask [m, b]
    forward = [((p + 1) % ndev, p) for p in range(ndev)]  # device p receives block 0 of device p+1
    backward = [(p, (p + 1) % ndev) for p in range(ndev)]

    def roll(arr, perm, first):  # global rotation by one block (towards lower indices if first)
      if first:
        recv = lax.ppermute(arr[0], axes, perm)
        return jnp.concatenate([arr[1:], recv[None]], axis=0)
      recv = lax.ppermute(arr[-1], axes, perm)
      return jnp.concatenate([recv[None], arr[:-1]], axis=0)

    def tile_sums(args):
      qi, ai, mi, kj, bj, mj = args
      z = _tile_logits(kernel, qi, ai, kj, bj)
      if kernel == "laplacian":
        z = z * inv_h
      e = jnp.exp(z)  # [b, b]
      return (e * mj[None, :]).sum(axis=1), (e * mi[:, None]).sum(axis=0)

    rows0, _ = lax.map(tile_sums, (q, a, mask, k, bt, mask))

    def step(t, carry):
      s, c, kr, br, mr = carry
      kr, br, mr, c = (roll(v, forward, True) for v in (kr, br, mr, c))
      rows, cols = lax.map(tile_sums, (q, a, mask, kr, br, mr))
      s = s + rows
      c = c + jnp.where(2 * t == nb, 0.0, cols)
      return s, c, kr, br, mr

    steps = nb // 2
    s, c, *_ = lax.fori_loop(1, steps + 1, step, (rows0, jnp.zeros_like(rows0), k, bt, mask))
    c = lax.fori_loop(0, steps, lambda _, v: roll(v, backward, False), c)
    return s + c

  return fn


@functools.lru_cache(maxsize=32)
def _compiled_self(mesh: Mesh, kernel: str, inv_h: float, nb: int):
  axes = tuple(mesh.axis_names)
  blocks = P(axes)
  fn = jax.shard_map(
    _self_local(kernel, inv_h, nb, mesh.devices.size, axes),
    mesh=mesh,
    in_specs=(blocks,) * 5,
    out_specs=blocks,
    check_vma=False,
  )
  return jax.jit(fn)


def _self_sums(x: np.ndarray, config: KernelConfig, h: float, mesh: Mesh) -> np.ndarray:
  """``sum_i k(x_i, x_j)`` for every row j of x ([n, d]) -> float32 [n]; see the comment above."""
  n, d = x.shape
  ndev = mesh.devices.size

  def ceil_to(v: int, m: int) -> int:
    return -(-v // m) * m

  b = min(config.self_block, ceil_to(-(-n // 8), 8))  # >= 8 blocks, each a multiple of 8 rows
  # >= 2 blocks per device: XLA inlines a loop of one iteration and may then fuse (and round) differently
  nb = ceil_to(-(-n // b), 2 * math.lcm(8, ndev))
  pad = nb * b - n
  qrows, qterm = _prepare(config.kernel, x, h, is_query=True)
  krows, kterm = _prepare(config.kernel, x, h, is_query=False)
  mask = np.r_[np.ones(n, np.float32), np.zeros(pad, np.float32)]
  shaped = [
    np.pad(v, ((0, pad),) + ((0, 0),) * (v.ndim - 1)).reshape((nb, b) + v.shape[1:])
    for v in (qrows, qterm, krows, kterm)
  ]
  sh = NamedSharding(mesh, P(tuple(mesh.axis_names)))
  args = [jax.device_put(v, sh) for v in (shaped[0], shaped[1], shaped[2], shaped[3], mask.reshape(nb, b))]
  out = _compiled_self(mesh, config.kernel, float(1.0 / h), nb)(*args)
  return np.asarray(out).reshape(-1)[:n]


def _kernel_sums(
  queries, keys, config: KernelConfig, mesh: Mesh | None, key_weights, log: bool, progress: bool
) -> tuple[np.ndarray, float]:
  q = validate_embeddings(queries, name="queries")
  k = q if keys is None else validate_embeddings(keys, dim=q.shape[1], name="keys")
  h = resolve_bandwidth(k, config.bandwidth, config.kernel)
  w = None
  if key_weights is not None:
    w = np.asarray(key_weights, np.float64)
    if w.shape != (k.shape[0],) or not np.isfinite(w).all() or (w < 0).any():
      raise ValueError(f"key_weights must be {k.shape[0]} finite values >= 0, got shape {w.shape}")
  mesh = mesh if mesh is not None else _default_mesh()
  if keys is None and w is None and config.symmetric:
    sums = _self_sums(q, config, h, mesh)
    if log:
      with np.errstate(divide="ignore"):
        return np.log(sums).astype(np.float32), h
    return sums, h
  ndev = mesh.devices.size
  nq, d = q.shape
  # The query block never depends on the device count, so every query's sum runs the same ops (same tile
  # shapes) on 1 or 8 devices: bit-identical results.
  qb = min(config.query_block, max(8, -(-nq // 8) * 8))
  nq_pad = -(-nq // (2 * qb * ndev)) * (2 * qb * ndev)  # >= 2 query blocks per device, as in _self_sums
  kb = config.key_block
  nk = k.shape[0]
  chunk = min(-(-config.key_chunk // kb) * kb, -(-nk // kb) * kb)

  qrows, qterm = _prepare(config.kernel, q, h, is_query=True)
  qrows = np.pad(qrows, ((0, nq_pad - nq), (0, 0)))
  qterm = np.pad(qterm, (0, nq_pad - nq))
  krows, kterm = _prepare(config.kernel, k, h, is_query=False)
  logw_all = np.zeros(nk, np.float32) if w is None else np.log(np.where(w > 0, w, 1.0)).astype(np.float32)
  if w is not None:
    logw_all = np.where(w > 0, logw_all, -np.inf).astype(np.float32)

  fn = _compiled(mesh, config.kernel, log, qb, kb, float(1.0 / h))
  axes = tuple(mesh.axis_names)
  qsh = NamedSharding(mesh, P(axes, None))
  vsh = NamedSharding(mesh, P(axes))
  rep = NamedSharding(mesh, P())
  qd = jax.device_put(qrows, qsh)
  ad = jax.device_put(qterm, vsh)
  m = jax.device_put(np.full(nq_pad, -np.inf if log else 0.0, np.float32), vsh)
  s = jax.device_put(np.zeros(nq_pad, np.float32), vsh)
  starts = range(0, nk, chunk)
  if progress:
    from tqdm.auto import tqdm

    starts = tqdm(starts, desc="kernel sums", unit="key chunk", dynamic_ncols=True, mininterval=1.0)
  for start in starts:
    stop = min(start + chunk, nk)
    pad = chunk - (stop - start)
    kc = np.pad(krows[start:stop], ((0, pad), (0, 0)))
    bc = np.pad(kterm[start:stop], (0, pad))
    wc = np.pad(logw_all[start:stop], (0, pad), constant_values=-np.inf)
    m, s = fn(qd, ad, m, s, jax.device_put(kc, rep), jax.device_put(bc, rep), jax.device_put(wc, rep))
  m, s = np.asarray(m)[:nq], np.asarray(s)[:nq]
  if log:
    with np.errstate(divide="ignore"):
      out = np.where(np.isfinite(m), m + np.log(s), -np.inf).astype(np.float32)
  else:
    out = s
  return out, h


def kernel_sums(
  queries,
  keys=None,
  *,
  config: KernelConfig = KernelConfig(),
  mesh: Mesh | None = None,
  key_weights: Sequence[float] | np.ndarray | None = None,
  progress: bool = False,
) -> np.ndarray:
  """``out[j] = sum_i w_i k(keys[i], queries[j])``.

  queries: [Nq, d]; keys: [Nk, d] (default: the queries themselves, the DENSITY score of a corpus, self term
  included); key_weights: [Nk] >= 0 (default 1). Returns float32 [Nq]. Sums that underflow float32 (tiny
  bandwidths) come out 0: use ``log_kernel_sums`` then. The mesh defaults to all devices.
  """
  return _kernel_sums(queries, keys, config, mesh, key_weights, log=False, progress=progress)[0]


def log_kernel_sums(
  queries,
  keys=None,
  *,
  config: KernelConfig = KernelConfig(),
  mesh: Mesh | None = None,
  key_weights: Sequence[float] | np.ndarray | None = None,
  progress: bool = False,
  return_bandwidth: bool = False,
):
  """``log(kernel_sums(...))`` computed in log space (an online log-sum-exp over key blocks), so no bandwidth
  underflows. Returns float32 [Nq] (and the bandwidth used when ``return_bandwidth``)."""
  out, h = _kernel_sums(queries, keys, config, mesh, key_weights, log=True, progress=progress)
  return (out, h) if return_bandwidth else out
