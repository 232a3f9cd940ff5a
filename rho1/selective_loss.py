"""Rho-1 Selective Language Modeling (SLM) loss: pure functions on arrays (DESIGN §6).

Excess loss of a token = L_θ(x_i) - L_ref(x_i), with L_θ the model's cross-entropy and L_ref the reference model's
(computed offline, aligned with the targets). SLM keeps the top ``ratio`` (the setting ``slm_ratio``, checked by
``check_slm_ratio``) fraction of the valid tokens by excess
loss and averages the model's cross-entropy over them only. The selection is a stop-gradient mask; tokens with
loss weight 0 (padding) are never selected.

Selection rule (identical for every device layout, so a global batch gives the same mask on 1 device or on a
pjit mesh):
  - ``k = floor(ratio * n_valid + 0.5)`` (nearest integer, halves up; computed in float32) over the global batch
    (``scope='batch'``) or per row (``scope='sequence'``);
  - the threshold is the k-th largest excess loss, found with a sort over the flattened global batch (XLA's
    SPMD partitioner makes the sort global under pjit); tokens above it are selected, and among tokens equal to
    it, those with the lowest flat (row-major) index first, so ties are deterministic.

Shapes: ``logits [batch, length, vocab]``, ``targets/weights/ref_losses [batch, length]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
SCOPES = ("batch", "sequence")
DEFAULT_SLM_RATIO = 0.6  # Rho-1: 0.6 for 1B models, 0.7 for 7B


def check_slm_ratio(slm_ratio: float, where: str = "slm_ratio") -> float:
  """The one validation of the SLM ratio (``LossConfig.slm_ratio``, gin ``SLM_RATIO``, t5x ``slm_ratio``,
  ``--slm_ratio``): a fraction in (0, 1] (0 would select no token, so nothing would be trained). Returns it."""
  try:
    value = float(slm_ratio)
  except (TypeError, ValueError):
    value = float("nan")
  if not 0.0 < value <= 1.0:  # also rejects NaN
    raise ValueError(f"{where}={slm_ratio!r} must be in (0, 1]")
  return value


def check_scope(scope: str, where: str = "scope") -> str:
  """The one validation of the selection scope ('batch' or 'sequence'). Returns it."""
  if scope not in SCOPES:
    raise ValueError(f"{where}={scope!r}: use one of {SCOPES}")
  return scope


def token_cross_entropy(logits: Array, targets: Array) -> tuple[Array, Array]:
  """Per-token cross-entropy and log-partition.

  Args:
    logits: [batch, length, vocab] (any float dtype; computed in float32).
    targets: int[batch, length].
  Returns:
    (ce, log_z): float32 [batch, length] each; ``ce = log_z - logits[target]`` = -log softmax(logits)[target].
  """
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets.astype(jnp.int32)[..., None], axis=-1)[..., 0]
  return log_z - target_logit, log_z


def selection_count(num_valid: Array, ratio: float) -> Array:
  """``floor(ratio * num_valid + 0.5)`` as int32 (float32 arithmetic; see the module docstring)."""
  return jnp.floor(num_valid.astype(jnp.float32) * jnp.float32(ratio) + 0.5).astype(jnp.int32)


def _top_fraction_rows(scores: Array, valid: Array, ratio: float) -> Array:
  """Per row of ``scores [rows, n]``: the top ``ratio`` of the valid entries (see module docstring)."""
  n = scores.shape[-1]
  key = jnp.where(valid & ~jnp.isnan(scores), scores, -jnp.inf)
  num_valid = jnp.sum(valid, axis=-1)
  k = selection_count(num_valid, ratio)  # [rows]
  ascending = jnp.sort(key, axis=-1)
  # k-th largest = ascending[n - k]; clamp the index for k == 0 (then nothing is selected below).
  idx = jnp.clip(n - k, 0, n - 1)
  threshold = jnp.take_along_axis(ascending, idx[:, None], axis=-1)  # [rows, 1]
  above = (key > threshold) & valid
  at = (key == threshold) & valid
  room = (k - jnp.sum(above, axis=-1))[:, None]
  tie_rank = jnp.cumsum(at.astype(jnp.int32), axis=-1)  # 1-based rank among ties, in index order
  selected = above | (at & (tie_rank <= room))
  return selected & (k > 0)[:, None]


def select_tokens(excess: Array, weights: Array, ratio: float, scope: str = "batch") -> Array:
  """Boolean selection mask [batch, length]: top ``ratio`` of tokens with ``weights > 0`` by ``excess``.

  ``scope='batch'`` ranks over the whole (global) batch, ``'sequence'`` within each row. The result carries no
  gradient.
  """
  check_scope(scope)
  check_slm_ratio(ratio)
  if excess.ndim != 2 or excess.shape != weights.shape:
    raise ValueError(f"excess {excess.shape} and weights {weights.shape} must both be [batch, length]")
  excess = jax.lax.stop_gradient(excess.astype(jnp.float32))
  valid = jax.lax.stop_gradient(weights) > 0
  if scope == "batch":
    mask = _top_fraction_rows(excess.reshape(1, -1), valid.reshape(1, -1), ratio).reshape(excess.shape)
  else:
    mask = _top_fraction_rows(excess, valid, ratio)
  return jax.lax.stop_gradient(mask)


def _safe_div(num: Array, den: Array) -> Array:
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def selective_cross_entropy(
  logits: Array,
  targets: Array,
  weights: Array,
  ref_losses: Array,
  ratio: float,
  scope: str = "batch",
  z_loss: float = 0.0,
) -> tuple[Array, dict[str, Array]]:
  """The Rho-1 SLM loss.

  Args:
    logits: [batch, length, vocab] model outputs.
    targets: int[batch, length] target tokens.
    weights: [batch, length] loss weights; 0 marks padding (never selected); other values weight the mean.
    ref_losses: float[batch, length] reference-model loss of each target token (aligned with ``targets``).
    ratio: fraction of the valid tokens to train on (Rho-1: 0.6 for 1B, 0.7 for 7B).
    scope: 'batch' (global top-k over the batch) or 'sequence' (top-k within each row).
    z_loss: coefficient of the auxiliary ``log(Z)^2`` term (t5x / PaLM), averaged over the selected tokens.
  Returns:
    (loss, metrics): ``loss`` = weighted mean over selected tokens of ``ce + z_loss * log_z**2``; metrics
    (float32 scalars): ``selected_fraction``, ``excess_selected`` / ``excess_unselected`` (mean excess loss),
    ``ce_unmasked`` (weighted mean cross-entropy over all valid tokens), ``ce_selected``, ``z_loss``,
    ``num_selected``, ``num_valid``.
  """
  if logits.shape[:-1] != targets.shape or targets.shape != weights.shape or weights.shape != ref_losses.shape:
    raise ValueError(
      f"shape mismatch: logits {logits.shape}, targets {targets.shape}, weights {weights.shape}, "
      f"ref_losses {ref_losses.shape}; expected [batch, length, vocab] and [batch, length]"
    )
  ce, log_z = token_cross_entropy(logits, targets)
  w = weights.astype(jnp.float32)
  excess = jax.lax.stop_gradient(ce) - ref_losses.astype(jnp.float32)
  mask = select_tokens(excess, w, ratio, scope)
  sel_w = w * mask
  z_term = z_loss * jnp.square(log_z)
  denom = jnp.sum(sel_w)
  ce_selected = _safe_div(jnp.sum(ce * sel_w), denom)
  z_mean = _safe_div(jnp.sum(z_term * sel_w), denom)
  loss = ce_selected + z_mean
  valid = w > 0
  unselected = valid & ~mask
  excess = jax.lax.stop_gradient(excess)
  num_valid = jnp.sum(valid).astype(jnp.float32)
  num_selected = jnp.sum(mask).astype(jnp.float32)
  num_unselected = jnp.sum(unselected).astype(jnp.float32)
  metrics = {
    "selected_fraction": _safe_div(num_selected, num_valid),
    "excess_selected": _safe_div(jnp.sum(jnp.where(mask, excess, 0.0)), num_selected),
    "excess_unselected": _safe_div(jnp.sum(jnp.where(unselected, excess, 0.0)), num_unselected),
    "ce_unmasked": jax.lax.stop_gradient(_safe_div(jnp.sum(ce * w), jnp.sum(w))),
    "ce_selected": jax.lax.stop_gradient(ce_selected),
    "z_loss": jax.lax.stop_gradient(z_mean),
    "num_selected": num_selected,
    "num_valid": num_valid,
  }
  return loss, metrics


def weighted_cross_entropy(
  logits: Array, targets: Array, weights: Array, z_loss: float = 0.0
) -> tuple[Array, dict[str, Array]]:
  """Plain causal-LM loss (the CLM baseline): weighted mean over valid tokens of ``ce + z_loss * log_z**2``.

  Shapes as ``selective_cross_entropy``; metrics: ``ce_unmasked``, ``z_loss``, ``num_valid``.
  """
  ce, log_z = token_cross_entropy(logits, targets)
  w = weights.astype(jnp.float32)
  denom = jnp.sum(w)
  ce_mean = _safe_div(jnp.sum(ce * w), denom)
  z_mean = _safe_div(jnp.sum(z_loss * jnp.square(log_z) * w), denom)
  metrics = {
    "ce_unmasked": jax.lax.stop_gradient(ce_mean),
    "z_loss": jax.lax.stop_gradient(z_mean),
    "num_valid": jnp.sum(w > 0).astype(jnp.float32),
  }
  return ce_mean + z_mean, metrics
