"""HF ``tokenizers`` tokenizers from a ``tokenizer.json`` or from the metadata inside a GGUF file.

A GGUF file (llama.cpp) carries its tokenizer (tokens, merges, special ids) and chat template as metadata.
Converting it to a ``tokenizers.Tokenizer`` is delegated to transformers' GGUF converter (a maintained
implementation of the same format; it needs the ``gguf`` package, not torch). The result is cached as a
``tokenizer.json`` plus a small sidecar, because the conversion takes ~10 s for a 49k-token vocabulary.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from tokensift import paths


@dataclasses.dataclass(frozen=True)
class TokenizerFiles:
  """A tokenizer on disk: ``tokenizer.json`` and its special ids / chat template."""
  tokenizer_json: Path
  bos_id: int | None
  eos_id: int | None
  pad_id: int | None
  chat_template: str | None
  add_bos: bool = False


def _gguf_cache_key(path: Path) -> str:
  st = path.stat()
  return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]


def tokenizer_files(path: str | os.PathLike) -> TokenizerFiles:
  """Resolves a tokenizer from a ``tokenizer.json`` file, a directory holding one, or a ``.gguf`` file.

  Raises FileNotFoundError naming the path when nothing usable is there.
  """
  path = Path(path)
  if path.is_dir():
    tj = path / "tokenizer.json"
    if not tj.exists():
      ggufs = sorted(path.glob("*.gguf"))
      if ggufs:
        return tokenizer_files(ggufs[0])
      raise FileNotFoundError(f"no tokenizer.json or .gguf in directory {str(path)!r}")
    return _from_tokenizer_json(tj)
  if not path.exists():
    raise FileNotFoundError(f"tokenizer file {str(path)!r} does not exist")
  if path.suffix == ".gguf":
    return _from_gguf(path)
  return _from_tokenizer_json(path)


def _from_tokenizer_json(tj: Path) -> TokenizerFiles:
  cfg_path = tj.with_name("tokenizer_config.json")
  cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
  from tokenizers import Tokenizer
  tok = Tokenizer.from_file(str(tj))

  def tid(name):
    value = cfg.get(name)
    if isinstance(value, dict):
      value = value.get("content")
    return tok.token_to_id(value) if isinstance(value, str) else None

  return TokenizerFiles(tj, tid("bos_token"), tid("eos_token"), tid("pad_token"), cfg.get("chat_template"),
                        bool(cfg.get("add_bos_token", False)))


def _from_gguf(path: Path) -> TokenizerFiles:
  out = paths.cache_dir() / "tokenizers" / _gguf_cache_key(path)
  tj, side = out / "tokenizer.json", out / "special.json"
  if not (tj.exists() and side.exists()):
    from transformers import AutoTokenizer  # tokenizer conversion only; no torch involved
    hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tokenizer.json.{os.getpid()}"
    hf.backend_tokenizer.save(str(tmp))
    os.replace(tmp, tj)
    import gguf
    reader = gguf.GGUFReader(str(path))

    def field(name):
      f = reader.fields.get(name)
      return None if f is None else f.contents()

    meta = {"bos_id": field("tokenizer.ggml.bos_token_id"), "eos_id": field("tokenizer.ggml.eos_token_id"),
            "pad_id": field("tokenizer.ggml.padding_token_id"), "chat_template": field("tokenizer.chat_template"),
            "add_bos": bool(field("tokenizer.ggml.add_bos_token") or False)}
    tmp = out / f".special.json.{os.getpid()}"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, side)
  meta = json.loads(side.read_text())
  return TokenizerFiles(tj, meta["bos_id"], meta["eos_id"], meta["pad_id"], meta["chat_template"],
                        meta.get("add_bos", False))


def render_chat(files: TokenizerFiles, user_message: str, *, add_generation_prompt: bool = True) -> str:
  """The model's chat template applied to one user turn (text, not ids)."""
  if not files.chat_template:
    raise ValueError(f"tokenizer {str(files.tokenizer_json)!r} has no chat template")
  from transformers import PreTrainedTokenizerFast
  hf = PreTrainedTokenizerFast(tokenizer_file=str(files.tokenizer_json))
  return hf.apply_chat_template([{"role": "user", "content": user_message}], chat_template=files.chat_template,
                                tokenize=False, add_generation_prompt=add_generation_prompt)
