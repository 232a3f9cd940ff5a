"""optax optimizers (AdamW, Adafactor) and learning-rate schedules for the embedded trainer."""

from __future__ import annotations

import optax

from tokensift.trainer.config import OptimizerConfig


def make_schedule(cfg: OptimizerConfig, total_steps: int) -> optax.Schedule:
  """Linear warmup over ``warmup_steps`` then ``cfg.schedule`` (see OptimizerConfig) until ``total_steps``."""
  peak, warm = cfg.learning_rate, cfg.warmup_steps
  end = peak * cfg.end_fraction
  decay_steps = max(1, total_steps - warm)
  after: optax.Schedule
  if cfg.schedule == "constant":
    after = optax.constant_schedule(peak)
  elif cfg.schedule == "cosine":
    after = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.end_fraction)
  elif cfg.schedule == "linear":
    after = optax.linear_schedule(peak, end, decay_steps)
  else:  # rsqrt: peak * sqrt(max(warm, 1) / max(step, warm, 1)), as t5x's 'constant * rsqrt_decay'
    base = max(warm, 1)

    def rsqrt(count):
      import jax.numpy as jnp

      return peak * jnp.sqrt(base / jnp.maximum(count + warm, base))

    after = rsqrt
  if warm == 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), after], [warm])


def make_optimizer(cfg: OptimizerConfig, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer, schedule). Gradient clipping by global norm when ``clip_norm`` is set; decoupled weight decay
  (AdamW) skips vectors (norm scales)."""
  schedule = make_schedule(cfg, total_steps)
  if cfg.name == "adamw":

    def decay_mask(params):
      import jax

      return jax.tree.map(lambda p: p.ndim >= 2, params)

    opt = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay, mask=decay_mask)
  else:
    opt = optax.adafactor(schedule, weight_decay_rate=cfg.weight_decay or None)
  chain = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
  return optax.chain(*chain, opt), schedule
