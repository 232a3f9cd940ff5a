"""Train and eval steps of the embedded trainer: the network's forward pass on a seqio model batch, the SLM
or CLM loss, optax update; jitted with the shardings of the logical-axis rules table (models/partitioning).

Batches are t5x model features: decoder-only ``decoder_input_tokens``, ``decoder_target_tokens``,
``decoder_loss_weights`` (+ ``decoder_segment_ids``, ``decoder_positions`` when packed, + ``decoder_ref_losses``
for SLM); encoder-decoder adds ``encoder_input_tokens`` (+ ``encoder_segment_ids``, ``encoder_positions``).
All are ``[batch, length]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tokensift.models import partitioning
from tokensift.rho1.selective_loss import selective_cross_entropy, weighted_cross_entropy
from tokensift.trainer import core
from tokensift.trainer.config import LossConfig

State = dict[str, Any]  # {"step": int32[], "params": tree, "opt_state": tree}
INIT_COMPILER_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 0}  # init runs once: compile it fast


def is_encoder_decoder(network: nn.Module) -> bool:
  """t5x EncoderDecoder networks have ``encode``/``decode`` methods; decoder-only networks do not."""
  return callable(getattr(type(network), "encode", None))


def dummy_batch(network: nn.Module, batch_size: int, lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
  """Zero-free int32 inputs of the model-feature shapes, for init."""
  length = lengths["targets"]
  out = {
    "decoder_input_tokens": np.ones((batch_size, length), np.int32),
    "decoder_target_tokens": np.ones((batch_size, length), np.int32),
  }
  if is_encoder_decoder(network):
    out["encoder_input_tokens"] = np.ones((batch_size, lengths["inputs"]), np.int32)
  return out


def compute_logits(
  network: nn.Module,
  params: Any,
  batch: Mapping[str, jax.Array],
  *,
  train: bool = False,
  dropout_rng: jax.Array | None = None,
) -> jax.Array:
  """Forward pass with the t5x network signature -> float logits [batch, length, vocab]."""
  rngs = {"dropout": dropout_rng} if (train and dropout_rng is not None) else None
  common: dict[str, Any] = dict(
    decoder_segment_ids=batch.get("decoder_segment_ids"),
    decoder_positions=batch.get("decoder_positions"),
    enable_dropout=train,
  )
  if is_encoder_decoder(network):
    logits = network.apply(
      {"params": params},
      batch["encoder_input_tokens"],
      batch["decoder_input_tokens"],
      batch["decoder_target_tokens"],
      encoder_segment_ids=batch.get("encoder_segment_ids"),
      encoder_positions=batch.get("encoder_positions"),
      rngs=rngs,
      **common,
    )
  else:
    logits = network.apply(
      {"params": params}, batch["decoder_input_tokens"], batch["decoder_target_tokens"], rngs=rngs, **common
    )
  return logits  # pyright: ignore[reportReturnType]  (apply without mutable: the output only)


def loss_from_logits(
  logits: jax.Array, batch: Mapping[str, jax.Array], loss: LossConfig
) -> tuple[jax.Array, dict[str, jax.Array]]:
  targets = batch["decoder_target_tokens"]
  weights = batch.get("decoder_loss_weights")
  weights = (targets > 0).astype(jnp.float32) if weights is None else weights
  if loss.kind == "slm":
    if "decoder_ref_losses" not in batch:
      raise ValueError(
        "LossConfig.kind='slm' needs reference losses: train on a task registered with "
        "register_reference_loss_task (batch feature 'decoder_ref_losses')"
      )
    return selective_cross_entropy(
      logits, targets, weights, batch["decoder_ref_losses"], loss.slm_ratio, loss.scope, loss.z_loss
    )
  return weighted_cross_entropy(logits, targets, weights, loss.z_loss)


@dataclasses.dataclass
class Steps:
  """Jitted ``init``, ``train_step`` and ``eval_step`` for one network, loss, optimizer and mesh."""

  network: nn.Module
  loss: LossConfig
  optimizer: optax.GradientTransformation
  schedule: optax.Schedule
  mesh: Mesh
  rules: str = "standard"
  seed: int = 0

  def __post_init__(self):
    self._rules = partitioning.get_rules(self.rules)
    self.state_shardings: Any = None
    self._train = None
    self._eval = None

  # ----------------------------------------------------------------------------------------------- init
  def _replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec())

  def init_state(self, batch_size: int, lengths: Mapping[str, int]) -> State:
    """Fresh params (sharded per the rules), optimizer state and step 0; records the state shardings."""
    dummy = dummy_batch(self.network, batch_size, lengths)

    def init(rng):
      if is_encoder_decoder(self.network):
        variables = self.network.init(
          rng, dummy["encoder_input_tokens"], dummy["decoder_input_tokens"], dummy["decoder_target_tokens"]
        )
      else:
        variables = self.network.init(rng, dummy["decoder_input_tokens"], dummy["decoder_target_tokens"])
      return variables["params"]

    rng = jax.random.PRNGKey(self.seed)
    with nn.logical_axis_rules(self._rules):
      abstract = jax.eval_shape(init, rng)
    # Outside the mesh context: unboxing abstract params under an active mesh would apply constraints.
    param_shardings = partitioning.logical_shardings(abstract, self.mesh, self._rules)
    with partitioning.mesh_rules(self.mesh, self._rules):
      init_fn = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=param_shardings)
      params = init_fn.lower(rng).compile(INIT_COMPILER_OPTIONS)(rng)
      opt_state = jax.jit(self.optimizer.init)(params)
    opt_state = jax.tree.map(
      lambda x: jax.device_put(x, x.sharding if isinstance(x.sharding, NamedSharding) else self._replicated()),
      opt_state,
    )
    state = {
      "step": jax.device_put(jnp.zeros((), jnp.int32), self._replicated()),
      "params": params,
      "opt_state": opt_state,
    }
    self.state_shardings = jax.tree.map(lambda x: x.sharding, state)
    return state

  def abstract_state(self, state: State) -> Any:
    """ShapeDtypeStructs with shardings (the restore target for orbax)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)

  # ---------------------------------------------------------------------------------------------- steps
  def _loss_fn(self, params, batch, rng):
    with nn.logical_axis_rules(self._rules):
      logits = compute_logits(self.network, params, batch, train=True, dropout_rng=rng)
    loss, metrics = loss_from_logits(logits, batch, self.loss)
    return loss, dict(metrics, tokens=jnp.asarray(batch["decoder_target_tokens"].size, jnp.float32))

  def _train_step(self, state: State, batch: Mapping[str, jax.Array]) -> tuple[State, Mapping[str, jax.Array]]:
    """The core's optax step (``core.make_step``) on this network's loss; dropout rng from ``seed + 1``."""
    return core.make_step(self._loss_fn, self.optimizer, self.schedule, rng_seed=self.seed + 1)(state, batch)

  def _eval_step(self, params, batch):
    with nn.logical_axis_rules(self._rules):
      logits = compute_logits(self.network, params, batch, train=False)
    loss, metrics = loss_from_logits(logits, batch, self.loss)
    weights = batch["decoder_loss_weights"].astype(jnp.float32)
    return dict(metrics, loss=loss, weight_sum=jnp.sum(weights))

  def batch_shardings(self, batch: Mapping[str, np.ndarray | jax.Array]) -> dict[str, NamedSharding]:
    return {k: partitioning.batch_sharding(self.mesh, np.ndim(v)) for k, v in batch.items()}

  def put_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Host batch -> device arrays laid out over the 'data' axis (float32 losses, int32 tokens)."""
    shardings = self.batch_shardings(batch)
    return {k: jax.device_put(np.asarray(v), shardings[k]) for k, v in batch.items()}

  def _train_jit(self, batch: Mapping[str, Any]):
    if self._train is None:
      if self.state_shardings is None:
        raise RuntimeError("call init_state (or restore) before train_step")
      self._train = jax.jit(
        self._train_step,
        in_shardings=(self.state_shardings, self.batch_shardings(batch)),
        out_shardings=(self.state_shardings, self._replicated()),
        donate_argnums=(0,),
      )
    return self._train

  def train_step(self, state: State, batch: Mapping[str, jax.Array]) -> tuple[State, dict[str, jax.Array]]:
    """One optimizer step; ``state`` is donated (use the returned one)."""
    train = self._train_jit(batch)
    with partitioning.mesh_rules(self.mesh, self._rules):
      return train(state, batch)

  def train_step_cost(self, state: State, batch: Mapping[str, jax.Array]) -> dict[str, float]:
    """XLA's cost model of the compiled train step (``flops``, ``bytes accessed``, ...): a noise-free figure
    for comparing step variants on a busy machine. Nothing runs; ``state`` stays valid."""
    train = self._train_jit(batch)
    with partitioning.mesh_rules(self.mesh, self._rules):
      cost = train.lower(state, batch).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {k: float(v) for k, v in (cost or {}).items() if isinstance(v, (int, float))}

  def eval_step(self, params: Any, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    if self._eval is None:
      self._eval = jax.jit(
        self._eval_step,
        in_shardings=(self.state_shardings["params"], self.batch_shardings(batch)),
        out_shardings=self._replicated(),
      )
    with partitioning.mesh_rules(self.mesh, self._rules):
      return self._eval(params, batch)
