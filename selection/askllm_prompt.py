"""The ASK-LLM prompt (DESIGN §4, verbatim from the paper) and its token-accurate truncation.

The document is cut, by tokens of the scorer's own tokenizer, so that the whole model input (chat template +
prompt + template suffix, plus BOS/EOS where the model takes them) fits ``max_length``; the question and the
options are never cut. The cut is token-accurate: the returned ids are exactly the tokenization of the returned
text, and ``len(ids) <= max_length`` always holds. The kept text is a prefix of the document (cut at a token
boundary of the document's own tokenization, found from the tokenizer's character/byte offsets).

Two input layouts:
- decoder-only instruct models: ``chat_prefix + prompt + chat_suffix`` where prefix/suffix come from the
  model's chat template rendered around one user turn with the generation prompt (``ChatFormat``), optionally
  preceded by BOS; the next-token distribution after the last id is read.
- encoder-decoder (FLAN-T5): ``prompt`` + EOS as the encoder input (as HF's T5 tokenizer adds ``</s>``).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Protocol, Sequence

PROMPT_TEMPLATE = (
  "###\n"
  "{example}\n"
  "###\n"
  "Does the previous paragraph demarcated within ### and ### contain informative signal for pre-training a "
  "large-language model? An informative datapoint should be well-formatted, contain some usable knowledge of "
  "the world, and strictly NOT have any harmful, racist, sexist, etc. content.\n"
  "OPTIONS:\n"
  "- yes\n"
  "- no"
)

# Spellings whose probabilities the optional variant sums add up. A spelling counts only when the scorer's
# tokenizer encodes it as ONE token (multi-token spellings have no single first-position probability); ids
# are de-duplicated (SentencePiece maps "yes" and " yes" to the same "▁yes").
YES_SPELLINGS = ("yes", "Yes", "YES", " yes", " Yes", " YES")
NO_SPELLINGS = ("no", "No", "NO", " no", " No", " NO")


def build_prompt(example: str) -> str:
  """The paper's prompt around ``example`` (plain substitution: braces in documents are kept as they are)."""
  return PROMPT_TEMPLATE.replace("{example}", example)


class PromptTokenizer(Protocol):
  """What truncation needs from a tokenizer (adapters: ``HFPromptTokenizer``, ``SentencePiecePromptTokenizer``)."""

  @property
  def bos_id(self) -> int | None: ...

  @property
  def eos_id(self) -> int | None: ...

  def encode(self, text: str) -> list[int]:
    """Ids of ``text`` without special tokens added (special-token strings inside ``text`` still map)."""
    ...

  def encode_with_starts(self, text: str) -> tuple[list[int], list[int]]:
    """Ids and, per id, the character index in ``text`` where that token starts."""
    ...

  def decode(self, ids: Sequence[int]) -> str: ...


class HFPromptTokenizer:
  """An HF ``tokenizers.Tokenizer`` (tokenizer.json, or converted from a GGUF)."""

  def __init__(self, tokenizer, *, bos_id: int | None = None, eos_id: int | None = None):
    self.tokenizer = tokenizer
    self.bos_id, self.eos_id = bos_id, eos_id

  @classmethod
  def from_files(cls, files) -> "HFPromptTokenizer":
    """From ``tokensift.core.hf_tokenizer.TokenizerFiles``."""
    from tokenizers import Tokenizer

    return cls(Tokenizer.from_file(str(files.tokenizer_json)), bos_id=files.bos_id, eos_id=files.eos_id)

  def encode(self, text: str) -> list[int]:
    return self.tokenizer.encode(text, add_special_tokens=False).ids

  def encode_with_starts(self, text: str) -> tuple[list[int], list[int]]:
    enc = self.tokenizer.encode(text, add_special_tokens=False)
    return enc.ids, [start for start, _ in enc.offsets]

  def decode(self, ids: Sequence[int]) -> str:
    return self.tokenizer.decode(list(ids), skip_special_tokens=False)


class SentencePiecePromptTokenizer:
  """A SentencePiece model (T5 / FLAN-T5 vocabularies), e.g. ``seqio.SentencePieceVocabulary.tokenizer``."""

  def __init__(self, processor):
    self.sp = processor
    self.bos_id = None  # T5 inputs carry no BOS
    self.eos_id = int(processor.eos_id())

  @classmethod
  def from_file(cls, path: str) -> "SentencePiecePromptTokenizer":
    import sentencepiece as spm

    return cls(spm.SentencePieceProcessor(model_file=str(path)))  # pyright: ignore[reportCallIssue]  (sentencepiece's generated signature)

  def encode(self, text: str) -> list[int]:
    return list(self.sp.encode(text))

  def encode_with_starts(self, text: str) -> tuple[list[int], list[int]]:
    # (encode(return_type="proto") needs sentencepiece >= 0.2.2, which Beam's protobuf pin excludes)
    proto = self.sp.encode_as_immutable_proto(text)  # keep it alive: its pieces point into it
    pieces = list(proto.pieces)
    raw = text.encode("utf-8")
    if len(raw) == len(text) or max((p.end for p in pieces), default=0) != len(raw):
      # character offsets (sentencepiece 0.2.x's immutable proto), or ASCII text (bytes are characters)
      return [p.id for p in pieces], [p.begin for p in pieces]
    # byte offsets: char_of_byte[b] = number of characters starting before byte b (UTF-8 lead bytes in raw[:b])
    char_of_byte, c = [], 0
    for b in range(len(raw) + 1):
      char_of_byte.append(c)
      if b < len(raw) and (raw[b] & 0xC0) != 0x80:
        c += 1
    return [p.id for p in pieces], [char_of_byte[p.begin] for p in pieces]

  def decode(self, ids: Sequence[int]) -> str:
    return self.sp.decode(list(ids))


@dataclasses.dataclass(frozen=True)
class ChatFormat:
  """How the prompt becomes model input: text around it, BOS/EOS, and the context length."""

  max_length: int
  chat_prefix: str = ""
  chat_suffix: str = ""
  add_bos: bool = False
  append_eos: bool = False

  def __post_init__(self):
    if self.max_length < 8:
      raise ValueError(f"max_length={self.max_length} is too small for an ASK-LLM prompt")


SENTINEL = "\u0000ASKLLM_DOCUMENT\u0000"


def chat_format_from_template(render, max_length: int, *, add_bos: bool = False) -> ChatFormat:
  """A ``ChatFormat`` from ``render(user_message) -> text`` (the model's chat template with the generation
  prompt, e.g. ``functools.partial(tokensift.core.hf_tokenizer.render_chat, files)``).

  The template is rendered once around a sentinel and split; ``render`` must place the message verbatim
  exactly once (checked), which every template that does not rewrite the message text satisfies.
  """
  text = render(SENTINEL)
  if text.count(SENTINEL) != 1:
    raise ValueError("the chat template does not contain the user message exactly once; cannot split it")
  prefix, suffix = text.split(SENTINEL)
  probe = build_prompt("probe document")
  if render(probe) != prefix + probe + suffix:
    raise ValueError(
      "the chat template rewrites the user message (e.g. trims it); it cannot be split into a fixed prefix and suffix"
    )
  return ChatFormat(max_length=max_length, chat_prefix=prefix, chat_suffix=suffix, add_bos=add_bos)


@dataclasses.dataclass(frozen=True)
class PromptIds:
  """One model input: ``ids`` (len <= max_length), the document text actually used, and whether it was cut."""

  ids: list[int]
  text: str
  truncated: bool


def _full_ids(text: str, tok: PromptTokenizer, fmt: ChatFormat) -> list[int]:
  ids = tok.encode(fmt.chat_prefix + build_prompt(text) + fmt.chat_suffix)
  if fmt.add_bos:
    if tok.bos_id is None:
      raise ValueError("ChatFormat.add_bos is set but the tokenizer has no BOS id")
    if not ids or ids[0] != tok.bos_id:
      ids = [tok.bos_id] + ids
  if fmt.append_eos:
    if tok.eos_id is None:
      raise ValueError("ChatFormat.append_eos is set but the tokenizer has no EOS id")
    ids = ids + [tok.eos_id]
  return ids


def overhead_tokens(tok: PromptTokenizer, fmt: ChatFormat) -> int:
  """Tokens the input takes with an empty document (template, question, options, BOS/EOS)."""
  try:
    per_tok = _OVERHEAD.setdefault(tok, {})
  except TypeError:  # a tokenizer object that cannot be weakly referenced: no cache
    per_tok = {}
  if fmt not in per_tok:
    per_tok[fmt] = len(_full_ids("", tok, fmt))
  return per_tok[fmt]


_OVERHEAD: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


# A first cut of long documents before tokenizing them, in characters per token of budget; doubled until
# the cut holds more tokens than the budget (so 10 MB documents are never tokenized whole).
_CHARS_PER_TOKEN_GUESS = 16


def prompt_ids(document: str, tok: PromptTokenizer, fmt: ChatFormat) -> PromptIds:
  """Token-accurate truncated model input for ``document``; see the module docstring.

  Raises ValueError when ``fmt.max_length`` cannot hold the prompt with at least one document token.
  """
  overhead = overhead_tokens(tok, fmt)
  budget = fmt.max_length - overhead
  if budget < 1:
    raise ValueError(
      f"max_length={fmt.max_length} leaves no room for the document: the prompt, options and "
      f"chat template alone take {overhead} tokens"
    )
  cut = budget * _CHARS_PER_TOKEN_GUESS
  while True:
    head = document[:cut]
    doc_ids, starts = tok.encode_with_starts(head)
    if len(doc_ids) > budget or cut >= len(document):
      break
    cut *= 2
  complete = cut >= len(document)
  n = min(len(doc_ids), budget)
  while True:
    text = document if (complete and n == len(doc_ids)) else document[: starts[n]]  # n < len(doc_ids) here
    ids = _full_ids(text, tok, fmt)
    if len(ids) <= fmt.max_length:
      break
    n -= max(1, len(ids) - fmt.max_length)
    if n <= 0:
      text, ids = "", _full_ids("", tok, fmt)
      break
  return PromptIds(ids=ids, text=text, truncated=text != document)


def answer_token_ids(tok: PromptTokenizer, spellings: Sequence[str]) -> list[int]:
  """Distinct ids of the spellings that are one token each, in spelling order."""
  out: list[int] = []
  for s in spellings:
    ids = tok.encode(s)
    if len(ids) == 1 and ids[0] not in out:
      out.append(ids[0])
  return out


@dataclasses.dataclass(frozen=True)
class AnswerIds:
  """Token ids read at the first answer position: the primary "yes"/"no" and the variant sets."""

  yes: int
  no: int
  yes_variants: tuple[int, ...]
  no_variants: tuple[int, ...]


def answer_ids(tok: PromptTokenizer) -> AnswerIds:
  """Resolves "yes"/"no" (and the spelling variants) to ids of ``tok``.

  The primary ids are those of the bare strings ``"yes"`` and ``"no"``: what follows a generation prompt
  ending in a newline (Llama-style chat templates) and the first decoder piece of FLAN-T5 (``"▁yes"``).
  Raises ValueError naming the pieces when "yes" or "no" is not a single token.
  """
  prim = {}
  for word in ("yes", "no"):
    ids = tok.encode(word)
    if len(ids) != 1:
      raise ValueError(f"{word!r} is {len(ids)} tokens {ids} in this tokenizer; ASK-LLM needs one token")
    prim[word] = ids[0]
  return AnswerIds(
    prim["yes"], prim["no"], tuple(answer_token_ids(tok, YES_SPELLINGS)), tuple(answer_token_ids(tok, NO_SPELLINGS))
  )
