"""Llama-family decoders (Llama, Mistral, Qwen2/2.5, Gemma, Gemma 2) in Flax linen: RoPE, RMSNorm, gated MLP,
grouped/multi-query attention.

Serves ProX refining models, decoder-only ASK-LLM scorers and Rho-1 training/reference models. Numerics follow
HF transformers' ``LlamaForCausalLM`` / ``MistralForCausalLM`` / ``Qwen2ForCausalLM`` / ``GemmaForCausalLM`` /
``Gemma2ForCausalLM`` (rotate-half RoPE, RMSNorm computed in float32, softmax in float32) so that HF/GGUF
checkpoints load with logit parity.

One network with per-family switches in the frozen ``LlamaConfig`` rather than a module per family: the five
families share every piece (RoPE, GQA, the KV cache, masks, the t5x signature, sharding rules) and differ by a few
local choices, each one a config field read in exactly one place (the defaults are Llama's):

  ===========================  =====================================================  ==========================
  field                        effect                                                 families
  ===========================  =====================================================  ==========================
  ``attention_bias``           q/k/v projections carry biases                         Qwen2
  ``sliding_window`` +         a ``"sliding_attention"`` layer sees the last           Mistral, Qwen2 (opt-in),
  ``layer_types``              ``sliding_window`` keys only                            Gemma 2 (even layers)
  ``hidden_act``               ``"silu"`` (SwiGLU) or ``"gelu_pytorch_tanh"`` (GeGLU)  Gemma, Gemma 2: GeGLU
  ``norm_offset_one``          RMSNorm scales by ``(1 + w)`` (product in float32)      Gemma, Gemma 2
  ``scale_embeddings``         token embeddings times ``sqrt(hidden_size)``            Gemma, Gemma 2
  ``sandwich_norms``           norms after attention and before/after the MLP          Gemma 2
  ``query_pre_attn_scalar``    attention scale ``scalar**-0.5`` (else ``head_dim``)    Gemma 2
  ``attn_logit_softcapping``   ``cap * tanh(scores / cap)`` before the mask            Gemma 2
  ``final_logit_softcapping``  ``cap * tanh(logits / cap)``                            Gemma 2
  ===========================  =====================================================  ==========================

The call signature is t5x's decoder-only network signature (``t5x.models.DecoderOnlyModel`` drives it
unchanged): packed examples via ``decoder_segment_ids``/``decoder_positions``, prefix-LM via
``decoder_causal_attention``, and a key/value cache in the ``'cache'`` collection for ``decode=True`` (one token
per call) and ``prefill=True`` (a whole prompt per call, per-example ``prefill_lengths``).

Parameter tree (``hidden = D``, ``heads = H``, ``kv_heads = K``, ``head_dim = Dh``, ``intermediate = F``)::

  token_embed/embedding            [vocab, D]        ('vocab', 'embed')
  layers_{i}/attention_norm/scale  [D]               ('embed',)
  layers_{i}/attention/query       [D, H, Dh]        ('embed', 'heads', 'head_dim')
  layers_{i}/attention/key|value   [D, K, Dh]        ('embed', 'kv_heads', 'head_dim')
  layers_{i}/attention/query_bias  [H, Dh]           ('heads', 'head_dim')      (attention_bias only)
  layers_{i}/attention/key_bias|value_bias [K, Dh]   ('kv_heads', 'head_dim')   (attention_bias only)
  layers_{i}/attention/out         [H, Dh, D]        ('heads', 'head_dim', 'embed')
  layers_{i}/post_attention_norm/scale [D]           ('embed',)                 (sandwich_norms only)
  layers_{i}/mlp_norm/scale        [D]               ('embed',)
  layers_{i}/mlp/gate|up           [D, F]            ('embed', 'mlp')
  layers_{i}/mlp/down              [F, D]            ('mlp', 'embed')
  layers_{i}/post_mlp_norm/scale   [D]               ('embed',)                 (sandwich_norms only)
  final_norm/scale                 [D]               ('embed',)
  lm_head/kernel                   [D, vocab]        ('embed', 'vocab')   (absent when embeddings are tied)

Cache collection per attention layer: ``cached_key``/``cached_value`` [batch, cache_length, K, Dh] and
``cache_index`` int32[batch] (the next position each example writes; prompts of different lengths decode in
one batch).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
from flax.linen import spmd  # with_logical_constraint and logical_to_mesh_axes: flax.linen does not re-export them
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
_NEG = -1e30  # additive mask value (finite: a fully-masked padding row stays NaN-free)
FAMILIES = ("llama", "mistral", "qwen2", "gemma", "gemma2")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
  """Hyper-parameters of a Llama-family decoder (names follow HF ``LlamaConfig`` where they differ)."""

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int | None = None  # default hidden_size // num_heads
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-6
  max_position_embeddings: int = 2048
  tie_word_embeddings: bool = False
  dtype: str = "float32"  # compute dtype: "float32" | "bfloat16"
  param_dtype: str = "float32"
  init_std: float = 0.02  # normal init of every weight (as HF); only used when training from scratch
  remat: bool = False  # rematerialize each layer in the backward pass (training memory)
  # Family switches (module docstring); the defaults are Llama's.
  family: str = "llama"  # the checkpoint family ("llama" | "mistral" | "qwen2" | "gemma" | "gemma2"), for export
  attention_bias: bool = False
  sliding_window: int | None = None
  layer_types: tuple[str, ...] | None = None  # per layer; None: all "sliding_attention" iff sliding_window is set
  hidden_act: str = "silu"
  norm_offset_one: bool = False
  scale_embeddings: bool = False
  sandwich_norms: bool = False
  query_pre_attn_scalar: float | None = None
  attn_logit_softcapping: float | None = None
  final_logit_softcapping: float | None = None

  def __post_init__(self):
    if self.layer_types is not None:
      object.__setattr__(self, "layer_types", tuple(self.layer_types))  # gin/json give lists; keep it hashable
      if len(self.layer_types) != self.num_layers:
        raise ValueError(f"layer_types has {len(self.layer_types)} entries for num_layers={self.num_layers}")
      bad = sorted(set(self.layer_types) - {"full_attention", "sliding_attention"})
      if bad:
        raise ValueError(f"layer_types {bad}: expected 'full_attention' or 'sliding_attention'")
      if "sliding_attention" in self.layer_types and not self.sliding_window:
        raise ValueError("layer_types has 'sliding_attention' layers but sliding_window is not set")
    if self.sliding_window is not None and self.sliding_window < 1:
      raise ValueError(f"sliding_window={self.sliding_window} must be >= 1 (or None)")
    if self.family not in FAMILIES:
      raise ValueError(f"family={self.family!r}; expected one of {FAMILIES}")
    if self.hidden_act not in ("silu", "gelu_pytorch_tanh"):
      raise ValueError(f"hidden_act={self.hidden_act!r}; expected 'silu' or 'gelu_pytorch_tanh'")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
    if self.head_dim is None and self.hidden_size % self.num_heads:
      raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}; set head_dim")
    if self.resolved_head_dim % 2:
      raise ValueError(f"head_dim={self.resolved_head_dim} must be even for rotary embeddings")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"{name}={getattr(self, name)!r}; expected 'float32', 'bfloat16' or 'float16'")

  @property
  def resolved_head_dim(self) -> int:
    return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

  def is_sliding(self, layer: int) -> bool:
    """Whether layer ``layer`` attends within ``sliding_window`` only."""
    if self.layer_types is None:
      return self.sliding_window is not None
    return self.layer_types[layer] == "sliding_attention"

  @property
  def attention_scale(self) -> float:
    return (self.query_pre_attn_scalar or self.resolved_head_dim) ** -0.5

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def weight_dtype(self):
    return jnp.dtype(self.param_dtype)


def _param(module: nn.Module, name: str, shape: tuple[int, ...], axes: tuple[str, ...], init=None) -> Array:
  cfg = module.config
  init = init or nn.initializers.normal(cfg.init_std)
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, cfg.weight_dtype)  # pyright: ignore[reportReturnType]  (param unboxes the LogicallyPartitioned)


def rotary_tables(positions: Array, head_dim: int, theta: float) -> tuple[Array, Array]:
  """cos/sin tables for HF's rotate-half RoPE. positions: int[batch, length] -> 2 x float32[batch, length, Dh]."""
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [b, l, Dh/2]
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(emb), jnp.sin(emb)


def apply_rotary(x: Array, cos: Array, sin: Array) -> Array:
  """x: [batch, length, heads, Dh]; cos/sin: [batch, length, Dh]. Rotate-half convention (HF Llama)."""
  half = x.shape[-1] // 2
  xf = x.astype(jnp.float32)
  rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
  out = xf * cos[:, :, None, :] + rotated * sin[:, :, None, :]
  return out.astype(x.dtype)


class RMSNorm(nn.Module):
  """y = x / sqrt(mean(x^2) + eps) * scale (Gemma: * (1 + scale)), normalized in float32 (as HF), returned in the
  compute dtype."""

  config: LlamaConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    init = nn.initializers.zeros if cfg.norm_offset_one else nn.initializers.ones
    scale = _param(self, "scale", (x.shape[-1],), ("embed",), init)
    xf = x.astype(jnp.float32)
    xf = xf * lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + cfg.rms_norm_eps)
    if cfg.norm_offset_one:  # Gemma: (1 + w) and the product in float32, then the compute dtype
      return (xf * (1.0 + scale.astype(jnp.float32))).astype(cfg.compute_dtype)
    return scale.astype(cfg.compute_dtype) * xf.astype(cfg.compute_dtype)


class Attention(nn.Module):
  """Grouped-query self-attention with RoPE and an optional key/value cache; ``sliding``: this layer sees the last
  ``config.sliding_window`` positions only."""

  config: LlamaConfig
  sliding: bool = False

  @nn.compact
  def __call__(
    self,
    x: Array,
    positions: Array,
    bias: Array | None,
    *,
    decode: bool = False,
    prefill: bool = False,
    prefill_lengths: Array | None = None,
  ) -> Array:
    """x: [b, l, D]; positions: int[b, l]; bias: float32[b, 1, l, s] additive mask (s = l when no cache) or
    None in a cached decode step (the mask then comes from ``cache_index``). Returns [b, l, D]."""
    cfg = self.config
    dt = cfg.compute_dtype
    h, k, dh, d = cfg.num_heads, cfg.num_kv_heads, cfg.resolved_head_dim, cfg.hidden_size
    wq = _param(self, "query", (d, h, dh), ("embed", "heads", "head_dim"))
    wk = _param(self, "key", (d, k, dh), ("embed", "kv_heads", "head_dim"))
    wv = _param(self, "value", (d, k, dh), ("embed", "kv_heads", "head_dim"))
    wo = _param(self, "out", (h, dh, d), ("heads", "head_dim", "embed"))
    x = x.astype(dt)
    q = jnp.einsum("bld,dhk->blhk", x, wq.astype(dt))
    key = jnp.einsum("bld,dhk->blhk", x, wk.astype(dt))
    value = jnp.einsum("bld,dhk->blhk", x, wv.astype(dt))
    if cfg.attention_bias:
      zeros = nn.initializers.zeros
      q = q + _param(self, "query_bias", (h, dh), ("heads", "head_dim"), zeros).astype(dt)
      key = key + _param(self, "key_bias", (k, dh), ("kv_heads", "head_dim"), zeros).astype(dt)
      value = value + _param(self, "value_bias", (k, dh), ("kv_heads", "head_dim"), zeros).astype(dt)
    q = spmd.with_logical_constraint(q, ("batch", "length", "heads", "head_dim"))
    key = spmd.with_logical_constraint(key, ("batch", "length", "kv_heads", "head_dim"))
    value = spmd.with_logical_constraint(value, ("batch", "length", "kv_heads", "head_dim"))

    if decode or prefill:
      is_initialized = self.has_variable("cache", "cached_key")
      cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
      cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
      cache_index = self.variable("cache", "cache_index", jnp.zeros, (x.shape[0],), jnp.int32)
      if is_initialized and prefill:
        cache_len = cached_key.value.shape[1]
        if x.shape[1] > cache_len:
          raise ValueError(f"prefill of length {x.shape[1]} does not fit the cache of length {cache_len}")
        cos, sin = rotary_tables(positions, dh, cfg.rope_theta)
        q, key = apply_rotary(q, cos, sin), apply_rotary(key, cos, sin)
        cached_key.value = lax.dynamic_update_slice(cached_key.value, key.astype(cached_key.value.dtype), (0, 0, 0, 0))
        cached_value.value = lax.dynamic_update_slice(
          cached_value.value, value.astype(cached_value.value.dtype), (0, 0, 0, 0)
        )
        lengths = prefill_lengths if prefill_lengths is not None else jnp.full((x.shape[0],), x.shape[1])
        cache_index.value = lengths.astype(jnp.int32)
        return self._attend(q, key, value, bias, wo)
      if is_initialized and decode:
        if x.shape[1] != 1:
          raise ValueError(
            f"decode=True feeds one token per call; got length {x.shape[1]} (use prefill=True for a prompt)"
          )
        idx = cache_index.value  # [b]
        cos, sin = rotary_tables(idx[:, None], dh, cfg.rope_theta)
        q, key = apply_rotary(q, cos, sin), apply_rotary(key, cos, sin)
        write = jax.vmap(lambda c, new, i: lax.dynamic_update_slice(c, new, (i, 0, 0)))
        cached_key.value = write(cached_key.value, key.astype(cached_key.value.dtype), idx)
        cached_value.value = write(cached_value.value, value.astype(cached_value.value.dtype), idx)
        cache_index.value = idx + 1
        cache_len = cached_key.value.shape[1]
        slots = jnp.arange(cache_len)[None, :]
        visible = slots <= idx[:, None]  # [b, s]
        if self.sliding:
          assert cfg.sliding_window is not None  # a sliding layer has a window
          visible = visible & (slots > idx[:, None] - cfg.sliding_window)
        step_bias = jnp.where(visible, 0.0, _NEG)[:, None, None, :].astype(jnp.float32)
        keys = spmd.with_logical_constraint(cached_key.value, ("batch", "kv_length", "kv_heads", "head_dim"))
        values = spmd.with_logical_constraint(cached_value.value, ("batch", "kv_length", "kv_heads", "head_dim"))
        return self._attend(q, keys.astype(dt), values.astype(dt), step_bias, wo)
      # Not initialized yet: this is the cache-creating call; fall through to an ordinary forward.

    cos, sin = rotary_tables(positions, dh, cfg.rope_theta)
    q, key = apply_rotary(q, cos, sin), apply_rotary(key, cos, sin)
    return self._attend(q, key, value, bias, wo)

  def _attend(self, q: Array, key: Array, value: Array, bias: Array | None, wo: Array) -> Array:
    """q: [b, n, H, Dh]; key/value: [b, s, K, Dh]; bias: [b, 1, n, s]. Returns [b, n, D]."""
    cfg = self.config
    dt = cfg.compute_dtype
    b, n, h, dh = q.shape
    kvh = key.shape[2]
    group = h // kvh
    # Query head j uses kv head j // group (HF repeat_kv layout): split heads as [kv_heads, group].
    qg = q.reshape(b, n, kvh, group, dh) * jnp.asarray(cfg.attention_scale, dt)
    scores = jnp.einsum("blkgd,bskd->bkgls", qg, key, preferred_element_type=jnp.float32)
    if cfg.attn_logit_softcapping:
      scores = softcap(scores, cfg.attn_logit_softcapping)
    if bias is not None:
      scores = scores + bias[:, :, None, :, :]
    probs = jax.nn.softmax(scores, axis=-1).astype(dt)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, value).reshape(b, n, h, dh)
    out = spmd.with_logical_constraint(out, ("batch", "length", "heads", "head_dim"))
    y = jnp.einsum("blhk,hkd->bld", out, wo.astype(dt))
    return spmd.with_logical_constraint(y, ("batch", "length", "embed"))


class Mlp(nn.Module):
  """Gated MLP: down(act(gate(x)) * up(x)), act = silu (SwiGLU) or tanh-approximated gelu (GeGLU, Gemma).
  x: [b, l, D] -> [b, l, D]."""

  config: LlamaConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.config
    dt = cfg.compute_dtype
    d, f = cfg.hidden_size, cfg.intermediate_size
    gate = _param(self, "gate", (d, f), ("embed", "mlp"))
    up = _param(self, "up", (d, f), ("embed", "mlp"))
    down = _param(self, "down", (f, d), ("mlp", "embed"))
    act = nn.silu if cfg.hidden_act == "silu" else functools.partial(nn.gelu, approximate=True)
    hidden = act(x @ gate.astype(dt)) * (x @ up.astype(dt))
    hidden = spmd.with_logical_constraint(hidden, ("batch", "length", "mlp"))
    return spmd.with_logical_constraint(hidden @ down.astype(dt), ("batch", "length", "embed"))


class DecoderLayer(nn.Module):
  """Pre-norm residual block: x + attn(norm(x)); then x + mlp(norm(x)). With ``sandwich_norms`` (Gemma 2) each
  branch output is normed again before the residual add."""

  config: LlamaConfig
  sliding: bool = False

  @nn.compact
  def __call__(
    self,
    x: Array,
    positions: Array,
    bias: Array | None,
    decode: bool = False,
    prefill: bool = False,
    prefill_lengths: Array | None = None,
  ) -> Array:
    cfg = self.config
    y = Attention(cfg, self.sliding, name="attention")(
      RMSNorm(cfg, name="attention_norm")(x),
      positions,
      bias,
      decode=decode,
      prefill=prefill,
      prefill_lengths=prefill_lengths,
    )
    x = x + (RMSNorm(cfg, name="post_attention_norm")(y) if cfg.sandwich_norms else y)
    y = Mlp(cfg, name="mlp")(RMSNorm(cfg, name="mlp_norm")(x))
    x = x + (RMSNorm(cfg, name="post_mlp_norm")(y) if cfg.sandwich_norms else y)
    return spmd.with_logical_constraint(x, ("batch", "length", "embed"))


def softcap(x: Array, cap: float) -> Array:
  """cap * tanh(x / cap) (Gemma 2's attention and final logit soft-capping)."""
  return jnp.tanh(x / cap) * cap


def attention_bias(
  length: int,
  target_tokens: Array | None,
  segment_ids: Array | None,
  causal_attention: Array | None,
  batch: int,
  sliding_window: int | None = None,
) -> Array:
  """Additive float32 mask [batch, 1, length, length]: causal (or prefix-LM where ``causal_attention`` marks
  the bidirectional prefix, as t5x), same segment only, and padding (``target_tokens == 0``, as t5x) masked;
  with ``sliding_window`` a query also sees no key ``sliding_window`` or more positions behind it (HF's rule)."""
  pos = jnp.arange(length)
  allowed = jnp.broadcast_to(pos[None, :, None] >= pos[None, None, :], (batch, length, length))
  if causal_attention is not None:
    prefix = causal_attention.astype(bool)
    allowed = allowed | (prefix[:, :, None] & prefix[:, None, :])
  if segment_ids is not None:
    allowed = allowed & (segment_ids[:, :, None] == segment_ids[:, None, :])
  if target_tokens is not None:
    valid = target_tokens > 0
    allowed = allowed & valid[:, :, None] & valid[:, None, :]
  if sliding_window is not None:
    allowed = allowed & (pos[None, None, :] > pos[None, :, None] - sliding_window)
  return jnp.where(allowed, 0.0, _NEG).astype(jnp.float32)[:, None, :, :]


class Llama(nn.Module):
  """Llama-family causal LM with t5x's decoder-only network signature."""

  config: LlamaConfig

  def setup(self):
    cfg = self.config
    self.token_embed = nn.Embed(
      cfg.vocab_size,
      cfg.hidden_size,
      dtype=cfg.compute_dtype,
      param_dtype=cfg.weight_dtype,
      embedding_init=nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), ("vocab", "embed")),
    )
    layer_cls = nn.remat(DecoderLayer, static_argnums=(4, 5)) if cfg.remat else DecoderLayer
    self.layers = [layer_cls(cfg, cfg.is_sliding(i), name=f"layers_{i}") for i in range(cfg.num_layers)]
    self.final_norm = RMSNorm(cfg)
    if not cfg.tie_word_embeddings:
      self.lm_head = _LmHead(cfg)

  def __call__(
    self,
    decoder_input_tokens: Array,
    decoder_target_tokens: Array | None = None,
    decoder_segment_ids: Array | None = None,
    decoder_positions: Array | None = None,
    decoder_causal_attention: Array | None = None,
    enable_dropout: bool = False,
    decode: bool = False,
    max_decode_length: int | None = None,
    prefill: bool = False,
    prefill_lengths: Array | None = None,
  ) -> Array:
    """decoder_input_tokens: int[batch, length] -> float32 logits [batch, length, vocab].

    ``decoder_target_tokens`` (optional, t5x): positions whose target is 0 are padding and masked out.
    ``decoder_segment_ids``/``decoder_positions``: packing (attention stays within a segment; RoPE positions
    restart per segment). ``decode``: one token per call against the cache; ``prefill``: write a prompt into the
    cache (``prefill_lengths`` int[batch] = real prompt lengths). Llama has no dropout: ``enable_dropout`` and
    ``max_decode_length`` are accepted for t5x and ignored.
    """
    del enable_dropout, max_decode_length
    hidden = self.hidden_states(
      decoder_input_tokens,
      decoder_target_tokens,
      decoder_segment_ids,
      decoder_positions,
      decoder_causal_attention,
      decode=decode,
      prefill=prefill,
      prefill_lengths=prefill_lengths,
    )
    return self.logits(hidden)

  def hidden_states(
    self,
    tokens: Array,
    target_tokens: Array | None = None,
    segment_ids: Array | None = None,
    positions: Array | None = None,
    causal_attention: Array | None = None,
    *,
    decode: bool = False,
    prefill: bool = False,
    prefill_lengths: Array | None = None,
  ) -> Array:
    """Final-norm hidden states [batch, length, D] (compute dtype); arguments as ``__call__``."""
    if decode and prefill:
      raise ValueError("decode and prefill cannot both be true: prefill the prompt first, then decode")
    b, n = tokens.shape
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[None, :], (b, n))
    cfg = self.config
    x = self.token_embed(tokens.astype(jnp.int32))
    if cfg.scale_embeddings:  # Gemma: sqrt(D) rounded to the compute dtype first, as HF
      x = x * jnp.asarray(cfg.hidden_size**0.5, cfg.compute_dtype)
    x = spmd.with_logical_constraint(x, ("batch", "length", "embed"))
    bias = attention_bias(n, target_tokens, segment_ids, causal_attention, b)
    if any(cfg.is_sliding(i) for i in range(cfg.num_layers)):
      local_bias = attention_bias(n, target_tokens, segment_ids, causal_attention, b, cfg.sliding_window)
    for i, layer in enumerate(self.layers):
      x = layer(x, positions, local_bias if cfg.is_sliding(i) else bias, decode, prefill, prefill_lengths)
    return self.final_norm(x)

  def logits(self, hidden: Array) -> Array:
    """hidden: [..., D] -> float32 logits [..., vocab]."""
    cfg = self.config
    if cfg.tie_word_embeddings:
      out = self.token_embed.attend(hidden.astype(cfg.compute_dtype))
    else:
      out = self.lm_head(hidden)
    out = out.astype(jnp.float32)
    if cfg.final_logit_softcapping:
      out = softcap(out, cfg.final_logit_softcapping)
    if out.ndim == 3:
      out = spmd.with_logical_constraint(out, ("batch", "length", "vocab"))
    return out


class _LmHead(nn.Module):
  config: LlamaConfig

  @nn.compact
  def __call__(self, hidden: Array) -> Array:
    cfg = self.config
    kernel = _param(self, "kernel", (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"))
    return hidden.astype(cfg.compute_dtype) @ kernel.astype(cfg.compute_dtype)


def init_params(config: LlamaConfig, rng: Any = None, batch: int = 1, length: int = 8) -> Any:
  """Unboxed random params (host-free, default device) for ``config``, from one jitted init (an eager init
  compiles every initializer op): a convenience for tests/training."""
  rng = jax.random.PRNGKey(0) if rng is None else rng
  model = Llama(config)
  init = jax.jit(lambda key: nn.unbox(model.init(key, jnp.ones((batch, length), jnp.int32))["params"]))
  return init(rng)
