"""Checkpoint metadata of the decoder families ``models.llama`` runs -> ``LlamaConfig`` (and back for export).

HF ``config.json`` (``model_type`` / ``architectures``):

  =========  ==========================  ===============================================================
  family     architecture                what differs from Llama (see ``models.llama``)
  =========  ==========================  ===============================================================
  llama      ``LlamaForCausalLM``        -
  mistral    ``MistralForCausalLM``      ``sliding_window`` on every layer (null: none)
  qwen2      ``Qwen2ForCausalLM``        q/k/v biases; sliding window only with ``use_sliding_window``, on
                                         ``layer_types`` (default: layers >= ``max_window_layers``)
  gemma      ``GemmaForCausalLM``        GeGLU, ``(1 + w)`` RMSNorm, embeddings * sqrt(D), tied
  gemma2     ``Gemma2ForCausalLM``       Gemma + sandwich norms, soft-capping, ``query_pre_attn_scalar``,
                                         ``layer_types`` (default: even layers sliding)
  =========  ==========================  ===============================================================

GGUF (llama.cpp ``general.architecture``): ``llama`` (llama.cpp writes Mistral checkpoints as ``llama``; it keeps
no sliding window for them), ``qwen2``, ``gemma``, ``gemma2``. Anything a family's implementation here does not
compute (RoPE scaling types, other activations, Llama's ``attention_bias``/``mlp_bias``, bidirectional Gemma 2)
is refused with a CheckpointError naming the field, never silently ignored.
"""

from __future__ import annotations

from typing import Any, Mapping

from tokensift.models.checkpoint_check import CheckpointError
from tokensift.models.llama import LlamaConfig

HF_ARCHITECTURES = {
  "llama": "LlamaForCausalLM",
  "mistral": "MistralForCausalLM",
  "qwen2": "Qwen2ForCausalLM",
  "gemma": "GemmaForCausalLM",
  "gemma2": "Gemma2ForCausalLM",
}
GGUF_ARCHITECTURES = ("llama", "qwen2", "gemma", "gemma2")
_GEMMA = ("gemma", "gemma2")


def _rope(hf: Mapping[str, Any], unsupported: list[str]) -> float:
  """rope_theta of a default-RoPE config (transformers 5 ``rope_parameters`` or older ``rope_scaling``)."""
  params = hf.get("rope_parameters") or {}
  if params.get("rope_type", "default") != "default":
    unsupported.append(f"rope_parameters.rope_type={params['rope_type']!r}")
  scaling = hf.get("rope_scaling") or {}
  scaling_type = scaling.get("rope_type", scaling.get("type", "default"))
  if scaling_type != "default":
    unsupported.append(f"rope_scaling.rope_type={scaling_type!r}")
  return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _activation(hf: Mapping[str, Any], family: str, unsupported: list[str]) -> str:
  if family in _GEMMA:
    # Gemma's legacy "gelu" means the tanh approximation (transformers maps it so); Gemma 2 reads hidden_activation.
    field = "hidden_activation" if family == "gemma2" and hf.get("hidden_activation") else "hidden_act"
    act = hf.get(field) or "gelu_pytorch_tanh"
    if act in ("gelu", "gelu_pytorch_tanh") and not (family == "gemma2" and act == "gelu"):
      return "gelu_pytorch_tanh"
    unsupported.append(f"{field}={act!r}")
    return "gelu_pytorch_tanh"
  act = hf.get("hidden_act", "silu")
  if act != "silu":
    unsupported.append(f"hidden_act={act!r}")
  return "silu"


def _windows(hf: Mapping[str, Any], family: str, layers: int) -> tuple[int | None, tuple[str, ...] | None]:
  """(sliding_window, layer_types) as HF's config class of ``family`` resolves them."""
  window = hf.get("sliding_window", 4096)  # the default of MistralConfig, Qwen2Config and Gemma2Config
  if family in ("llama", "gemma") or not window:
    return None, None
  if family == "qwen2" and not hf.get("use_sliding_window", False):
    return None, None
  if family == "mistral":
    return int(window), None
  types = hf.get("layer_types")
  if types is None and family == "qwen2":
    first = int(hf.get("max_window_layers", 28))
    types = ["sliding_attention" if i >= first else "full_attention" for i in range(layers)]
  elif types is None:  # gemma2: layers 0, 2, 4, ... are local
    types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)]
  return int(window), tuple(types)


def config_from_hf(
  hf: Mapping[str, Any], *, source: str = "config.json", dtype: str = "float32", param_dtype: str = "float32"
) -> LlamaConfig:
  """LlamaConfig from an HF ``config.json`` dict of a supported family; CheckpointError naming the field for
  architectures or features not supported."""
  archs = list(hf.get("architectures") or [])
  family = hf.get("model_type")
  if family not in HF_ARCHITECTURES or (archs and HF_ARCHITECTURES[family] not in archs):
    raise CheckpointError(
      f"checkpoint {source}: unknown architecture model_type={family!r} "
      f"architectures={archs}; supported: " + ", ".join(f"{t} ({a})" for t, a in HF_ARCHITECTURES.items())
    )
  unsupported: list[str] = []
  if family != "qwen2":
    unsupported += [f"{name}=true" for name in ("attention_bias", "mlp_bias") if hf.get(name)]
  if hf.get("use_bidirectional_attention"):
    unsupported.append("use_bidirectional_attention=true")
  theta = _rope(hf, unsupported)
  act = _activation(hf, family, unsupported)
  if unsupported:
    raise CheckpointError(f"checkpoint {source}: unsupported {family} features: {', '.join(unsupported)}")
  try:
    layers = int(hf["num_hidden_layers"])
    window, types = _windows(hf, family, layers)
    gemma2 = family == "gemma2"
    return LlamaConfig(
      vocab_size=int(hf["vocab_size"]),
      hidden_size=int(hf["hidden_size"]),
      intermediate_size=int(hf["intermediate_size"]),
      num_layers=layers,
      num_heads=int(hf["num_attention_heads"]),
      num_kv_heads=int(hf.get("num_key_value_heads") or hf["num_attention_heads"]),
      head_dim=hf.get("head_dim"),
      rope_theta=theta,
      rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", family in _GEMMA)),
      dtype=dtype,
      param_dtype=param_dtype,
      family=family,
      attention_bias=family == "qwen2",
      sliding_window=window,
      layer_types=types,
      hidden_act=act,
      norm_offset_one=family in _GEMMA,
      scale_embeddings=family in _GEMMA,
      sandwich_norms=gemma2,
      query_pre_attn_scalar=float(hf.get("query_pre_attn_scalar", 256)) if gemma2 else None,
      attn_logit_softcapping=_float_or_none(hf.get("attn_logit_softcapping", 50.0)) if gemma2 else None,
      final_logit_softcapping=_float_or_none(hf.get("final_logit_softcapping", 30.0)) if gemma2 else None,
    )
  except KeyError as e:
    raise CheckpointError(f"checkpoint {source}: config.json lacks {e.args[0]!r}") from None
  except ValueError as e:
    raise CheckpointError(f"checkpoint {source}: {e}") from None


def _float_or_none(x) -> float | None:
  return None if x is None else float(x)


def hf_config_dict(cfg: LlamaConfig) -> dict[str, Any]:
  """An HF ``config.json`` dict for ``cfg`` in its family's terms (``config_from_hf`` reads it back)."""
  out = {
    "architectures": [HF_ARCHITECTURES[cfg.family]],
    "model_type": cfg.family,
    "vocab_size": cfg.vocab_size,
    "hidden_size": cfg.hidden_size,
    "intermediate_size": cfg.intermediate_size,
    "num_hidden_layers": cfg.num_layers,
    "num_attention_heads": cfg.num_heads,
    "num_key_value_heads": cfg.num_kv_heads,
    "head_dim": cfg.resolved_head_dim,
    "rope_theta": cfg.rope_theta,
    "rms_norm_eps": cfg.rms_norm_eps,
    "max_position_embeddings": cfg.max_position_embeddings,
    "tie_word_embeddings": cfg.tie_word_embeddings,
    "hidden_act": cfg.hidden_act,
  }
  if cfg.family in ("llama", "mistral", "gemma", "gemma2"):
    out.update(attention_bias=False)
  if cfg.family == "llama":
    out.update(mlp_bias=False)
  if cfg.family == "mistral":
    out.update(sliding_window=cfg.sliding_window)
  if cfg.family == "qwen2":
    out.update(
      use_sliding_window=cfg.sliding_window is not None,
      sliding_window=cfg.sliding_window,
      layer_types=list(cfg.layer_types or ["full_attention"] * cfg.num_layers),
    )
  if cfg.family == "gemma2":
    scalar = cfg.query_pre_attn_scalar
    out.update(
      hidden_activation=cfg.hidden_act,
      query_pre_attn_scalar=int(scalar) if scalar is not None and float(scalar).is_integer() else scalar,
      attn_logit_softcapping=cfg.attn_logit_softcapping,
      final_logit_softcapping=cfg.final_logit_softcapping,
      sliding_window=cfg.sliding_window,
      layer_types=list(cfg.layer_types or ["full_attention"] * cfg.num_layers),
    )
  return out


def config_from_gguf(
  fields: Mapping[str, Any],
  tensor_shapes: Mapping[str, tuple[int, ...]],
  *,
  source: str,
  dtype: str = "float32",
  param_dtype: str = "float32",
) -> LlamaConfig:
  """LlamaConfig from GGUF metadata (``{arch}.*`` keys as llama.cpp's convert script writes them);
  CheckpointError for other architectures or unsupported metadata."""
  arch = fields.get("general.architecture")
  if arch not in GGUF_ARCHITECTURES:
    raise CheckpointError(
      f"checkpoint {source}: unknown architecture general.architecture={arch!r}; supported: {list(GGUF_ARCHITECTURES)}"
    )
  a = f"{arch}."
  need = [a + k for k in ("embedding_length", "feed_forward_length", "block_count", "attention.head_count")]
  missing = [k for k in need if k not in fields]
  if missing:
    raise CheckpointError(f"checkpoint {source}: GGUF metadata lacks {', '.join(missing)}")
  if fields.get(a + "rope.scaling.type", "none") not in ("none", None):
    raise CheckpointError(f"checkpoint {source}: unsupported {a}rope.scaling.type={fields[a + 'rope.scaling.type']!r}")
  hidden, heads = int(fields[a + "embedding_length"]), int(fields[a + "attention.head_count"])
  layers = int(fields[a + "block_count"])
  vocab = fields.get(a + "vocab_size")
  if vocab is None:
    vocab = tensor_shapes.get("token_embd.weight", (0,))[0]
  head_dim = fields.get(a + "attention.key_length", fields.get(a + "rope.dimension_count"))
  head_dim = None if head_dim is None or int(head_dim) == hidden // heads else int(head_dim)
  gemma2 = arch == "gemma2"
  window = fields.get(a + "attention.sliding_window") if gemma2 else None
  qscale = None
  if gemma2:
    # llama.cpp keeps no query_pre_attn_scalar: it scales by head_dim**-0.5, except for the 46-layer 27B model
    # whose query_pre_attn_scalar is hidden/heads (llama.cpp's rule, followed here for the same numbers).
    qscale = float(hidden // heads) if layers == 46 else float(head_dim or hidden // heads)
  try:
    return LlamaConfig(
      vocab_size=int(vocab),
      hidden_size=hidden,
      intermediate_size=int(fields[a + "feed_forward_length"]),
      num_layers=layers,
      num_heads=heads,
      num_kv_heads=int(fields.get(a + "attention.head_count_kv", heads)),
      head_dim=head_dim,
      rope_theta=float(fields.get(a + "rope.freq_base", 10000.0)),
      rms_norm_eps=float(fields.get(a + "attention.layer_norm_rms_epsilon", 1e-5 if arch == "llama" else 1e-6)),
      max_position_embeddings=int(fields.get(a + "context_length", 2048)),
      tie_word_embeddings="output.weight" not in tensor_shapes,
      dtype=dtype,
      param_dtype=param_dtype,
      family=arch,
      attention_bias=arch == "qwen2",
      sliding_window=int(window) if window else None,
      layer_types=tuple("sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers))
      if gemma2 and window
      else None,
      hidden_act="gelu_pytorch_tanh" if arch in _GEMMA else "silu",
      norm_offset_one=arch in _GEMMA,
      scale_embeddings=arch in _GEMMA,
      sandwich_norms=gemma2,
      query_pre_attn_scalar=qscale,
      attn_logit_softcapping=_float_or_none(fields.get(a + "attn_logit_softcapping")) if gemma2 else None,
      final_logit_softcapping=_float_or_none(fields.get(a + "final_logit_softcapping")) if gemma2 else None,
    )
  except ValueError as e:
    raise CheckpointError(f"checkpoint {source}: {e}") from None
