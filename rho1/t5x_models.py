"""t5x model classes for tokensift networks, with the Rho-1 selective loss (DESIGN §6).

Import this module only where t5x is installed (the t5x gin files in ``gin_configs/t5x/`` do); tokensift itself
never imports it. Classes:

- ``DecoderOnlyModel`` / ``EncoderDecoderModel``: t5x's models driving tokensift networks (``models.llama.Llama``,
  ``models.t5.T5``). tokensift layers annotate params with ``nn.with_logical_partitioning``; t5x's train state
  wants plain params plus a ``params_axes`` collection of ``AxisMetadata``, so ``get_initial_variables``
  converts one into the other. Plain cross-entropy: the CLM baselines.
- ``SelectiveDecoderOnlyModel`` / ``SelectiveEncoderDecoderModel``: override ``loss_fn(params, batch,
  dropout_rng) -> (loss, metrics)`` (precedent: t5x ``contrib/moe/models.py``). The batch feature
  ``decoder_ref_losses`` (packed by ``feature_converters.Selective*FeatureConverter``, never part of ``params``)
  gives the reference losses; the top ``slm_ratio`` tokens by excess loss (global over the batch, or per
  sequence) form a stop-gradient mask that is multiplied into ``decoder_loss_weights`` before t5x's loss
  normalization, so ``loss_normalizing_factor='NUM_REAL_TARGET_TOKENS'`` gives Rho-1's mean over the selected
  tokens. One full-vocabulary normalization per step: the selection's per-token CE and the loss (t5x's label
  smoothing and z-loss, ``weighted_cross_entropy``) share it. Metrics: t5x's base metrics over the selected
  tokens (boolean mask) plus ``slm/*``.

- ``PjitPartitioner``: t5x's partitioner over tokensift's rules table (``models/partitioning.py``), with a mesh
  that honours the model-parallel setting on CPU devices too, and steps jitted under the same mesh context as
  the embedded trainer (``partitioning.mesh_rules``); the ``gin_configs/partitioning/`` presets bind it.

Gradient accumulation (``Trainer.num_microbatches``) selects within each microbatch.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

try:
  from clu import metrics as clu_metrics
  from flax import traverse_util
  from flax.core import frozen_dict
  from flax.linen import partitioning as flax_partitioning
  from t5x import adafactor as t5x_adafactor
  from t5x import losses as t5x_losses
  from t5x import metrics as t5x_metrics
  from t5x import models as t5x_models
  from t5x import partitioning as t5x_partitioning
except ImportError as e:  # pragma: no cover - depends on the environment
  raise ImportError(
    f"tokensift.rho1.t5x_models needs t5x (google-research/t5x, installed from its repository; see DESIGN §10): {e}"
  ) from e

import flax.linen as nn
from absl import logging as absl_logging
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from tokensift.rho1 import feature_converters
from tokensift.models import partitioning
from tokensift.rho1.selective_loss import (
  DEFAULT_SLM_RATIO,
  check_scope,
  check_slm_ratio,
  select_tokens,
  token_cross_entropy,
)


def logical_axis_rules(preset: str = "standard"):
  """The rules table of ``models/partitioning.py`` (``preset``: 'standard' or 'fsdp'), the one tokensift's own
  partitioning reads, followed by t5x's standard rules for names tokensift layers do not use (t5x's own layers);
  flax takes the first rule per name, so tokensift's table decides."""
  ours = partitioning.get_rules(preset)
  names = {name for name, _ in ours}
  return tuple(ours) + tuple(r for r in t5x_partitioning.standard_logical_axis_rules() if r[0] not in names)


class _PjittedFnWithMesh(t5x_partitioning.PjittedFnWithContext):
  """A partitioned t5x step called and lowered under ``partitioning.mesh_rules`` (the mesh context tokensift
  uses everywhere) instead of t5x's legacy ``with Mesh(...)``."""

  def __call__(self, *args, **kwargs):
    with partitioning.mesh_rules(self._mesh, self._logical_axis_rules):
      return self._pjitted_fn(*args, **kwargs)

  def lower(self, *args, **kwargs):
    with partitioning.mesh_rules(self._mesh, self._logical_axis_rules):
      return self._pjitted_fn.lower(*args, **kwargs)


class PjitPartitioner(t5x_partitioning.PjitPartitioner):
  """t5x's ``PjitPartitioner`` with tokensift's rules table (``rules`` preset) and a mesh that honours
  ``num_partitions`` / ``model_parallel_submesh`` on CPU devices too.

  On CPU, t5x's ``default_mesh`` puts every device on 'model' whatever ``num_partitions`` says (8 fake devices
  give a (data 1, model 8) mesh and an indivisible-shard error on a 4-head model); here the CPU mesh is
  ``partitioning.make_mesh`` with ``model = num_partitions`` (or the product of ``model_parallel_submesh``) and
  ``data`` the rest. On TPU and GPU the mesh is t5x's (``model_parallel_submesh`` on TPU slices, NVLink-aware
  ``num_partitions`` on GPU nodes, ``ici_mesh_shape``/``dcn_mesh_shape`` for multi-slice).
  """

  def __init__(self, num_partitions=None, model_parallel_submesh=None, rules: str = "standard", **kwargs):
    kwargs.setdefault("logical_axis_rules", logical_axis_rules(rules))
    if not num_partitions and not model_parallel_submesh:
      num_partitions = 1  # data parallel unless a preset says otherwise
    super().__init__(num_partitions=num_partitions, model_parallel_submesh=model_parallel_submesh, **kwargs)

  @property
  def mesh(self):
    if jax.devices(self._backend)[-1].platform != "cpu" or self._ici_mesh_shape is not None:
      return super().mesh
    if "_tokensift_mesh" not in vars(self):
      model = (
        int(np.prod(self._model_parallel_submesh)) if self._model_parallel_submesh else (self._num_partitions or 1)
      )
      mesh = partitioning.make_mesh(partitioning.MeshConfig(model=model), jax.devices(self._backend))
      absl_logging.info("tokensift PjitPartitioner CPU mesh: %s", dict(mesh.shape))
      vars(self)["_tokensift_mesh"] = mesh
    return vars(self)["_tokensift_mesh"]

  def partition(self, fn, in_axis_resources, out_axis_resources, static_argnums=(), donate_argnums=()):
    """t5x's ``partition`` on ``jax.jit`` under the one mesh context (``partitioning.mesh_rules``), in place of
    the deprecated ``jax.experimental.pjit.pjit`` under the legacy ``with Mesh(...)``: t5x launches and the
    embedded trainer then trace tokensift layers under the same context. (pjit keeps flax's activation
    constraints only under the legacy context, plain jit only under ``jax.set_mesh``; mixing them drops the
    constraints, which ``tests/test_partitioning.py`` checks in the compiled program.) PartitionSpecs become
    NamedShardings on this mesh (jit needs no context mesh for those), and ``None`` a replicated one, as pjit
    read it (t5x's infer steps rely on replicated outputs).
    """

    def named(tree):
      def one(s):
        return jax.sharding.NamedSharding(self.mesh, PartitionSpec() if s is None else s)

      return jax.tree.map(
        lambda s: one(s) if s is None or isinstance(s, PartitionSpec) else s,
        tree,
        is_leaf=lambda s: isinstance(s, PartitionSpec) or s is None,
      )

    jitted = jax.jit(
      fn,
      in_shardings=named(in_axis_resources),
      out_shardings=named(out_axis_resources),
      static_argnums=static_argnums,
      donate_argnums=donate_argnums,
    )
    return _PjittedFnWithMesh(jitted, self.mesh, self._logical_axis_rules)


def logical_factor_rules():
  """t5x Adafactor factorization rules plus tokensift's names (``head_dim`` and ``kv_heads`` as t5x's ``kv``)."""
  rules = dict(t5x_adafactor.standard_logical_factor_rules())
  rules.update(head_dim=t5x_adafactor.FactorDim.COLUMN, kv_heads=t5x_adafactor.FactorDim.COLUMN)
  return frozen_dict.freeze(rules)


def split_params_axes(variables: Mapping[str, Any]) -> frozen_dict.FrozenDict:
  """``{'params': boxed}`` -> ``{'params': plain, 'params_axes': {..., 'name_axes': AxisMetadata}}``.

  Params without logical names get ``(None,) * ndim`` (replicated, unfactored).
  """
  variables = frozen_dict.unfreeze(variables)  # pyright: ignore[reportArgumentType]  (any mapping)
  boxed = variables.pop("params")
  plain = traverse_util.flatten_dict(nn.unbox(boxed))
  boxes = traverse_util.flatten_dict(boxed, is_leaf=lambda k, v: isinstance(v, nn.LogicallyPartitioned))
  axes = {}
  for path, value in plain.items():
    box = boxes.get(path)
    names = tuple(box.names) if isinstance(box, nn.LogicallyPartitioned) else (None,) * value.ndim  # pyright: ignore[reportAttributeAccessIssue]  (a leaf: an array)
    axes[(*path[:-1], path[-1] + "_axes")] = flax_partitioning.AxisMetadata(names=names)
  variables["params"] = traverse_util.unflatten_dict(plain)
  variables["params_axes"] = traverse_util.unflatten_dict(axes)
  return frozen_dict.freeze(variables)


class DecoderOnlyModel(t5x_models.DecoderOnlyModel):
  """t5x ``DecoderOnlyModel`` over a tokensift decoder (logical boxes -> ``params_axes``)."""

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    return split_params_axes(super().get_initial_variables(rng, input_shapes, input_types))


class EncoderDecoderModel(t5x_models.EncoderDecoderModel):
  """t5x ``EncoderDecoderModel`` over a tokensift encoder-decoder (logical boxes -> ``params_axes``)."""

  def get_initial_variables(self, rng, input_shapes, input_types=None):
    return split_params_axes(super().get_initial_variables(rng, input_shapes, input_types))


def weighted_cross_entropy(
  logits, token_ce, log_z, weights, label_smoothing: float, z_loss: float, loss_normalizing_factor
) -> tuple[jax.Array, jax.Array]:
  """t5x's ``compute_weighted_cross_entropy`` (same label smoothing, z-loss and normalization) from an already
  computed per-token ``token_ce = log_z - logits[target]`` and ``log_z`` (float32 [batch, length]), so a step
  normalizes the vocabulary once instead of twice.

  With label smoothing, ``-sum(soft_targets * log_softmax) = log_z - (on - off) * logits[target] -
  off * sum(logits)``: one reduction over the vocabulary, no second softmax. Returns the scalar
  ``(loss, z_loss)`` (``loss`` includes ``z_loss``, as in t5x).
  """
  vocab = logits.shape[-1]
  loss = token_ce
  if label_smoothing:
    on = 1.0 - label_smoothing
    off = label_smoothing / (vocab - 1) if vocab > 1 else label_smoothing
    target_logit = log_z - token_ce
    loss = log_z - (on - off) * target_logit - off * jnp.sum(logits.astype(jnp.float32), axis=-1)
    loss = loss + (on * jnp.log(on) + (vocab - 1) * off * jnp.log(off + 1e-20))  # t5x's normalizing constant
  token_z = z_loss * jnp.square(log_z)
  loss, token_z = (loss + token_z) * weights, token_z * weights
  if loss_normalizing_factor is not None:
    loss, token_z = loss / loss_normalizing_factor, token_z / loss_normalizing_factor
  return jnp.sum(loss), jnp.sum(token_z)


def _average(total, count) -> clu_metrics.Average:
  return clu_metrics.Average(total=jnp.asarray(total, jnp.float32), count=jnp.asarray(count, jnp.float32))  # pyright: ignore[reportCallIssue]  (a flax struct dataclass)


class _SelectiveLoss:
  """The SLM ``loss_fn`` shared by the decoder-only and encoder-decoder classes."""

  slm_ratio: float
  selection_scope: str
  # Declared for the type checker only (no value: the t5x model class this is mixed into provides them).
  _loss_normalizing_factor: Any
  _label_smoothing: float
  _z_loss: float
  _compute_logits: Callable[..., jax.Array]
  _compute_metrics: Callable[..., Any]

  def _init_selection(self, slm_ratio: float, selection_scope: str) -> None:
    self.slm_ratio = check_slm_ratio(slm_ratio)
    self.selection_scope = check_scope(selection_scope, "selection_scope")

  def loss_fn(self, params, batch: Mapping[str, jax.Array], dropout_rng: Optional[jax.Array]):
    if feature_converters.MODEL_REF_FEATURE not in batch:
      raise ValueError(
        f"{type(self).__name__} needs the batch feature {feature_converters.MODEL_REF_FEATURE!r}: "
        "train on a reference-loss task (register_reference_loss_task) with this model's "
        "feature converter"
      )
    logits = self._compute_logits(params, batch, dropout_rng)
    targets = batch["decoder_target_tokens"]
    weights = batch.get("decoder_loss_weights")
    weights = (targets > 0) if weights is None else weights
    weights = weights.astype(jnp.float32)
    # The step's one full-vocabulary normalization: per-token CE and log-partition, shared by the selection
    # (stop-gradient) and the training loss.
    token_ce, log_z = token_cross_entropy(logits, targets)
    ce = jax.lax.stop_gradient(token_ce)
    excess = ce - batch[feature_converters.MODEL_REF_FEATURE].astype(jnp.float32)
    mask = select_tokens(excess, weights, self.slm_ratio, self.selection_scope)
    selected_batch = dict(batch, decoder_loss_weights=weights * mask)
    loss_normalizing_factor, loss_weights = t5x_losses.get_loss_normalizing_factor_and_weights(
      self._loss_normalizing_factor, selected_batch
    )
    assert loss_weights is not None  # the batch carries decoder_loss_weights
    loss, z_loss = weighted_cross_entropy(
      logits, token_ce, log_z, loss_weights, self._label_smoothing, self._z_loss, loss_normalizing_factor
    )
    segment_ids = {k[: -len("_segment_ids")]: v for k, v in batch.items() if k.endswith("_segment_ids")}
    if not segment_ids:
      segment_ids = {k: v != 0 for k, v in batch.items() if k in ("encoder_input_tokens", "decoder_target_tokens")}
    metrics = self._compute_metrics(
      logits=logits, targets=targets, mask=loss_weights > 0, loss=loss, z_loss=z_loss, segment_ids=segment_ids
    )
    valid = weights > 0
    unselected = valid & ~mask
    metrics.update(
      {
        "slm/selected_fraction": _average(jnp.sum(mask), jnp.sum(valid)),
        "slm/excess_selected": _average(jnp.sum(jnp.where(mask, excess, 0.0)), jnp.sum(mask)),
        "slm/excess_unselected": _average(jnp.sum(jnp.where(unselected, excess, 0.0)), jnp.sum(unselected)),
        "slm/ce_unmasked": _average(jnp.sum(ce * weights), jnp.sum(weights)),
        "slm/ce_selected": _average(jnp.sum(jnp.where(mask, ce, 0.0) * weights), jnp.sum(weights * mask)),
        "slm/selected_tokens": t5x_metrics.AveragePerStep(total=jnp.sum(mask).astype(jnp.float32)),  # pyright: ignore[reportCallIssue]  (a flax struct dataclass)
      }
    )
    return loss, metrics


class SelectiveDecoderOnlyModel(_SelectiveLoss, DecoderOnlyModel):
  """Decoder-only model trained with Rho-1 SLM on ``decoder_ref_losses``."""

  FEATURE_CONVERTER_CLS = feature_converters.SelectiveLMFeatureConverter

  def __init__(self, *args, slm_ratio: float = DEFAULT_SLM_RATIO, selection_scope: str = "batch", **kwargs):
    self._init_selection(slm_ratio, selection_scope)
    kwargs.setdefault("feature_converter_cls", feature_converters.SelectiveLMFeatureConverter)
    super().__init__(*args, **kwargs)


class SelectiveEncoderDecoderModel(_SelectiveLoss, EncoderDecoderModel):
  """Encoder-decoder model trained with Rho-1 SLM on the decoder targets' ``decoder_ref_losses``."""

  FEATURE_CONVERTER_CLS = feature_converters.SelectiveEncDecFeatureConverter

  def __init__(self, *args, slm_ratio: float = DEFAULT_SLM_RATIO, selection_scope: str = "batch", **kwargs):
    self._init_selection(slm_ratio, selection_scope)
    kwargs.setdefault("feature_converter_cls", feature_converters.SelectiveEncDecFeatureConverter)
    super().__init__(*args, **kwargs)
