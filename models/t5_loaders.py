"""Checkpoint loaders into ``models.t5`` param trees: HF safetensors, T5X legacy msgpack, T5X tensorstore/orbax.

Formats (``load_t5`` picks by what ``path`` is):
- HF directory: ``config.json`` + ``*.safetensors`` (``T5ForConditionalGeneration``, ``MT5ForConditionalGeneration``,
  ``T5EncoderModel``); torch ``Linear`` weights ``[out, in]`` are transposed, the per-stack relative-attention
  table stored in block 0 moves to ``{encoder,decoder}/relpos_bias``.
- T5X legacy msgpack: a single flax-serialised file (``checkpoint_N``/``checkpoint`` with every array inline),
  tree ``{'optimizer': {'target': params, 'state': ...}}`` or ``{'target': ...}``.
- T5X tensorstore directory (``checkpoint_N/`` with a ``checkpoint`` msgpack whose large leaves are TensorStore
  spec dicts ``{'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': 'target.encoder....'}, ...}`` relative to
  the directory, as ``t5x.checkpoints.Checkpointer`` writes them).
- T5X orbax directory (``checkpoint_N/state/`` or a directory an ``orbax.checkpoint`` PyTree checkpointer wrote).

T5X param names are the ones ``models.t5`` uses; t5x stores attention kernels flattened to 2-D
(``[embed, heads*head_dim]``), which are reshaped here. The config of a T5X checkpoint is inferred from shapes
(``relative_attention_max_distance`` cannot be, and defaults to 128; pass ``config_overrides`` to change it or the
MLP activation).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tokensift.models.bundle import LoadedModel
from tokensift.models.checkpoint_check import CheckpointError, abstract_params, check_tree, flat
from tokensift.models.t5 import T5, T5Config, T5Encoder

_HF_MODEL_TYPES = ("t5", "mt5")
_HF_ARCHITECTURES = (
  "T5ForConditionalGeneration",
  "MT5ForConditionalGeneration",
  "T5EncoderModel",
  "MT5EncoderModel",
  "T5Model",
  "MT5Model",
)


# ----------------------------------------------------------------------------------------------- helpers
def _put(tree: dict, path: str, value) -> None:
  node = tree
  *parents, leaf = path.split("/")
  for p in parents:
    node = node.setdefault(p, {})
  node[leaf] = value


def build_module(config: T5Config, encoder_only: bool = False):
  return T5Encoder(config) if encoder_only else T5(config)


def expected_params(config: T5Config, encoder_only: bool = False) -> Any:
  """Shapes of the param tree a config implies (no compute)."""
  module = build_module(config, encoder_only)
  tokens = np.ones((1, 2), np.int32)
  return abstract_params(module, tokens) if encoder_only else abstract_params(module, tokens, tokens)


def _checked(config: T5Config, params: dict, source: str, encoder_only: bool = False) -> LoadedModel:
  check_tree(expected_params(config, encoder_only), params, source=source)
  dtype = np.dtype(config.param_dtype) if config.param_dtype != "bfloat16" else None
  if dtype is not None:
    import jax

    params = jax.tree.map(lambda x: np.asarray(x, dtype), params)
  return LoadedModel("t5", config, build_module(config, encoder_only), params, None, source)


# ----------------------------------------------------------------------------------------------- HF format
def _major_version(version: Any) -> int | None:
  m = re.match(r"\s*(\d+)\.", str(version)) if version is not None else None
  return int(m.group(1)) if m else None


def hf_scales_decoder_outputs(cfg: Mapping[str, Any], *, separate_lm_head: bool) -> bool:
  """Whether HF multiplies the decoder output by ``d_model**-0.5`` before the vocabulary projection, decided from
  what the checkpoint is (``model_type``, the ``transformers_version`` that wrote it, whether it holds its own
  ``lm_head.weight``), never from a missing field alone.

  - ``t5`` (v1.0, v1.1, FLAN-T5): transformers>=5 writes ``scale_decoder_outputs`` (derived on load from
    ``tie_word_embeddings is not False``, which older versions wrote instead: v1.0 tied and scaled, v1.1/FLAN-T5
    ``false``). With neither field, ``T5Config``'s default (tied, scaled) holds unless the checkpoint carries a
    separate ``lm_head.weight``, i.e. the v1.1 layout.
  - ``mt5``: ``MT5ForConditionalGeneration`` never scales in transformers>=5 (``MT5Config`` forces
    ``tie_word_embeddings=true`` and writes no ``scale_decoder_outputs``); older versions scaled only when the
    config said ``tie_word_embeddings: true`` (``MT5Config``'s default there was false; every Hub mT5 is untied).
    A config without ``transformers_version`` was not written by ``save_pretrained`` of transformers>=5.
  """
  model_type = cfg.get("model_type")
  tie = cfg.get("tie_word_embeddings")
  if model_type == "mt5":
    major = _major_version(cfg.get("transformers_version"))
    if major is not None and major >= 5:
      return False
    return tie is True and not separate_lm_head
  if "scale_decoder_outputs" in cfg and cfg["scale_decoder_outputs"] is not None:
    return bool(cfg["scale_decoder_outputs"])
  if tie is not None:
    return tie is not False
  return not separate_lm_head


def config_from_hf(
  cfg: Mapping[str, Any], *, dtype: str = "float32", source: str = "", tied: bool | None = None
) -> T5Config:
  """HF ``config.json`` dict -> T5Config. CheckpointError for an architecture other than T5/mT5.

  ``tied``: whether the checkpoint has no separate ``lm_head.weight`` (None: trust the config). Output scaling is
  decided by ``hf_scales_decoder_outputs``.
  """
  model_type = cfg.get("model_type")
  archs = cfg.get("architectures") or []
  bad_arch = [a for a in archs if a not in _HF_ARCHITECTURES]
  if model_type not in _HF_MODEL_TYPES or bad_arch:
    hint = (
      " (UMT5 keeps a relative-position table in every layer, which models.t5 does not implement)"
      if model_type == "umt5"
      else ""
    )
    raise CheckpointError(
      f"checkpoint {source} has unknown architecture model_type={model_type!r} "
      f"architectures={archs}; supported: model_type in {_HF_MODEL_TYPES}, "
      f"architectures in {_HF_ARCHITECTURES}{hint}"
    )
  ff = cfg.get("feed_forward_proj", "relu" if model_type == "t5" else "gated-gelu")
  if tied is None:
    tied = cfg.get("tie_word_embeddings", model_type == "t5") is not False
  scale = hf_scales_decoder_outputs(cfg, separate_lm_head=not tied)
  try:
    return T5Config(
      vocab_size=cfg["vocab_size"],
      d_model=cfg["d_model"],
      num_heads=cfg["num_heads"],
      head_dim=cfg["d_kv"],
      d_ff=cfg["d_ff"],
      num_encoder_layers=cfg["num_layers"],
      num_decoder_layers=cfg.get("num_decoder_layers") or cfg["num_layers"],
      relative_attention_num_buckets=cfg.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=cfg.get("relative_attention_max_distance", 128),
      layer_norm_epsilon=cfg.get("layer_norm_epsilon", 1e-6),
      feed_forward_proj=ff,
      tie_word_embeddings=bool(tied),
      scale_decoder_outputs=bool(scale),
      dtype=dtype,
    )
  except KeyError as e:
    raise CheckpointError(f"checkpoint {source}: config.json lacks field {e.args[0]!r}") from None
  except ValueError as e:
    raise CheckpointError(f"checkpoint {source}: {e}") from None


_HF_ATTN = {"q": "query", "k": "key", "v": "value", "o": "out"}
_HF_SUBLAYERS = {
  "encoder": {
    ("0", "SelfAttention"): "attention",
    ("0", "layer_norm"): "pre_attention_layer_norm",
    ("1", "DenseReluDense"): "mlp",
    ("1", "layer_norm"): "pre_mlp_layer_norm",
  },
  "decoder": {
    ("0", "SelfAttention"): "self_attention",
    ("0", "layer_norm"): "pre_self_attention_layer_norm",
    ("1", "EncDecAttention"): "encoder_decoder_attention",
    ("1", "layer_norm"): "pre_cross_attention_layer_norm",
    ("2", "DenseReluDense"): "mlp",
    ("2", "layer_norm"): "pre_mlp_layer_norm",
  },
}
_HF_BLOCK = re.compile(r"(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(\w+)\.(?:(\w+)\.)?weight")


def params_from_hf(state: Mapping[str, np.ndarray], config: T5Config, *, encoder_only: bool = False) -> dict:
  """HF T5 state dict (numpy) -> ``models.t5`` param tree. Unknown tensors are kept under ``unexpected/``
  (so the tree check names them); tied copies (``*.embed_tokens.weight``) are dropped."""
  h, hd, d = config.num_heads, config.head_dim, config.d_model
  tree: dict = {}
  for name, w in state.items():
    w = np.asarray(w)
    if name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
      continue  # tied to shared.weight
    if name == "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight":
      continue  # stale tensor in the original t5-* checkpoints; cross-attention has no position bias (HF ignores it)
    if name == "shared.weight":
      _put(tree, "token_embedder/embedding", w)
    elif name == "lm_head.weight" and not encoder_only:
      if config.tie_word_embeddings:
        _put(tree, f"unexpected/{name}", w)  # tied models must not carry a separate head
      else:
        _put(tree, "decoder/logits_dense/kernel", w.T)
    elif name in ("encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight"):
      stack = name.split(".")[0]
      _put(tree, f"{stack}/{stack}_norm/scale", w)
    elif (m := _HF_BLOCK.fullmatch(name)) and not (encoder_only and m.group(1) == "decoder"):
      stack, block, sub, kind, proj = m.groups()
      target = _HF_SUBLAYERS[stack].get((sub, kind))
      prefix = f"{stack}/layers_{block}/{target}"
      if target is None:
        _put(tree, f"unexpected/{name}", w)
      elif kind == "layer_norm" and proj is None:
        _put(tree, f"{prefix}/scale", w)
      elif kind == "DenseReluDense" and proj in ("wi", "wi_0", "wi_1", "wo"):
        _put(tree, f"{prefix}/{proj}/kernel", w.T)
      elif proj == "relative_attention_bias" and block == "0" and sub == "0":
        _put(tree, f"{stack}/relpos_bias/rel_embedding", w.T)  # [buckets, heads] -> [heads, buckets]
      elif proj in _HF_ATTN and kind.endswith("Attention"):
        k = w.T  # [in, out]
        k = k.reshape(h, hd, d) if proj == "o" else k.reshape(d, h, hd)
        _put(tree, f"{prefix}/{_HF_ATTN[proj]}/kernel", k)
      else:
        _put(tree, f"unexpected/{name}", w)
    else:
      _put(tree, f"unexpected/{name}", w)
  return tree


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file

  files = sorted(path.glob("*.safetensors"))
  if not files:
    raise FileNotFoundError(f"no *.safetensors file in {str(path)!r} (only safetensors checkpoints are read)")
  state: dict[str, np.ndarray] = {}
  for f in files:
    state.update(load_file(str(f)))
  return state


def load_hf_t5(path: str | os.PathLike, dtype: str = "float32") -> LoadedModel:
  """An HF T5/FLAN-T5/mT5 directory -> LoadedModel (``T5``, or ``T5Encoder`` for ``T5EncoderModel``)."""
  path = Path(path)
  raw = json.loads((path / "config.json").read_text())
  state = _read_safetensors(path)
  encoder_only = any(a.endswith("EncoderModel") for a in raw.get("architectures") or [])
  if (
    "lm_head.weight" in state
    and "shared.weight" in state
    and np.array_equal(state["lm_head.weight"], state["shared.weight"])
  ):
    state = {k: v for k, v in state.items() if k != "lm_head.weight"}  # a tied head saved as a copy
  config = config_from_hf(raw, dtype=dtype, source=str(path), tied=encoder_only or "lm_head.weight" not in state)
  params = params_from_hf(state, config, encoder_only=encoder_only)
  loaded = _checked(config, params, str(path), encoder_only)
  tokenizer = None
  if (path / "tokenizer.json").exists():
    from tokensift.core.hf_tokenizer import tokenizer_files

    tokenizer = tokenizer_files(path)
  return dataclasses.replace(loaded, tokenizer=tokenizer)


# ----------------------------------------------------------------------------------------------- T5X formats
def t5x_target(contents: Mapping[str, Any], source: str) -> dict:
  """The params subtree of a restored T5X state dict (``optimizer/target``, ``target`` or ``params``)."""
  node = contents
  if "optimizer" in node and isinstance(node["optimizer"], Mapping):
    node = node["optimizer"]
  for key in ("target", "params"):
    if key in node and isinstance(node[key], Mapping):
      return dict(node[key])
  raise CheckpointError(
    f"checkpoint {source} has no 'target' (or 'optimizer/target', 'params') tree; top-level keys: {sorted(contents)}"
  )


def infer_t5x_config(target: Mapping[str, Any], *, dtype: str = "float32", source: str = "", **overrides) -> T5Config:
  """T5Config from the shapes of a T5X params tree (flattened names ``encoder/layers_0/...``)."""
  f = {k: np.shape(v) for k, v in flat(target).items()}

  def shape(name):
    if name not in f:
      raise CheckpointError(
        f"checkpoint {source}: cannot infer the T5 config, missing tensor {name}; has {sorted(f)[:8]}..."
      )
    return f[name]

  vocab, d_model = shape("token_embedder/embedding")
  heads, buckets = shape("encoder/relpos_bias/rel_embedding")
  q = shape("encoder/layers_0/attention/query/kernel")
  head_dim = q[-1] if len(q) == 3 else q[-1] // heads
  gated = "encoder/layers_0/mlp/wi_0/kernel" in f
  d_ff = shape("encoder/layers_0/mlp/wi_0/kernel" if gated else "encoder/layers_0/mlp/wi/kernel")[-1]
  count = lambda stack: len({k.split("/")[1] for k in f if re.match(rf"{stack}/layers_\d+/", k)})
  values = dict(
    vocab_size=vocab,
    d_model=d_model,
    num_heads=heads,
    head_dim=head_dim,
    d_ff=d_ff,
    num_encoder_layers=count("encoder"),
    num_decoder_layers=count("decoder"),
    relative_attention_num_buckets=buckets,
    feed_forward_proj="gated-gelu" if gated else "relu",
    tie_word_embeddings="decoder/logits_dense/kernel" not in f,
    scale_decoder_outputs=None,
    dtype=dtype,
  )
  values.update(overrides)
  return T5Config(**values)


def params_from_t5x(target: Mapping[str, Any], config: T5Config) -> dict:
  """T5X params tree -> ``models.t5`` tree: 2-D attention kernels reshaped to ``[embed, heads, head_dim]`` /
  ``[heads, head_dim, embed]``; everything else keeps its name (unknown names surface in the tree check)."""
  h, hd = config.num_heads, config.head_dim
  out: dict = {}
  for name, w in flat(target).items():
    w = np.asarray(w)
    parts = name.split("/")
    if (
      len(parts) >= 3
      and parts[-2] in ("query", "key", "value", "out")
      and parts[-1] == "kernel"
      and "attention" in parts[-3]
      and w.ndim == 2
    ):
      w = w.reshape(h, hd, w.shape[-1]) if parts[-2] == "out" else w.reshape(w.shape[0], h, hd)
    _put(out, name, w)
  return out


def _is_ts_spec(x) -> bool:
  return isinstance(x, Mapping) and "driver" in x and ("kvstore" in x or "path" in x or "base" in x)


def _read_ts_leaf(spec: Mapping[str, Any], ckpt_dir: Path):
  import copy

  import tensorstore as ts

  spec = copy.deepcopy(dict(spec))
  node = spec["base"] if spec.get("driver") == "cast" else spec
  kv = node.get("kvstore")
  if isinstance(kv, Mapping) and "path" in kv:  # tensorstore>=0.1.14 layout
    if kv.get("driver") in ("gcs", "gfile"):
      kv = {"driver": "file", "path": kv["path"]}
    node["kvstore"] = {**kv, "path": str(ckpt_dir / kv["path"])}
  elif "path" in node:  # older layout: path at the top level
    node["path"] = str(ckpt_dir / node["path"])
    node.setdefault("kvstore", {"driver": "file"})
  else:
    raise CheckpointError(f"checkpoint {ckpt_dir}: tensorstore spec without a path: {spec}")
  try:
    return np.asarray(ts.open(spec, open=True).result().read().result())
  except Exception as e:  # noqa: BLE001  (tensorstore raises ValueError/RuntimeError variants)
    raise CheckpointError(
      f"checkpoint {ckpt_dir}: cannot read tensor {node.get('kvstore', node).get('path')}: {e}"
    ) from None


def _read_msgpack(file: Path) -> dict:
  from flax import serialization

  try:
    restored = serialization.msgpack_restore(file.read_bytes())
  except Exception as e:  # noqa: BLE001  (msgpack raises several unrelated types)
    raise CheckpointError(f"{str(file)!r} is not a flax msgpack checkpoint: {e}") from None
  if not isinstance(restored, dict):
    raise CheckpointError(f"{str(file)!r} is not a flax msgpack checkpoint: it holds a {type(restored).__name__}")
  return restored


def read_t5x_target(path: str | os.PathLike) -> dict:
  """Params tree (numpy) of a T5X checkpoint: a legacy msgpack file, a tensorstore ``checkpoint_N`` directory
  or an orbax directory."""
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"T5X checkpoint {str(path)!r} does not exist")
  if path.is_file():
    return t5x_target(_read_msgpack(path), str(path))
  if (path / "state").is_dir():  # t5x's OrbaxCheckpointManagerInterface layout: checkpoint_N/state/
    return read_t5x_target(path / "state")
  if (path / "checkpoint").is_file():
    contents = _read_msgpack(path / "checkpoint")
    import jax

    leaves_are_placeholders = any(
      isinstance(v, str) and v.startswith("PLACEHOLDER://") for v in flat(contents).values()
    )
    if not leaves_are_placeholders:
      target = t5x_target(contents, str(path))
      return jax.tree.map(
        lambda x: _read_ts_leaf(x, path) if _is_ts_spec(x) else np.asarray(x), target, is_leaf=_is_ts_spec
      )
  if any((path / m).exists() for m in ("_METADATA", "manifest.ocdbt", "checkpoint", "_CHECKPOINT_METADATA")):
    import orbax.checkpoint as ocp

    try:
      contents = ocp.PyTreeCheckpointer().restore(path.resolve())
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f"orbax cannot restore {str(path)!r}: {e}") from None
    return t5x_target(contents, str(path))
  raise CheckpointError(
    f"{str(path)!r} is not a T5X checkpoint: no 'checkpoint' file, 'state/' dir or orbax metadata in it"
  )


def load_t5x(path: str | os.PathLike, dtype: str = "float32", **config_overrides) -> LoadedModel:
  """A T5X checkpoint (any of the formats above) -> LoadedModel, config inferred from shapes."""
  target = read_t5x_target(path)
  config = infer_t5x_config(target, dtype=dtype, source=str(path), **config_overrides)
  encoder_only = not any(k.startswith("decoder/") for k in flat(target))
  return _checked(config, params_from_t5x(target, config), str(path), encoder_only)


def load_t5(path: str | os.PathLike, dtype: str = "float32", **t5x_config_overrides) -> LoadedModel:
  """Loads a T5 / FLAN-T5 checkpoint: an HF directory (``config.json`` + safetensors), a T5X legacy msgpack
  file, or a T5X tensorstore/orbax checkpoint directory. Raises FileNotFoundError for a missing path and
  CheckpointError (listing the offending tensors) for one that does not fit."""
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"T5 checkpoint {str(path)!r} does not exist")
  if path.is_dir() and (path / "config.json").exists():
    return load_hf_t5(path, dtype)
  return load_t5x(path, dtype, **t5x_config_overrides)
