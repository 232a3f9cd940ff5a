"""Loaders of Llama-family checkpoints into ``models.llama`` param trees.

Two formats:
- HF directory: ``config.json`` + ``model.safetensors`` (or ``model.safetensors.index.json`` with shards), as
  ``LlamaForCausalLM.save_pretrained`` writes them (``gair-prox/*``, SmolLM2, TinyLlama);
- GGUF file (llama.cpp): tensors dequantized with the ``gguf`` package (``gguf.quants.dequantize``),
  hyper-parameters from the ``llama.*`` metadata, tokenizer and chat template from ``tokenizer.*`` metadata.

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
from tokensift.models.llama import Llama, LlamaConfig

_HF_ARCHITECTURES = ("LlamaForCausalLM",)
_HF_MODEL_TYPES = ("llama",)
_GGUF_ARCHITECTURES = ("llama",)


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
    raise FileNotFoundError(f"{str(path)!r} holds neither config.json (HF) nor exactly one .gguf file "
                            f"(found {[g.name for g in ggufs]})")
  raise CheckpointError(f"{str(path)!r} is neither an HF checkpoint directory nor a .gguf file")


# ----------------------------------------------------------------------------------------------- HF layout


def config_from_hf(hf: Mapping[str, Any], *, source: str = "config.json", dtype: str = "float32",
                   param_dtype: str = "float32") -> LlamaConfig:
  """LlamaConfig from an HF ``config.json`` dict; CheckpointError for architectures/features not supported."""
  archs = list(hf.get("architectures") or [])
  model_type = hf.get("model_type")
  if model_type not in _HF_MODEL_TYPES or (archs and not set(archs) & set(_HF_ARCHITECTURES)):
    raise CheckpointError(f"checkpoint {source}: unknown architecture model_type={model_type!r} "
                          f"architectures={archs}; supported: model_type 'llama' ({', '.join(_HF_ARCHITECTURES)})")
  unsupported = [name for name in ("attention_bias", "mlp_bias") if hf.get(name)]
  if hf.get("hidden_act", "silu") != "silu":
    unsupported.append(f"hidden_act={hf['hidden_act']!r}")
  rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type != "default":
    unsupported.append(f"rope_type={rope_type!r}")
  if unsupported:
    raise CheckpointError(f"checkpoint {source}: unsupported Llama features: {', '.join(unsupported)}")
  theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
  try:
    return LlamaConfig(
        vocab_size=int(hf["vocab_size"]), hidden_size=int(hf["hidden_size"]),
        intermediate_size=int(hf["intermediate_size"]), num_layers=int(hf["num_hidden_layers"]),
        num_heads=int(hf["num_attention_heads"]),
        num_kv_heads=int(hf.get("num_key_value_heads") or hf["num_attention_heads"]),
        head_dim=hf.get("head_dim"), rope_theta=float(theta), rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)), dtype=dtype, param_dtype=param_dtype)
  except KeyError as e:
    raise CheckpointError(f"checkpoint {source}: config.json lacks {e.args[0]!r}") from None


def hf_tensor_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
  """The HF ``LlamaForCausalLM`` state-dict names and shapes (torch [out, in] layout) ``cfg`` implies."""
  d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
  hd = cfg.resolved_head_dim
  shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
  for i in range(cfg.num_layers):
    p = f"model.layers.{i}."
    shapes.update({
        p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
        p + "self_attn.q_proj.weight": (cfg.num_heads * hd, d),
        p + "self_attn.k_proj.weight": (cfg.num_kv_heads * hd, d),
        p + "self_attn.v_proj.weight": (cfg.num_kv_heads * hd, d),
        p + "self_attn.o_proj.weight": (d, cfg.num_heads * hd),
        p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d), p + "mlp.down_proj.weight": (d, f)})
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
  return _to_tree(cfg, lambda name: tensors[name], {
      "embed": "model.embed_tokens.weight", "norm": "model.norm.weight", "lm_head": "lm_head.weight",
      "layer": lambda i, part: f"model.layers.{i}." + {
          "attention_norm": "input_layernorm.weight", "mlp_norm": "post_attention_layernorm.weight",
          "q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight", "v": "self_attn.v_proj.weight",
          "o": "self_attn.o_proj.weight", "gate": "mlp.gate_proj.weight", "up": "mlp.up_proj.weight",
          "down": "mlp.down_proj.weight"}[part]})


def hf_state_dict(cfg: LlamaConfig, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of ``params_from_hf``: float32 numpy tensors under HF ``LlamaForCausalLM`` names/layout
  (e.g. to run the same weights in transformers, or to export a trained model with ``safetensors``)."""
  d, hd = cfg.hidden_size, cfg.resolved_head_dim

  def a(x):
    return np.asarray(x, dtype=np.float32)

  out = {"model.embed_tokens.weight": a(params["token_embed"]["embedding"]),
         "model.norm.weight": a(params["final_norm"]["scale"])}
  for i in range(cfg.num_layers):
    layer, p = params[f"layers_{i}"], f"model.layers.{i}."
    attn, mlp = layer["attention"], layer["mlp"]
    out.update({
        p + "input_layernorm.weight": a(layer["attention_norm"]["scale"]),
        p + "post_attention_layernorm.weight": a(layer["mlp_norm"]["scale"]),
        p + "self_attn.q_proj.weight": a(attn["query"]).reshape(d, -1).T.copy(),
        p + "self_attn.k_proj.weight": a(attn["key"]).reshape(d, -1).T.copy(),
        p + "self_attn.v_proj.weight": a(attn["value"]).reshape(d, -1).T.copy(),
        p + "self_attn.o_proj.weight": a(attn["out"]).reshape(cfg.num_heads * hd, d).T.copy(),
        p + "mlp.gate_proj.weight": a(mlp["gate"]).T.copy(), p + "mlp.up_proj.weight": a(mlp["up"]).T.copy(),
        p + "mlp.down_proj.weight": a(mlp["down"]).T.copy()})
  if not cfg.tie_word_embeddings:
    out["lm_head.weight"] = a(params["lm_head"]["kernel"]).T.copy()
  return out


def hf_config_dict(cfg: LlamaConfig) -> dict[str, Any]:
  """An HF ``config.json`` dict for ``cfg`` (model_type llama)."""
  return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": cfg.vocab_size,
          "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
          "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
          "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.resolved_head_dim, "rope_theta": cfg.rope_theta,
          "rms_norm_eps": cfg.rms_norm_eps, "max_position_embeddings": cfg.max_position_embeddings,
          "tie_word_embeddings": cfg.tie_word_embeddings, "hidden_act": "silu", "attention_bias": False,
          "mlp_bias": False}


def _to_tree(cfg: LlamaConfig, get: Callable[[str], np.ndarray], names: Mapping[str, Any]) -> dict[str, Any]:
  """Builds the Flax tree from torch-layout [out, in] matrices fetched by checkpoint name."""
  dt = _np_dtype(cfg.param_dtype)
  d, hd = cfg.hidden_size, cfg.resolved_head_dim

  def arr(name):
    return np.asarray(get(name), dtype=np.float32)

  def cast(x):
    return np.ascontiguousarray(x).astype(dt)

  layer = names["layer"]
  tree: dict[str, Any] = {"token_embed": {"embedding": cast(arr(names["embed"]))},
                          "final_norm": {"scale": cast(arr(names["norm"]))}}
  for i in range(cfg.num_layers):
    tree[f"layers_{i}"] = {
        "attention_norm": {"scale": cast(arr(layer(i, "attention_norm")))},
        "mlp_norm": {"scale": cast(arr(layer(i, "mlp_norm")))},
        "attention": {
            "query": cast(arr(layer(i, "q")).T.reshape(d, cfg.num_heads, hd)),
            "key": cast(arr(layer(i, "k")).T.reshape(d, cfg.num_kv_heads, hd)),
            "value": cast(arr(layer(i, "v")).T.reshape(d, cfg.num_kv_heads, hd)),
            "out": cast(arr(layer(i, "o")).T.reshape(cfg.num_heads, hd, d))},
        "mlp": {"gate": cast(arr(layer(i, "gate")).T), "up": cast(arr(layer(i, "up")).T),
                "down": cast(arr(layer(i, "down")).T)}}
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
    from tokensift.hf_tokenizer import tokenizer_files
    tokenizer = tokenizer_files(directory)
  except FileNotFoundError:
    tokenizer = None
  return LoadedModel("llama", cfg, Llama(cfg), params, tokenizer, source)


# ------------------------------------------------------------------------------------------------- GGUF


def config_from_gguf(fields: Mapping[str, Any], tensor_shapes: Mapping[str, tuple[int, ...]], *, source: str,
                     dtype: str = "float32", param_dtype: str = "float32") -> LlamaConfig:
  """LlamaConfig from GGUF metadata (``llama.*`` keys); CheckpointError for other architectures."""
  arch = fields.get("general.architecture")
  if arch not in _GGUF_ARCHITECTURES:
    raise CheckpointError(f"checkpoint {source}: unknown architecture general.architecture={arch!r}; "
                          f"supported: {list(_GGUF_ARCHITECTURES)}")
  a = f"{arch}."
  need = [a + k for k in ("embedding_length", "feed_forward_length", "block_count", "attention.head_count")]
  missing = [k for k in need if k not in fields]
  if missing:
    raise CheckpointError(f"checkpoint {source}: GGUF metadata lacks {', '.join(missing)}")
  if fields.get(a + "rope.scaling.type", "none") not in ("none", None):
    raise CheckpointError(f"checkpoint {source}: unsupported {a}rope.scaling.type="
                          f"{fields[a + 'rope.scaling.type']!r}")
  hidden, heads = int(fields[a + "embedding_length"]), int(fields[a + "attention.head_count"])
  vocab = fields.get(a + "vocab_size")
  if vocab is None:
    vocab = tensor_shapes.get("token_embd.weight", (0,))[0]
  head_dim = fields.get(a + "attention.key_length", fields.get(a + "rope.dimension_count"))
  return LlamaConfig(
      vocab_size=int(vocab), hidden_size=hidden, intermediate_size=int(fields[a + "feed_forward_length"]),
      num_layers=int(fields[a + "block_count"]), num_heads=heads,
      num_kv_heads=int(fields.get(a + "attention.head_count_kv", heads)),
      head_dim=None if head_dim is None or int(head_dim) == hidden // heads else int(head_dim),
      rope_theta=float(fields.get(a + "rope.freq_base", 10000.0)),
      rms_norm_eps=float(fields.get(a + "attention.layer_norm_rms_epsilon", 1e-5)),
      max_position_embeddings=int(fields.get(a + "context_length", 2048)),
      tie_word_embeddings="output.weight" not in tensor_shapes, dtype=dtype, param_dtype=param_dtype)


def gguf_tensor_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
  """llama.cpp tensor names and their dequantized numpy shapes (torch [out, in] layout) for ``cfg``."""
  d, f, v, hd = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.resolved_head_dim
  shapes = {"token_embd.weight": (v, d), "output_norm.weight": (d,)}
  for i in range(cfg.num_layers):
    p = f"blk.{i}."
    shapes.update({
        p + "attn_norm.weight": (d,), p + "ffn_norm.weight": (d,),
        p + "attn_q.weight": (cfg.num_heads * hd, d), p + "attn_k.weight": (cfg.num_kv_heads * hd, d),
        p + "attn_v.weight": (cfg.num_kv_heads * hd, d), p + "attn_output.weight": (d, cfg.num_heads * hd),
        p + "ffn_gate.weight": (f, d), p + "ffn_up.weight": (f, d), p + "ffn_down.weight": (d, f)})
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
  """Lazy name -> dequantized float32 [out, in] array over a ``gguf.GGUFReader`` (``cfg`` set once known)."""

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
    if name.endswith("attn_q.weight"):
      w = unpermute_rope_rows(w, self._cfg.num_heads)
    elif name.endswith("attn_k.weight"):
      w = unpermute_rope_rows(w, self._cfg.num_kv_heads)
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
  params = _to_tree(cfg, tensors, {
      "embed": "token_embd.weight", "norm": "output_norm.weight", "lm_head": "output.weight",
      "layer": lambda i, part: f"blk.{i}." + {
          "attention_norm": "attn_norm.weight", "mlp_norm": "ffn_norm.weight", "q": "attn_q.weight",
          "k": "attn_k.weight", "v": "attn_v.weight", "o": "attn_output.weight", "gate": "ffn_gate.weight",
          "up": "ffn_up.weight", "down": "ffn_down.weight"}[part]})
  tokenizer = None
  if "tokenizer.ggml.model" in reader.fields:  # weights-only GGUF files carry no tokenizer
    from tokensift.hf_tokenizer import tokenizer_files
    tokenizer = tokenizer_files(path)
  return LoadedModel("llama", cfg, Llama(cfg), params, tokenizer, source)


class _Shape:
  """A shape-only stand-in for the tree check (so it runs before anything is dequantized)."""

  def __init__(self, shape):
    self.shape = tuple(shape)


def _shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, _Shape]:
  return {k: _Shape(v) for k, v in shapes.items()}
