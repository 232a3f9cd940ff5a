"""HF ``tokenizers`` tokenizers from a ``tokenizer.json`` or from the metadata inside a GGUF file.

A GGUF file (llama.cpp) carries its tokenizer (tokens, merges, token types, special ids) and chat template as
metadata. Byte-level BPE GGUF tokenizers (``tokenizer.ggml.model == "gpt2"``: SmolLM2, Llama 3, Qwen) are
rebuilt here with the ``tokenizers`` library; other GGUF tokenizer models fall back to transformers' converter,
which imports torch (so it is unavailable where torch is not installed). The result is cached as a
``tokenizer.json`` plus a small sidecar.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from tokensift.core import paths


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

  return TokenizerFiles(
    tj,
    tid("bos_token"),
    tid("eos_token"),
    tid("pad_token"),
    _chat_template(tj.parent, cfg),
    bool(cfg.get("add_bos_token", False)),
  )


def _chat_template(directory: Path, cfg: dict) -> str | None:
  """The checkpoint's chat template: ``chat_template.jinja`` (written by transformers since 4.43 and always by 5,
  and taking precedence there), else ``tokenizer_config.json``'s ``chat_template``, a string or a list of
  ``{"name", "template"}`` of which the ``"default"`` one is used."""
  jinja = directory / "chat_template.jinja"
  if jinja.exists():
    return jinja.read_text()
  template = cfg.get("chat_template")
  if isinstance(template, list):
    named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
    template = named.get("default")
  return template if isinstance(template, str) else None


def _from_gguf(path: Path) -> TokenizerFiles:
  out = paths.cache_dir() / "tokenizers" / _gguf_cache_key(path)
  tj, side = out / "tokenizer.json", out / "special.json"
  if not (tj.exists() and side.exists()):
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(name):
      f = reader.fields.get(name)
      return None if f is None else f.contents()

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tokenizer.json.{os.getpid()}"
    kind = field("tokenizer.ggml.model")
    if kind == "gpt2":
      byte_level_bpe_from_gguf(field).save(str(tmp))
    else:
      try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
      except ImportError as e:
        raise ValueError(
          f"GGUF tokenizer model {kind!r} in {str(path)!r} needs transformers' converter, "
          f"which failed to import ({e}); export a tokenizer.json instead"
        ) from e
      hf.backend_tokenizer.save(str(tmp))
    os.replace(tmp, tj)

    meta = {
      "bos_id": field("tokenizer.ggml.bos_token_id"),
      "eos_id": field("tokenizer.ggml.eos_token_id"),
      "pad_id": field("tokenizer.ggml.padding_token_id"),
      "chat_template": field("tokenizer.chat_template"),
      "add_bos": bool(field("tokenizer.ggml.add_bos_token") or False),
    }
    tmp = out / f".special.json.{os.getpid()}"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, side)
  meta = json.loads(side.read_text())
  return TokenizerFiles(
    tj, meta["bos_id"], meta["eos_id"], meta["pad_id"], meta["chat_template"], meta.get("add_bos", False)
  )


GGUF_TOKEN_CONTROL, GGUF_TOKEN_USER_DEFINED = 3, 4  # llama.cpp token types that are special, not BPE pieces


def byte_level_bpe_from_gguf(field):
  """A ``tokenizers.Tokenizer`` for a GGUF byte-level BPE vocabulary (``tokenizer.ggml.model == "gpt2"``).

  ``field(name)`` returns a GGUF metadata value. Pieces are byte-level (GPT-2 alphabet), merges are
  ``"a b"`` strings, control / user-defined tokens become added special tokens.
  """
  from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

  tokens = list(field("tokenizer.ggml.tokens"))
  types = list(field("tokenizer.ggml.token_type") or [1] * len(tokens))
  merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]
  vocab = {t: i for i, t in enumerate(tokens)}
  tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
  prefix = bool(field("tokenizer.ggml.add_space_prefix") or False)
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix, use_regex=True)
  tok.decoder = decoders.ByteLevel()
  special = [
    AddedToken(tokens[i], special=True, normalized=False)
    for i, t in enumerate(types)
    if t in (GGUF_TOKEN_CONTROL, GGUF_TOKEN_USER_DEFINED)
  ]
  tok.add_special_tokens(special)
  return tok


def render_chat(files: TokenizerFiles, user_message: str, *, add_generation_prompt: bool = True) -> str:
  """The model's chat template applied to one user turn (text, not ids)."""
  if not files.chat_template:
    raise ValueError(f"tokenizer {str(files.tokenizer_json)!r} has no chat template")
  hf = chat_tokenizer(files)
  text = hf.apply_chat_template(
    [{"role": "user", "content": user_message}],
    chat_template=files.chat_template,
    tokenize=False,
    add_generation_prompt=add_generation_prompt,
  )
  return text  # pyright: ignore[reportReturnType]  (tokenize=False: the text)


def chat_tokenizer(files: TokenizerFiles):
  """A transformers ``PreTrainedTokenizerFast`` for chat-template rendering, with the checkpoint's BOS/EOS tokens
  set: templates write ``{{ bos_token }}`` (Gemma, Mistral, Llama 3) or ``{{ eos_token }}``."""
  from tokenizers import Tokenizer
  from transformers import PreTrainedTokenizerFast

  tok = Tokenizer.from_file(str(files.tokenizer_json))
  special = {
    name: tok.id_to_token(i) for name, i in (("bos_token", files.bos_id), ("eos_token", files.eos_id)) if i is not None
  }
  return PreTrainedTokenizerFast(tokenizer_object=tok, **special)
