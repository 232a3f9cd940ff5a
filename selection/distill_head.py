"""Heads for the distilled ASK-LLM scorer: maps from a document embedding ``x [d]`` to the judge's score.

- ``ridge``: a linear map fitted in closed form by scikit-learn's ``RidgeCV`` (the ridge penalty chosen by
  efficient leave-one-out over ``alphas``); params ``{"w": [d], "b": []}``.
- ``mlp``: one hidden ReLU layer, ``{"w1": [d, h], "b1": [h], "w2": [h], "b2": []}``, trained full-batch with
  optax's AdamW on the mean squared error of the standardised target (the scale is folded back into ``w2``/``b2``).

``predict`` is NumPy in float64, row by row independent (a per-row reduction for the output), so a document's
score does not depend on the batch or shard it is scored in. Params are stored as safetensors (``save_params``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

HEADS = ("ridge", "mlp")


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """kind: ``ridge`` or ``mlp``. alphas: ridge penalties tried (leave-one-out). hidden, steps, learning_rate,
  weight_decay, seed: the MLP."""

  kind: str = "ridge"
  alphas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
  hidden: int = 128
  steps: int = 500
  learning_rate: float = 3e-3
  weight_decay: float = 1e-2
  seed: int = 0

  def __post_init__(self):
    if self.kind not in HEADS:
      raise ValueError(f"head kind {self.kind!r}: use one of {HEADS}")
    if not self.alphas or min(self.alphas) <= 0:
      raise ValueError(f"ridge alphas {self.alphas!r} must be a non-empty tuple of positive numbers")
    for name in ("hidden", "steps"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1")


def fit_ridge(x: np.ndarray, y: np.ndarray, cfg: HeadConfig = HeadConfig()) -> tuple[dict[str, np.ndarray], dict]:
  """Ridge regression of ``y [n]`` on ``x [n, d]`` with an intercept; returns (params, {"alpha": chosen})."""
  from sklearn.linear_model import RidgeCV

  model = RidgeCV(alphas=np.asarray(cfg.alphas, np.float64)).fit(np.asarray(x, np.float64), np.asarray(y, np.float64))
  alpha = float(model.alpha_)  # pyright: ignore[reportArgumentType]  (set by fit)
  return ({"w": np.asarray(model.coef_, np.float64), "b": np.asarray(model.intercept_, np.float64)}, {"alpha": alpha})


def fit_mlp(x: np.ndarray, y: np.ndarray, cfg: HeadConfig = HeadConfig()) -> tuple[dict[str, np.ndarray], dict]:
  """A one-hidden-layer ReLU MLP fitted full-batch with AdamW (optax); returns (params, {"train_mse": ...})."""
  import jax
  import jax.numpy as jnp
  import optax

  x = np.asarray(x, np.float32)
  y = np.asarray(y, np.float64)
  mu, sd = float(y.mean()), float(y.std()) or 1.0
  t = jnp.asarray((y - mu) / sd, jnp.float32)
  rng = np.random.default_rng(cfg.seed)  # host-side init: deterministic, no compile of an init graph
  d, h = x.shape[1], cfg.hidden
  params = {
    "w1": jnp.asarray(rng.normal(size=(d, h)) * np.sqrt(2.0 / d), jnp.float32),
    "b1": jnp.zeros((h,), jnp.float32),
    "w2": jnp.asarray(rng.normal(size=(h,)) * np.sqrt(1.0 / h), jnp.float32),
    "b2": jnp.zeros((), jnp.float32),
  }
  opt = optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay)
  xs = jnp.asarray(x)

  def loss(p):
    out = jax.nn.relu(xs @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return jnp.mean((out - t) ** 2)

  def step(carry, _):
    p, s = carry
    value, grads = jax.value_and_grad(loss)(p)
    updates, s = opt.update(grads, s, p)
    return (optax.apply_updates(p, updates), s), value

  (params, _), losses = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=cfg.steps))(params)
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  p["w2"], p["b2"] = p["w2"] * sd, np.asarray(p["b2"] * sd + mu, np.float64)
  return p, {"train_mse_standardised": float(losses[-1])}


def fit(x: np.ndarray, y: np.ndarray, cfg: HeadConfig = HeadConfig()) -> tuple[dict[str, np.ndarray], dict]:
  """The head ``cfg.kind`` fitted to ``y [n]`` from ``x [n, d]``; ValueError naming too few or mismatched rows."""
  x, y = np.asarray(x), np.asarray(y)
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ValueError(f"embeddings {x.shape} and targets {y.shape} do not match: need x [n, d] and y [n]")
  if x.shape[0] < 3:
    raise ValueError(f"{x.shape[0]} training documents: a head needs at least 3")
  return (fit_ridge if cfg.kind == "ridge" else fit_mlp)(x, y, cfg)


def predict(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
  """float64 [n] head outputs for ``x [n, d]`` (ridge or MLP params, told apart by their keys)."""
  x = np.asarray(x, np.float64)
  if "w" in params:
    if x.shape[1:] != params["w"].shape:
      raise ValueError(f"embeddings of dimension {x.shape[1:]} do not fit a head of dimension {params['w'].shape}")
    return (x * params["w"]).sum(axis=1) + np.asarray(params["b"]).item()
  if x.shape[1:] != params["w1"].shape[:1]:
    raise ValueError(f"embeddings of dimension {x.shape[1:]} do not fit a head of dimension {params['w1'].shape[:1]}")
  hidden = np.maximum(_rows_matmul(x, params["w1"]) + params["b1"], 0.0)
  return (hidden * params["w2"]).sum(axis=1) + np.asarray(params["b2"]).item()


def _rows_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
  """``x @ w`` one row at a time: each row's result does not depend on how many rows come with it (BLAS may block
  a matrix product differently by its shape)."""
  out = np.empty((x.shape[0], w.shape[1]), np.float64)
  for i in range(x.shape[0]):
    out[i] = x[i] @ w
  return out


def save_params(path: str | Path, params: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
  from safetensors.numpy import save_file

  save_file({k: np.ascontiguousarray(v, np.float64) for k, v in params.items()}, str(path), metadata=metadata)


def load_params(path: str | Path) -> dict[str, Any]:
  from safetensors.numpy import load_file

  return dict(load_file(str(path)))
