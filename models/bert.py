"""BERT encoder (post-LN) in Flax linen, and mean-pooled L2-normalised sentence embeddings.

Matches HF ``BertModel``'s last hidden state (absolute position + token type embeddings, LayerNorm after each
residual, exact erf GELU) and sentence-transformers' ``all-MiniLM-L6-v2`` pipeline (mean pooling over the
attention mask, then L2 normalisation).

Parameter tree::

  embeddings/{word_embeddings [vocab, embed], position_embeddings [positions, embed],
              token_type_embeddings [token_types, embed], layer_norm/{scale, bias}}
  layers_{i}/attention/{query,key,value}_kernel [embed, heads, head_dim], {query,key,value}_bias [heads, head_dim]
  layers_{i}/attention/out_kernel [heads, head_dim, embed], out_bias [embed]
  layers_{i}/attention_norm/{scale, bias}
  layers_{i}/mlp/wi_kernel [embed, mlp], wi_bias [mlp], wo_kernel [mlp, embed], wo_bias [embed]
  layers_{i}/mlp_norm/{scale, bias}
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
from flax.linen import spmd  # with_logical_constraint and logical_to_mesh_axes: flax.linen does not re-export them
import jax
import jax.numpy as jnp

_ACTIVATIONS = {
  "gelu": lambda x: jax.nn.gelu(x, approximate=False),
  "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
  "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
  "relu": jax.nn.relu,
  "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyperparameters of a BERT encoder (HF names; all-MiniLM-L6-v2 defaults)."""

  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"
  pad_token_id: int = 0
  dropout_rate: float = 0.0
  dtype: str = "float32"
  param_dtype: str = "float32"

  def __post_init__(self):
    if self.hidden_act not in _ACTIVATIONS:
      raise ValueError(f"unsupported hidden_act {self.hidden_act!r}; known: {sorted(_ACTIVATIONS)}")
    if self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"BertConfig.{name}={getattr(self, name)!r}; use float32, bfloat16 or float16")

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads


def _param(module: nn.Module, name: str, init, shape, axes) -> jax.Array:
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.dtype(module.config.param_dtype))  # pyright: ignore[reportReturnType]  (param unboxes the LogicallyPartitioned)


_KERNEL_INIT = nn.initializers.normal(0.02)  # HF initializer_range


class LayerNorm(nn.Module):
  """Standard LayerNorm with scale and bias over the last axis; statistics in float32."""

  config: BertConfig

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    scale = _param(self, "scale", nn.initializers.ones, (d,), ("embed",))
    bias = _param(self, "bias", nn.initializers.zeros, (d,), ("embed",))
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.config.layer_norm_eps) * scale + bias
    return y.astype(jnp.dtype(self.config.dtype))


class SelfAttention(nn.Module):
  """Scaled dot-product self-attention with biases: ``x: [b, l, embed]``, ``key_mask: [b, l]`` -> ``[b, l, embed]``."""

  config: BertConfig

  @nn.compact
  def __call__(self, x, key_mask, deterministic: bool = True):
    cfg = self.config
    dt = jnp.dtype(cfg.dtype)
    d, h, hd = cfg.hidden_size, cfg.num_heads, cfg.head_dim
    axes = ("batch", "length", "heads", "head_dim")

    def project(name):
      kernel = _param(self, f"{name}_kernel", _KERNEL_INIT, (d, h, hd), ("embed", "heads", "head_dim"))
      bias = _param(self, f"{name}_bias", nn.initializers.zeros, (h, hd), ("heads", "head_dim"))
      return spmd.with_logical_constraint(
        jnp.einsum("bld,dhk->blhk", x.astype(dt), kernel.astype(dt)) + bias.astype(dt), axes
      )

    q, k, v = project("query"), project("key"), project("value")
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) / math.sqrt(hd)
    scores = jnp.where(key_mask[:, None, None, :] > 0, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1).astype(dt)
    weights = nn.Dropout(cfg.dropout_rate)(weights, deterministic=deterministic)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    wo = _param(self, "out_kernel", _KERNEL_INIT, (h, hd, d), ("heads", "head_dim", "embed"))
    bo = _param(self, "out_bias", nn.initializers.zeros, (d,), ("embed",))
    out = jnp.einsum("bqhd,hde->bqe", out, wo.astype(dt)) + bo.astype(dt)
    return spmd.with_logical_constraint(out, ("batch", "length", "embed"))


class Mlp(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    dt = jnp.dtype(cfg.dtype)
    wi = _param(self, "wi_kernel", _KERNEL_INIT, (cfg.hidden_size, cfg.intermediate_size), ("embed", "mlp"))
    bi = _param(self, "wi_bias", nn.initializers.zeros, (cfg.intermediate_size,), ("mlp",))
    y = _ACTIVATIONS[cfg.hidden_act](jnp.einsum("bld,df->blf", x.astype(dt), wi.astype(dt)) + bi.astype(dt))
    y = spmd.with_logical_constraint(y, ("batch", "length", "mlp"))
    wo = _param(self, "wo_kernel", _KERNEL_INIT, (cfg.intermediate_size, cfg.hidden_size), ("mlp", "embed"))
    bo = _param(self, "wo_bias", nn.initializers.zeros, (cfg.hidden_size,), ("embed",))
    return jnp.einsum("blf,fd->bld", y, wo.astype(dt)) + bo.astype(dt)


class Layer(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x, key_mask, deterministic: bool = True):
    drop = nn.Dropout(self.config.dropout_rate)
    x = LayerNorm(self.config, name="attention_norm")(
      x + drop(SelfAttention(self.config, name="attention")(x, key_mask, deterministic), deterministic)
    )
    x = LayerNorm(self.config, name="mlp_norm")(x + drop(Mlp(self.config, name="mlp")(x), deterministic))
    return spmd.with_logical_constraint(x, ("batch", "length", "embed"))


class Embeddings(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, input_ids, token_type_ids):
    cfg = self.config
    words = _param(self, "word_embeddings", _KERNEL_INIT, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"))
    positions = _param(
      self, "position_embeddings", _KERNEL_INIT, (cfg.max_position_embeddings, cfg.hidden_size), (None, "embed")
    )
    types = _param(self, "token_type_embeddings", _KERNEL_INIT, (cfg.type_vocab_size, cfg.hidden_size), (None, "embed"))
    length = input_ids.shape[1]
    if length > cfg.max_position_embeddings:
      raise ValueError(f"input length {length} exceeds max_position_embeddings {cfg.max_position_embeddings}")
    x = (
      jnp.take(words, input_ids, axis=0) + positions[None, :length] + jnp.take(types, token_type_ids, axis=0)
    ).astype(jnp.float32)
    return LayerNorm(cfg, name="layer_norm")(x)


class Bert(nn.Module):
  """BERT encoder: ``__call__(input_ids: int[b, l], attention_mask: [b, l], token_type_ids=None)`` ->
  last hidden states ``[b, l, hidden]`` (compute dtype)."""

  config: BertConfig

  @nn.compact
  def __call__(self, input_ids, attention_mask, token_type_ids=None, enable_dropout: bool = False):
    cfg = self.config
    if input_ids.ndim != 2:
      raise ValueError(f"input_ids must be [batch, length]; got shape {input_ids.shape}")
    input_ids = input_ids.astype(jnp.int32)
    token_type_ids = jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids.astype(jnp.int32)
    deterministic = not enable_dropout
    x = Embeddings(cfg, name="embeddings")(input_ids, token_type_ids)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    x = spmd.with_logical_constraint(x, ("batch", "length", "embed"))
    for i in range(cfg.num_layers):
      x = Layer(cfg, name=f"layers_{i}")(x, attention_mask, deterministic)
    return x


def mean_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``hidden: [b, l, d]`` over positions where ``mask: [b, l]`` is nonzero -> ``[b, d]`` float32."""
  m = mask.astype(jnp.float32)[..., None]
  return (hidden.astype(jnp.float32) * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1e-9)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows of ``x: [b, d]`` scaled to unit L2 norm (as ``torch.nn.functional.normalize``)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def sentence_embeddings(module: Bert, params: Any, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
  """Sentence-transformers embeddings: ``input_ids, attention_mask: [b, l]`` -> unit vectors ``[b, hidden]``
  (float32): the encoder's last hidden states mean-pooled over the attention mask, then L2-normalised."""
  hidden = module.apply({"params": params}, input_ids, attention_mask)
  return l2_normalize(mean_pool(hidden, attention_mask))  # pyright: ignore[reportArgumentType]  (apply without mutable: the output only)
