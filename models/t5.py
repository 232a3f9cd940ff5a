"""T5 v1.1 / FLAN-T5 encoder-decoder in Flax linen, with t5x's EncoderDecoder network signature.

Architecture (as HF ``T5ForConditionalGeneration`` and t5x ``examples/t5/network.py`` define it): RMS layer
norm without bias (pre-norm), attention without 1/sqrt(d) scaling, relative position buckets (bidirectional in
the encoder, causal in the decoder) with one bias table per stack shared by all its layers, gated-GELU
(tanh-approximated GELU, HF's ``gelu_new``) MLP for v1.1 / FLAN-T5 or ReLU for T5 v1.0, untied ``logits_dense``
(or logits through the embedding scaled by ``d_model**-0.5`` when ``tie_word_embeddings``; HF transformers>=5
configs carry the scaling separately as ``scale_decoder_outputs``).

Parameter tree (names follow t5x so T5X checkpoints map one to one; attention kernels are kept
``[embed, heads, head_dim]`` / ``[heads, head_dim, embed]`` instead of t5x's flattened 2-D storage)::

  token_embedder/embedding                         [vocab, embed]
  encoder/relpos_bias/rel_embedding                [heads, relpos_buckets]
  encoder/layers_{i}/pre_attention_layer_norm/scale               [embed]
  encoder/layers_{i}/attention/{query,key,value}/kernel           [embed, heads, head_dim]
  encoder/layers_{i}/attention/out/kernel                         [heads, head_dim, embed]
  encoder/layers_{i}/pre_mlp_layer_norm/scale, mlp/{wi_0,wi_1 | wi}/kernel [embed, mlp], mlp/wo/kernel
  encoder/encoder_norm/scale
  decoder/relpos_bias/rel_embedding
  decoder/layers_{i}/pre_self_attention_layer_norm, self_attention, pre_cross_attention_layer_norm,
                     encoder_decoder_attention, pre_mlp_layer_norm, mlp
  decoder/decoder_norm/scale, decoder/logits_dense/kernel   [embed, vocab]  (absent when tied)

Autoregressive decoding uses t5x's ``cache`` collection layout: each decoder self-attention holds
``cached_key``/``cached_value`` ``[batch, heads, head_dim, max_length]`` and ``cache_index`` (int32 scalar).
A first ``decode=True`` call with full-length ``[batch, max_length]`` decoder inputs creates the cache
(``mutable=['cache']``); later calls feed ``[batch, 1]`` tokens with ``max_decode_length`` set.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
from flax.linen import spmd  # with_logical_constraint and logical_to_mesh_axes: flax.linen does not re-export them
import jax
import jax.numpy as jnp
import numpy as np

from tokensift.models.bert import l2_normalize, mean_pool

_NEG_INF = -1e10  # additive mask value (t5x); exp() underflows to exactly 0 in float32

_ACTIVATIONS = {
  "relu": jax.nn.relu,
  "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
  "gelu": lambda x: jax.nn.gelu(x, approximate=False),
  "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyperparameters of a T5 encoder-decoder (HF names; FLAN-T5-Small defaults)."""

  vocab_size: int = 32128
  d_model: int = 512
  num_heads: int = 6
  head_dim: int = 64  # HF d_kv
  d_ff: int = 1024
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  feed_forward_proj: str = "gated-gelu"  # "relu" (T5 v1.0), "gated-gelu" (v1.1/FLAN), "gated-silu", "gelu"
  tie_word_embeddings: bool = False  # logits through the token embedding instead of logits_dense
  scale_decoder_outputs: bool | None = None  # multiply by d_model**-0.5 before the logits; None: = tied
  dropout_rate: float = 0.0
  dtype: str = "float32"  # activation / compute dtype ("bfloat16" for bf16 compute)
  param_dtype: str = "float32"

  def __post_init__(self):
    act = self.feed_forward_proj.split("-")[-1]
    if (
      self.feed_forward_proj.count("-") > 1
      or act not in ("relu", "gelu", "silu")
      or ("-" in self.feed_forward_proj and not self.feed_forward_proj.startswith("gated-"))
    ):
      raise ValueError(
        f"unsupported feed_forward_proj {self.feed_forward_proj!r}; "
        "use relu, gelu, silu, gated-relu, gated-gelu or gated-silu"
      )
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"T5Config.{name}={getattr(self, name)!r}; use float32, bfloat16 or float16")

  @property
  def scales_decoder_outputs(self) -> bool:
    return self.tie_word_embeddings if self.scale_decoder_outputs is None else self.scale_decoder_outputs

  @property
  def is_gated(self) -> bool:
    return self.feed_forward_proj.startswith("gated-")

  @property
  def activation(self) -> str:
    # HF maps "gated-gelu" to the tanh approximation (gelu_new); plain "gelu" is the exact one.
    if self.feed_forward_proj == "gated-gelu":
      return "gelu_new"
    return self.feed_forward_proj.split("-")[-1]

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def params_dtype(self):
    return jnp.dtype(self.param_dtype)


def relative_position_bucket(relative_position, *, bidirectional: bool, num_buckets: int, max_distance: int):
  """Bucket of ``memory_position - query_position`` (int, any shape) -> int32 in ``[0, num_buckets)``.

  Small distances get one bucket each, larger ones share logarithmically wider buckets; in a causal stack
  (``bidirectional=False``) attending forward is impossible and all positive offsets fall in bucket 0.
  Follows HF's float32 arithmetic so bucket boundaries agree with HF checkpoints. A NumPy input is computed
  with NumPy (the networks do that at trace time, so buckets never depend on the accelerator's ``log``).
  """
  xp = np if isinstance(relative_position, np.ndarray) else jnp
  relative_position = relative_position.astype(xp.int32)
  buckets = xp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets = buckets + (relative_position > 0).astype(xp.int32) * num_buckets
    distance = xp.abs(relative_position)
  else:
    distance = -xp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  safe = xp.maximum(distance, 1).astype(xp.float32)  # log(0) is masked by is_small anyway
  scale = xp.float32(num_buckets - max_exact) if xp is np else num_buckets - max_exact
  large = max_exact + (
    xp.log(safe / xp.float32(max_exact)) / xp.float32(math.log(max_distance / max_exact)) * scale
  ).astype(xp.int32)
  large = xp.minimum(large, num_buckets - 1)
  return (buckets + xp.where(is_small, distance, large)).astype(xp.int32)


def _param(module: nn.Module, name: str, init, shape, axes) -> jax.Array:
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, module.config.params_dtype)  # pyright: ignore[reportReturnType]  (param unboxes the LogicallyPartitioned)


class Kernel(nn.Module):
  """Holds one ``kernel`` param (t5x's ``<name>/kernel`` layout) and returns it in the compute dtype."""

  config: Any
  shape: tuple[int, ...]
  axes: tuple[str, ...]
  init: Any

  @nn.compact
  def __call__(self):
    return _param(self, "kernel", self.init, self.shape, self.axes).astype(self.config.compute_dtype)


class RMSNorm(nn.Module):
  """T5 layer norm: ``x / sqrt(mean(x^2) + eps) * scale``, no mean subtraction, no bias; stats in float32."""

  config: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = _param(self, "scale", nn.initializers.ones, (x.shape[-1],), ("embed",))
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.config.layer_norm_epsilon)
    return y.astype(self.config.compute_dtype) * scale.astype(self.config.compute_dtype)


class RelativePositionBias(nn.Module):
  """Relative position attention bias ``[1, heads, q_len, k_len]`` (float32) for positions ``arange(q_len)``
  against ``arange(k_len)``, from a ``[heads, buckets]`` table (buckets computed at trace time)."""

  config: T5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, q_len: int, k_len: int) -> jax.Array:
    cfg = self.config
    table = _param(
      self,
      "rel_embedding",
      nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
      (cfg.num_heads, cfg.relative_attention_num_buckets),
      ("heads", "relpos_buckets"),
    )
    rel = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]
    buckets = relative_position_bucket(
      rel,
      bidirectional=self.bidirectional,
      num_buckets=cfg.relative_attention_num_buckets,
      max_distance=cfg.relative_attention_max_distance,
    )
    return jnp.take(table.astype(jnp.float32), jnp.asarray(buckets), axis=1)[None]  # [1, heads, q, k]


class Attention(nn.Module):
  """Multi-head attention without logit scaling (T5). ``inputs_q: [b, q, embed]``, ``inputs_kv: [b, k, embed]``,
  ``mask: [b, 1, q, k]`` (bool/0-1) or None, ``bias: [1, heads, q, k]`` float32 or None -> ``[b, q, embed]``.

  With ``decode=True`` keeps t5x's cache (see module docstring); ``bias``/``mask`` then span the full
  cache length and the row of the current position is sliced here.
  """

  config: T5Config
  causal: bool = False

  @nn.compact
  def __call__(self, inputs_q, inputs_kv, mask=None, bias=None, *, decode: bool = False, deterministic: bool = True):
    cfg = self.config
    stepping = False
    dt = cfg.compute_dtype
    d, h, hd = inputs_q.shape[-1], cfg.num_heads, cfg.head_dim
    kinit = nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=0, out_axis=(1, 2))
    qinit = lambda *a: kinit(*a) / math.sqrt(hd)  # no 1/sqrt(d) in attention: folded into the init
    in_axes = ("embed", "heads", "head_dim")
    wq = Kernel(cfg, (d, h, hd), in_axes, qinit, name="query")()
    wk = Kernel(cfg, (d, h, hd), in_axes, kinit, name="key")()
    wv = Kernel(cfg, (d, h, hd), in_axes, kinit, name="value")()
    wo = Kernel(
      cfg,
      (h, hd, d),
      ("heads", "head_dim", "embed"),
      nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=(0, 1), out_axis=2),
      name="out",
    )()
    qkv_axes = ("batch", "length", "heads", "head_dim")
    q = spmd.with_logical_constraint(jnp.einsum("bld,dhk->blhk", inputs_q.astype(dt), wq), qkv_axes)
    k = spmd.with_logical_constraint(jnp.einsum("bld,dhk->blhk", inputs_kv.astype(dt), wk), qkv_axes)
    v = spmd.with_logical_constraint(jnp.einsum("bld,dhk->blhk", inputs_kv.astype(dt), wv), qkv_axes)

    if decode:
      initialized = self.has_variable("cache", "cached_key")
      cache_shape = (k.shape[0], h, hd, k.shape[1])  # [batch, heads, head_dim, length] (t5x layout)
      cached_key = self.variable("cache", "cached_key", jnp.zeros, cache_shape, k.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, cache_shape, v.dtype)
      cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
      if initialized:
        stepping = True
        batch, _, _, length = cached_key.value.shape
        if q.shape != (batch, 1, h, hd):
          raise ValueError(f"decode step expects one query position [{batch}, 1, ...]; got query {q.shape}")
        idx = cache_index.value
        new_k = jax.lax.dynamic_update_slice(cached_key.value, jnp.moveaxis(k, 1, -1).astype(k.dtype), (0, 0, 0, idx))
        new_v = jax.lax.dynamic_update_slice(cached_value.value, jnp.moveaxis(v, 1, -1).astype(v.dtype), (0, 0, 0, idx))
        cached_key.value, cached_value.value = new_k, new_v
        cache_index.value = idx + 1
        k, v = jnp.moveaxis(new_k, -1, 1), jnp.moveaxis(new_v, -1, 1)
        step_mask = jnp.broadcast_to(jnp.arange(length) <= idx, (batch, 1, 1, length))
        mask = step_mask if mask is None else jnp.logical_and(mask.astype(bool), step_mask)
        if bias is not None and bias.shape[-2] != 1:
          bias = jax.lax.dynamic_slice_in_dim(bias, idx, 1, axis=-2)

    if self.causal and not stepping:
      causal = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))[None, None]
      mask = causal if mask is None else jnp.logical_and(mask.astype(bool), causal)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    if bias is not None:
      scores = scores + bias.astype(jnp.float32)
    if mask is not None:
      scores = jnp.where(mask.astype(bool), scores, _NEG_INF)
    weights = jax.nn.softmax(scores, axis=-1).astype(dt)
    if not deterministic and cfg.dropout_rate > 0:
      weights = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(weights, deterministic=False)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    out = jnp.einsum("bqhd,hde->bqe", out, wo)
    return spmd.with_logical_constraint(out, ("batch", "length", "embed"))


class Mlp(nn.Module):
  """Gated (``act(x W_0) * (x W_1)``) or plain (``act(x W)``) feed-forward, then ``W_o``: [b, l, embed]."""

  config: T5Config

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    cfg = self.config
    dt = cfg.compute_dtype
    d = x.shape[-1]
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
    act = _ACTIVATIONS[cfg.activation]
    names = ("wi_0", "wi_1") if cfg.is_gated else ("wi",)
    hs = [
      jnp.einsum("bld,df->blf", x.astype(dt), Kernel(cfg, (d, cfg.d_ff), ("embed", "mlp"), init, name=n)())
      for n in names
    ]
    y = act(hs[0]) * hs[1] if cfg.is_gated else act(hs[0])
    y = spmd.with_logical_constraint(y, ("batch", "length", "mlp"))
    y = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    wo = Kernel(cfg, (cfg.d_ff, d), ("mlp", "embed"), init, name="wo")()
    return spmd.with_logical_constraint(jnp.einsum("blf,fd->bld", y, wo), ("batch", "length", "embed"))


class EncoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x, mask, bias, deterministic: bool = True):
    drop = lambda y: nn.Dropout(self.config.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    y = RMSNorm(self.config, name="pre_attention_layer_norm")(x)
    x = x + drop(Attention(self.config, name="attention")(y, y, mask, bias, deterministic=deterministic))
    y = RMSNorm(self.config, name="pre_mlp_layer_norm")(x)
    return x + drop(Mlp(self.config, name="mlp")(y, deterministic=deterministic))


class DecoderLayer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x, encoded, self_mask, cross_mask, bias, deterministic: bool = True, decode: bool = False):
    drop = lambda y: nn.Dropout(self.config.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    y = RMSNorm(self.config, name="pre_self_attention_layer_norm")(x)
    x = x + drop(
      Attention(self.config, causal=True, name="self_attention")(
        y, y, self_mask, bias, decode=decode, deterministic=deterministic
      )
    )
    y = RMSNorm(self.config, name="pre_cross_attention_layer_norm")(x)
    x = x + drop(
      Attention(self.config, name="encoder_decoder_attention")(y, encoded, cross_mask, deterministic=deterministic)
    )
    y = RMSNorm(self.config, name="pre_mlp_layer_norm")(x)
    return x + drop(Mlp(self.config, name="mlp")(y, deterministic=deterministic))


class Embed(nn.Module):
  """Token embedding ``[vocab, embed]`` shared by encoder and decoder (and by the logits when tied)."""

  config: T5Config

  def setup(self):
    cfg = self.config
    self.embedding = _param(
      self, "embedding", nn.initializers.normal(1.0), (cfg.vocab_size, cfg.d_model), ("vocab", "embed")
    )

  def __call__(self, tokens):
    """``int[b, l]`` -> ``[b, l, embed]`` (compute dtype)."""
    x = jnp.take(self.embedding, tokens.astype(jnp.int32), axis=0).astype(self.config.compute_dtype)
    return spmd.with_logical_constraint(x, ("batch", "length", "embed"))

  def attend(self, y):
    """``[b, l, embed]`` -> float32 logits ``[b, l, vocab]`` through the embedding's transpose."""
    return jnp.einsum("bld,vd->blv", y.astype(jnp.float32), self.embedding.astype(jnp.float32))


class LogitsDense(nn.Module):
  """Untied output projection, float32: ``[b, l, embed]`` -> ``[b, l, vocab]``."""

  config: T5Config

  @nn.compact
  def __call__(self, y):
    cfg = self.config
    kernel = _param(
      self,
      "kernel",
      nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
      (cfg.d_model, cfg.vocab_size),
      ("embed", "vocab"),
    )
    return jnp.einsum("bld,dv->blv", y.astype(jnp.float32), kernel.astype(jnp.float32))


class Encoder(nn.Module):
  """``tokens: int[b, l]``, ``mask: [b, 1, l, l]`` -> ``[b, l, embed]`` (after the final norm)."""

  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens, mask, deterministic: bool = True):
    cfg = self.config
    bias = RelativePositionBias(cfg, bidirectional=True, name="relpos_bias")(tokens.shape[1], tokens.shape[1])
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(self.shared_embedding(tokens), deterministic=deterministic)
    for i in range(cfg.num_encoder_layers):
      x = EncoderLayer(cfg, name=f"layers_{i}")(x, mask, bias, deterministic)
    x = RMSNorm(cfg, name="encoder_norm")(x)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    return spmd.with_logical_constraint(x, ("batch", "length", "embed"))


class Decoder(nn.Module):
  """``tokens: int[b, l]`` decoder inputs, ``encoded: [b, k, embed]`` -> float32 logits ``[b, l, vocab]``."""

  config: T5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(
    self,
    tokens,
    encoded,
    self_mask,
    cross_mask,
    deterministic: bool = True,
    decode: bool = False,
    max_decode_length: int | None = None,
  ):
    cfg = self.config
    length = max_decode_length if decode and max_decode_length else tokens.shape[1]
    bias = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")(length, length)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(self.shared_embedding(tokens), deterministic=deterministic)
    for i in range(cfg.num_decoder_layers):
      x = DecoderLayer(cfg, name=f"layers_{i}")(x, encoded, self_mask, cross_mask, bias, deterministic, decode)
    x = RMSNorm(cfg, name="decoder_norm")(x)
    x = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = spmd.with_logical_constraint(x, ("batch", "length", "embed"))
    if cfg.scales_decoder_outputs:  # HF and t5x rescale by d_model**-0.5 when the output reuses the embedding
      x = x * (cfg.d_model**-0.5)
    if cfg.tie_word_embeddings:
      logits = self.shared_embedding.attend(x)
    else:
      logits = LogitsDense(cfg, name="logits_dense")(x)
    return spmd.with_logical_constraint(logits, ("batch", "length", "vocab"))


def _pair_mask(q_valid, k_valid):
  """``[b, q]``, ``[b, k]`` bool -> ``[b, 1, q, k]``."""
  return jnp.logical_and(q_valid[:, None, :, None], k_valid[:, None, None, :])


def _segment_mask(q_segments, k_segments):
  return jnp.equal(q_segments[:, None, :, None], k_segments[:, None, None, :])


def _check_tokens(name, tokens):
  if tokens.ndim != 2:
    raise ValueError(f"{name} must be [batch, length]; got shape {tokens.shape}")


def encoder_mask(encoder_input_tokens, encoder_segment_ids=None):
  """Padding (token 0) and packing mask for the encoder: ``[b, 1, l, l]`` bool."""
  valid = encoder_input_tokens > 0
  mask = _pair_mask(valid, valid)
  if encoder_segment_ids is not None:
    mask = jnp.logical_and(mask, _segment_mask(encoder_segment_ids, encoder_segment_ids))
  return mask


class T5(nn.Module):
  """T5 encoder-decoder with t5x's ``EncoderDecoder`` network methods (``__call__``, ``encode``, ``decode``)."""

  config: T5Config

  def setup(self):
    self.token_embedder = Embed(self.config)
    self.encoder = Encoder(self.config, self.token_embedder)
    self.decoder = Decoder(self.config, self.token_embedder)

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, enable_dropout: bool = False):
    """``encoder_input_tokens: int[b, l]`` (0 = padding) -> encoded ``[b, l, d_model]``."""
    _check_tokens("encoder_input_tokens", encoder_input_tokens)
    return self.encoder(
      encoder_input_tokens, encoder_mask(encoder_input_tokens, encoder_segment_ids), deterministic=not enable_dropout
    )

  def decode(
    self,
    encoded,
    encoder_input_tokens,
    decoder_input_tokens,
    decoder_target_tokens=None,
    encoder_segment_ids=None,
    decoder_segment_ids=None,
    decoder_positions=None,
    enable_dropout: bool = False,
    decode: bool = False,
    max_decode_length: int | None = None,
  ):
    """Decoder over ``encoded: [b, k, d_model]`` -> float32 logits ``[b, l, vocab]``.

    ``decoder_target_tokens`` (0 = padding) masks padded positions; when None only the causal mask applies.
    ``decoder_positions`` is accepted for t5x compatibility; relative biases use in-sequence offsets, which
    are the same within each packed segment.
    """
    del decoder_positions
    _check_tokens("decoder_input_tokens", decoder_input_tokens)
    enc_valid = encoder_input_tokens > 0
    if decode:  # incremental decoding: no target padding mask (t5x); causality comes from the cache
      if encoder_segment_ids is not None:
        raise ValueError("packed inputs (encoder_segment_ids) cannot be used with decode=True")
      self_mask = None
      cross_mask = _pair_mask(jnp.ones_like(decoder_input_tokens, dtype=bool), enc_valid)
    else:
      if decoder_target_tokens is None:
        self_mask = None
        dec_valid = jnp.ones_like(decoder_input_tokens, dtype=bool)
      else:
        dec_valid = decoder_target_tokens > 0
        self_mask = _pair_mask(dec_valid, dec_valid)
      if decoder_segment_ids is not None:
        seg = _segment_mask(decoder_segment_ids, decoder_segment_ids)
        self_mask = seg if self_mask is None else jnp.logical_and(self_mask, seg)
      cross_mask = _pair_mask(dec_valid, enc_valid)
      if encoder_segment_ids is not None:
        if decoder_segment_ids is None:
          raise ValueError("encoder_segment_ids given without decoder_segment_ids")
        cross_mask = jnp.logical_and(cross_mask, _segment_mask(decoder_segment_ids, encoder_segment_ids))
    return self.decoder(
      decoder_input_tokens,
      encoded,
      self_mask,
      cross_mask,
      deterministic=not enable_dropout,
      decode=decode,
      max_decode_length=max_decode_length,
    )

  def __call__(
    self,
    encoder_input_tokens,
    decoder_input_tokens,
    decoder_target_tokens=None,
    encoder_segment_ids=None,
    decoder_segment_ids=None,
    encoder_positions=None,
    decoder_positions=None,
    enable_dropout: bool = False,
    decode: bool = False,
    max_decode_length: int | None = None,
  ):
    """``encoder_input_tokens: int[b, k]``, ``decoder_input_tokens: int[b, l]`` -> logits ``[b, l, vocab]``."""
    del encoder_positions
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids=encoder_segment_ids, enable_dropout=enable_dropout)
    return self.decode(
      encoded,
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      encoder_segment_ids=encoder_segment_ids,
      decoder_segment_ids=decoder_segment_ids,
      decoder_positions=decoder_positions,
      enable_dropout=enable_dropout,
      decode=decode,
      max_decode_length=max_decode_length,
    )


class T5Encoder(nn.Module):
  """Encoder-only T5 (Sentence-T5, HF ``T5EncoderModel``): params ``token_embedder`` + ``encoder``.

  ``__call__(encoder_input_tokens, encoder_segment_ids=None, enable_dropout=False) -> [b, l, d_model]``.
  """

  config: T5Config

  def setup(self):
    self.token_embedder = Embed(self.config)
    self.encoder = Encoder(self.config, self.token_embedder)

  def __call__(self, encoder_input_tokens, encoder_segment_ids=None, enable_dropout: bool = False):
    _check_tokens("encoder_input_tokens", encoder_input_tokens)
    return self.encoder(
      encoder_input_tokens, encoder_mask(encoder_input_tokens, encoder_segment_ids), deterministic=not enable_dropout
    )

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, enable_dropout: bool = False):
    return self(encoder_input_tokens, encoder_segment_ids, enable_dropout)


def t5_sentence_embeddings(
  module: nn.Module, params: Any, input_ids: jax.Array, attention_mask=None, *, normalize: bool = True
) -> jax.Array:
  """Sentence-T5-style embeddings: mean-pooled encoder states (``[b, d_model]``), L2-normalised by default.

  ``module`` is a ``T5`` or ``T5Encoder``; ``attention_mask`` defaults to ``input_ids > 0``.
  """
  mask = (input_ids > 0) if attention_mask is None else attention_mask
  tokens = jnp.where(mask > 0, input_ids, 0)
  hidden = module.apply({"params": params}, tokens, method=module.encode)
  pooled = mean_pool(hidden, mask)  # pyright: ignore[reportArgumentType]  (apply without mutable: the output only)
  return l2_normalize(pooled) if normalize else pooled
