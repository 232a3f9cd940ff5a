"""Loaders of Llama-family checkpoints (Llama, Mistral, Qwen2/2.5, Gemma, Gemma 2) into ``models.llama`` param trees.

Two formats:
- HF directory: ``config.json`` + ``model.safetensors`` (or ``model.safetensors.index.json`` with shards), as
  ``{Llama,Mistral,Qwen2,Gemma,Gemma2}ForCausalLM.save_pretrained`` writes them (``gair-prox/*``, SmolLM2,
  TinyLlama, Mistral-7B, Qwen2.5-*-Instruct, gemma-2b-it, gemma-2-2b-it);
- GGUF file (llama.cpp): tensors dequantized with the ``gguf`` package (``gguf.quants.dequantize``),
  hyper-parameters from the ``{arch}.*`` metadata (``llama``, ``qwen2``, ``gemma``, ``gemma2``), tokenizer and
  chat template from ``tokenizer.*`` metadata. llama.cpp permutes Q/K rows for ``llama`` only and stores Gemma's
  RMSNorm weights as ``1 + w``; both are undone here.

The family's config translation lives in ``models.decoder_families``.

Every tensor is checked against the names/shapes the config implies before conversion, in the checkpoint's own
naming, so a bad checkpoint raises ``CheckpointError`` listing exactly the offending tensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from tokensift.models.bundle import LoadedModel
from tokensift.models.checkpoint_check import CheckpointError, check_tree
from tokensift.models.decoder_families import config_from_gguf, config_from_hf, hf_config_dict  # noqa: F401
from tokensift.models.llama import Llama, LlamaConfig


def load_llama(path: str | os.PathLike, dtype: str = "float32", param_dtype: str | None = None) -> LoadedModel:
  """Loads a Llama-family checkpoint: an HF directory (config.json + safetensors) or a ``.gguf`` file.

  ``dtype`` is the compute dtype; ``param_dtype`` (default: ``dtype``) the dtype of the returned host params.
  Raises FileNotFoundError for a missing path and CheckpointError for a checkpoint that does not fit.
  """
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"Llama checkpoint {str(path)!r} does not exist")
  if path.is_file() and path.suffix == ".gguf":
    return _load_gguf(path, dtype, param_dtype or dtype)
  if path.is_dir():
    if (path / "config.json").exists():
      return _load_hf(path, dtype, param_dtype or dtype)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
      return _load_gguf(ggufs[0], dtype, param_dtype or dtype)
    raise FileNotFoundError(
      f"{str(path)!r} holds neither config.json (HF) nor exactly one .gguf file (found {[g.name for g in ggufs]})"
    )
  raise CheckpointError(f"{str(path)!r} is neither an HF checkpoint directory nor a .gguf file")


# ----------------------------------------------------------------------------------------------- HF layout


# Per-layer tensors: part -> (HF name, GGUF name); which parts a config has is ``_layer_parts``.
_PARTS = {
  "attention_norm": ("input_layernorm.weight", "attn_norm.weight"),
  "mlp_norm": ("post_attention_layernorm.weight", "ffn_norm.weight"),
  "post_attention_norm": ("post_attention_layernorm.weight", "post_attention_norm.weight"),
  "post_mlp_norm": ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
  "q": ("self_attn.q_proj.weight", "attn_q.weight"),
  "k": ("self_attn.k_proj.weight", "attn_k.weight"),
  "v": ("self_attn.v_proj.weight", "attn_v.weight"),
  "o": ("self_attn.o_proj.weight", "attn_output.weight"),
  "q_bias": ("self_attn.q_proj.bias", "attn_q.bias"),
  "k_bias": ("self_attn.k_proj.bias", "attn_k.bias"),
  "v_bias": ("self_attn.v_proj.bias", "attn_v.bias"),
  "gate": ("mlp.gate_proj.weight", "ffn_gate.weight"),
  "up": ("mlp.up_proj.weight", "ffn_up.weight"),
  "down": ("mlp.down_proj.weight", "ffn_down.weight"),
}
_NORMS = ("attention_norm", "mlp_norm", "post_attention_norm", "post_mlp_norm")


def _layer_parts(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
  """The per-layer parts ``cfg`` has and their torch-layout shapes."""
  d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.resolved_head_dim
  qd, kd = cfg.num_heads * hd, cfg.num_kv_heads * hd
  parts = {
    "attention_norm": (d,),
    "mlp_norm": (d,),
    "q": (qd, d),
    "k": (kd, d),
    "v": (kd, d),
    "o": (d, qd),
    "gate": (f, d),
    "up": (f, d),
    "down": (d, f),
  }
  if cfg.attention_bias:
    parts.update(q_bias=(qd,), k_bias=(kd,), v_bias=(kd,))
  if cfg.sandwich_norms:
    parts.update(post_attention_norm=(d,), post_mlp_norm=(d,))
  return parts


def _hf_part_name(cfg: LlamaConfig, part: str) -> str:
  if part == "mlp_norm" and cfg.sandwich_norms:  # Gemma 2: post_attention_layernorm is the attention output's norm
    return "pre_feedforward_layernorm.weight"
  return _PARTS[part][0]


def hf_tensor_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
  """The HF ``*ForCausalLM`` state-dict names and shapes (torch [out, in] layout) ``cfg`` implies."""
  v, d = cfg.vocab_size, cfg.hidden_size
  shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
  for i in range(cfg.num_layers):
    shapes.update({f"model.layers.{i}.{_hf_part_name(cfg, part)}": shape for part, shape in _layer_parts(cfg).items()})
  if not cfg.tie_word_embeddings:
    shapes["lm_head.weight"] = (v, d)
  return shapes


def params_from_hf(cfg: LlamaConfig, tensors: Mapping[str, np.ndarray], *, source: str) -> dict[str, Any]:
  """Checks an HF state dict (numpy, torch layout) against ``cfg`` and converts it to the Flax param tree.

  Ignored: ``rotary_emb.inv_freq`` buffers (recomputed), and ``lm_head.weight`` of a tied model when it equals
  the embedding. Raises CheckpointError listing missing / unexpected / mis-shaped tensor names.
  """
  tensors = {k: v for k, v in tensors.items() if not k.endswith("rotary_emb.inv_freq")}
  if cfg.tie_word_embeddings and "lm_head.weight" in tensors and "model.embed_tokens.weight" in tensors:
    if np.array_equal(np.asarray(tensors["lm_head.weight"]), np.asarray(tensors["model.embed_tokens.weight"])):
      tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
  check_tree(_shapes(hf_tensor_shapes(cfg)), tensors, source=source)
  return _to_tree(
    cfg,
    lambda name: tensors[name],
    {
      "embed": "model.embed_tokens.weight",
      "norm": "model.norm.weight",
      "lm_head": "lm_head.weight",
      "layer": lambda i, part: f"model.layers.{i}.{_hf_part_name(cfg, part)}",
    },
  )


def hf_state_dict(cfg: LlamaConfig, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of ``params_from_hf``: float32 numpy tensors under HF names/layout of ``cfg.family``
  (e.g. to run the same weights in transformers, or to export a trained model with ``safetensors``)."""
  d, hd = cfg.hidden_size, cfg.resolved_head_dim

  def a(x):
    return np.asarray(x, dtype=np.float32)

  out = {
    "model.embed_tokens.weight": a(params["token_embed"]["embedding"]),
    "model.norm.weight": a(params["final_norm"]["scale"]),
  }
  for i in range(cfg.num_layers):
    layer, p = params[f"layers_{i}"], f"model.layers.{i}."
    attn, mlp = layer["attention"], layer["mlp"]
    value = {
      "q": a(attn["query"]).reshape(d, -1).T,
      "k": a(attn["key"]).reshape(d, -1).T,
      "v": a(attn["value"]).reshape(d, -1).T,
      "o": a(attn["out"]).reshape(cfg.num_heads * hd, d).T,
      "gate": a(mlp["gate"]).T,
      "up": a(mlp["up"]).T,
      "down": a(mlp["down"]).T,
    }
    for part in _layer_parts(cfg):
      if part in _NORMS:
        value[part] = a(layer[part]["scale"])
      elif part.endswith("_bias"):
        value[part] = a(attn[{"q_bias": "query_bias", "k_bias": "key_bias", "v_bias": "value_bias"}[part]])
        value[part] = value[part].reshape(-1)
      out[p + _hf_part_name(cfg, part)] = np.ascontiguousarray(value[part])
  if not cfg.tie_word_embeddings:
    out["lm_head.weight"] = a(params["lm_head"]["kernel"]).T.copy()
  return out


def _to_tree(cfg: LlamaConfig, get: Callable[[str], np.ndarray], names: Mapping[str, Any]) -> dict[str, Any]:
  """Builds the Flax tree from torch-layout [out, in] matrices fetched by checkpoint name."""
  dt = _np_dtype(cfg.param_dtype)
  d, hd, h, k = cfg.hidden_size, cfg.resolved_head_dim, cfg.num_heads, cfg.num_kv_heads
  convert = {
    "q": lambda w: w.T.reshape(d, h, hd),
    "k": lambda w: w.T.reshape(d, k, hd),
    "v": lambda w: w.T.reshape(d, k, hd),
    "o": lambda w: w.T.reshape(h, hd, d),
    "q_bias": lambda w: w.reshape(h, hd),
    "k_bias": lambda w: w.reshape(k, hd),
    "v_bias": lambda w: w.reshape(k, hd),
    "gate": np.transpose,
    "up": np.transpose,
    "down": np.transpose,
  }
  where = {
    "q": ("attention", "query"),
    "k": ("attention", "key"),
    "v": ("attention", "value"),
    "o": ("attention", "out"),
    "q_bias": ("attention", "query_bias"),
    "k_bias": ("attention", "key_bias"),
    "v_bias": ("attention", "value_bias"),
    "gate": ("mlp", "gate"),
    "up": ("mlp", "up"),
    "down": ("mlp", "down"),
    **{n: (n, "scale") for n in _NORMS},
  }

  def arr(name):
    return np.asarray(get(name), dtype=np.float32)

  def cast(x):
    return np.ascontiguousarray(x).astype(dt)

  layer = names["layer"]
  tree: dict[str, Any] = {
    "token_embed": {"embedding": cast(arr(names["embed"]))},
    "final_norm": {"scale": cast(arr(names["norm"]))},
  }
  for i in range(cfg.num_layers):
    node: dict[str, Any] = {}
    for part in _layer_parts(cfg):
      module, leaf = where[part]
      node.setdefault(module, {})[leaf] = cast(convert.get(part, lambda w: w)(arr(layer(i, part))))
    tree[f"layers_{i}"] = node
  if not cfg.tie_word_embeddings:
    tree["lm_head"] = {"kernel": cast(arr(names["lm_head"]).T)}
  return tree


def _np_dtype(name: str):
  if name == "bfloat16":
    import ml_dtypes  # ships with jax

    return ml_dtypes.bfloat16
  return np.dtype(name)


def read_safetensors(directory: Path) -> dict[str, np.ndarray]:
  """All tensors of ``model.safetensors`` or of the shards named by ``model.safetensors.index.json``."""
  from safetensors import safe_open

  index = directory / "model.safetensors.index.json"
  if index.exists():
    weight_map = json.loads(index.read_text()).get("weight_map", {})
    files = sorted(set(weight_map.values()))
  elif (directory / "model.safetensors").exists():
    files = ["model.safetensors"]
  else:
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {str(directory)!r}")
  out: dict[str, np.ndarray] = {}
  for name in files:
    file = directory / name
    if not file.exists():
      raise FileNotFoundError(f"safetensors shard {str(file)!r} (listed in the index) does not exist")
    with safe_open(str(file), framework="flax") as f:  # "flax" reads bf16 too (numpy cannot)
      for key in f.keys():
        out[key] = np.asarray(f.get_tensor(key).astype("float32"))
  return out


def _load_hf(directory: Path, dtype: str, param_dtype: str) -> LoadedModel:
  source = str(directory)
  try:
    hf = json.loads((directory / "config.json").read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"checkpoint {source}: config.json is not valid JSON ({e})") from None
  cfg = config_from_hf(hf, source=source, dtype=dtype, param_dtype=param_dtype)
  params = params_from_hf(cfg, read_safetensors(directory), source=source)
  try:
    from tokensift.core.hf_tokenizer import tokenizer_files

    tokenizer = tokenizer_files(directory)
  except FileNotFoundError:
    tokenizer = None
  return LoadedModel("llama", cfg, Llama(cfg), params, tokenizer, source)


# ------------------------------------------------------------------------------------------------- GGUF


def gguf_tensor_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
  """llama.cpp tensor names and their dequantized numpy shapes (torch [out, in] layout) for ``cfg``."""
  v, d = cfg.vocab_size, cfg.hidden_size
  shapes = {"token_embd.weight": (v, d), "output_norm.weight": (d,)}
  for i in range(cfg.num_layers):
    shapes.update({f"blk.{i}.{_PARTS[part][1]}": shape for part, shape in _layer_parts(cfg).items()})
  if not cfg.tie_word_embeddings:
    shapes["output.weight"] = (v, d)
  return shapes


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Undoes llama.cpp's conversion permutation of Q/K rows (interleaved RoPE pairs -> HF rotate-half halves).

  llama.cpp stores, per head, rows in the order (0, d/2, 1, d/2+1, ...); HF keeps (0, 1, ..., d/2-1, d/2, ...).
  w: [n_heads * head_dim, in] -> same shape.
  """
  rows = w.shape[0]
  half = rows // n_heads // 2
  return w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class _GGUFTensors:
  """Lazy name -> dequantized float32 [out, in] array in HF's convention over a ``gguf.GGUFReader`` (``cfg`` set
  once known)."""

  def __init__(self, reader, cfg: LlamaConfig | None):
    self._by_name = {t.name: t for t in reader.tensors}
    self._cfg = cfg

  def shape(self, name: str) -> tuple[int, ...]:
    t = self._by_name[name]
    return tuple(int(n) for n in reversed(list(t.shape)))  # ne order is [in, out]; numpy is [out, in]

  def __call__(self, name: str) -> np.ndarray:
    from gguf.quants import dequantize

    t = self._by_name[name]
    w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(self.shape(name))
    cfg = self._cfg
    if cfg is None:
      raise RuntimeError(f"GGUF tensor {name!r} read before the model config was known")
    if cfg.family == "llama" and name.endswith("attn_q.weight"):  # only the llama arch is permuted
      w = unpermute_rope_rows(w, cfg.num_heads)
    elif cfg.family == "llama" and name.endswith("attn_k.weight"):
      w = unpermute_rope_rows(w, cfg.num_kv_heads)
    elif cfg.norm_offset_one and name.endswith("norm.weight"):
      w = w - 1.0  # llama.cpp stores Gemma's (1 + w)
    return w


def _gguf_fields(reader) -> dict[str, Any]:
  skip = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges")
  return {k: f.contents() for k, f in reader.fields.items() if k not in skip}


def _load_gguf(path: Path, dtype: str, param_dtype: str) -> LoadedModel:
  import gguf

  source = str(path)
  try:
    reader = gguf.GGUFReader(source)
  except Exception as e:  # noqa: BLE001  (gguf raises ValueError/struct.error/... on corrupt files)
    raise CheckpointError(f"checkpoint {source}: not a readable GGUF file ({type(e).__name__}: {e})") from None
  fields = _gguf_fields(reader)
  tensors = _GGUFTensors(reader, None)
  shapes = {name: tensors.shape(name) for name in tensors._by_name}  # noqa: SLF001
  cfg = config_from_gguf(fields, shapes, source=source, dtype=dtype, param_dtype=param_dtype)
  tensors._cfg = cfg  # noqa: SLF001
  check_tree(_shapes(gguf_tensor_shapes(cfg)), _shapes(shapes), source=source)
  params = _to_tree(
    cfg,
    tensors,
    {
      "embed": "token_embd.weight",
      "norm": "output_norm.weight",
      "lm_head": "output.weight",
      "layer": lambda i, part: f"blk.{i}.{_PARTS[part][1]}",
    },
  )
  tokenizer = None
  if "tokenizer.ggml.model" in reader.fields:  # weights-only GGUF files carry no tokenizer
    from tokensift.core.hf_tokenizer import tokenizer_files

    tokenizer = tokenizer_files(path)
  return LoadedModel("llama", cfg, Llama(cfg), params, tokenizer, source)


class _Shape:
  """A shape-only stand-in for the tree check (so it runs before anything is dequantized)."""

  def __init__(self, shape):
    self.shape = tuple(shape)


def _shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, _Shape]:
  return {k: _Shape(v) for k, v in shapes.items()}
