"""What a ProX refining model sees: numbered chunks, the chunk and doc prompts, the chat messages.

As in GAIR-NLP/ProX ``data_gen/tasks/apply_chunk_refining.py``:
- every line ``i`` of ``text.split("\\n")`` is shown as ``f"[{i:03d}]{line}"`` (3 digits, zero padded, no
  space after ``]``; numbers are global over the document, so line 1000 shows as ``[1000]``);
- lines are packed greedily, in order, into chunks of at most ``max_tokens`` (1500) tokens, counting each
  numbered line on its own; a line that alone exceeds the budget forms a chunk by itself;
- a chunk's lines are joined with ``\\n`` and wrapped as ``[doc]\\n{chunk}\\n[/doc]``;
- doc and chunk prompts are the user turn of a chat with the system prompt ``SYSTEM_PROMPT``; the doc-level
  user turn is the raw document (truncated to ``DOC_PROMPT_TOKENS`` tokens of prompt).

Token counts come from a ``count_tokens(list[str]) -> list[int]`` function; ``vocab_counter(vocab)`` makes one
from a seqio vocabulary (e.g. ``tokensift.tasks.vocabularies.smollm2()``). ProX counted with
``tokenizer.encode(line)``, which for its Llama tokenizer adds a BOS token per line: pass
``extra_tokens_per_line=1`` to reproduce those budgets exactly with a tokenizer that does not add one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

SYSTEM_PROMPT = "You are a helpful, respectful and honest assistant."
CHUNK_TOKENS = 1500
DOC_PROMPT_TOKENS = 2000
LINE_DIGITS = 3

TokenCounter = Callable[[Sequence[str]], Sequence[int]]


@dataclasses.dataclass(frozen=True)
class Chunk:
  """Lines ``first_line..last_line`` (0-based, inclusive, global) rendered with their ``[NNN]`` prefixes."""

  text: str
  first_line: int
  last_line: int
  tokens: int


def numbered(line: str, index: int, digits: int = LINE_DIGITS) -> str:
  """``[007]text``: the line as the refining model sees it."""
  return f"[{index:0{digits}d}]{line}"


def numbered_lines(text: str, digits: int = LINE_DIGITS) -> list[str]:
  return [numbered(line, i, digits) for i, line in enumerate(text.split("\n"))]


def pack_chunks(
  text: str,
  count_tokens: TokenCounter,
  max_tokens: int = CHUNK_TOKENS,
  *,
  digits: int = LINE_DIGITS,
  extra_tokens_per_line: int = 0,
) -> list[Chunk]:
  """Greedy packing of the numbered lines of ``text`` into chunks of at most ``max_tokens`` tokens.

  Returns no chunk for empty text (ProX skips empty documents). Each numbered line costs
  ``count_tokens`` + ``extra_tokens_per_line`` tokens.
  """
  if max_tokens < 1:
    raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
  if not text:
    return []
  lines = numbered_lines(text, digits)
  costs = [int(c) + extra_tokens_per_line for c in count_tokens(lines)]
  if len(costs) != len(lines):
    raise ValueError(f"count_tokens returned {len(costs)} counts for {len(lines)} lines")
  chunks: list[Chunk] = []
  start, total = 0, 0
  for i, cost in enumerate(costs):
    if total + cost <= max_tokens:
      total += cost
      continue
    if i > start:
      chunks.append(Chunk("\n".join(lines[start:i]), start, i - 1, total))
    start, total = i, cost
    if cost > max_tokens:  # a long line stands alone
      chunks.append(Chunk(lines[i], i, i, cost))
      start, total = i + 1, 0
  if start < len(lines):
    chunks.append(Chunk("\n".join(lines[start:]), start, len(lines) - 1, total))
  return chunks


def chunk_prompt(chunk: Chunk | str) -> str:
  """The chunk-level user message: ``[doc]\\n{numbered lines}\\n[/doc]``."""
  body = chunk.text if isinstance(chunk, Chunk) else chunk
  return f"[doc]\n{body}\n[/doc]"


def doc_prompt(text: str) -> str:
  """The doc-level user message: the raw document."""
  return text


def chat_messages(user_message: str, system: str | None = SYSTEM_PROMPT) -> list[dict[str, str]]:
  msgs = [{"role": "system", "content": system}] if system else []
  return msgs + [{"role": "user", "content": user_message}]


def vocab_counter(vocab: Any) -> TokenCounter:
  """A batched token counter over a seqio Vocabulary (HF-tokenizer vocabularies count with Rust batching)."""
  tok = getattr(vocab, "tokenizer", None)
  if tok is not None and hasattr(tok, "encode_batch"):

    def count_hf(lines: Sequence[str]) -> list[int]:
      return [len(e.ids) for e in tok.encode_batch(list(lines), add_special_tokens=False)]

    return count_hf

  def count(lines: Sequence[str]) -> list[int]:
    return [len(vocab.encode(line)) for line in lines]

  return count


def whitespace_counter(lines: Sequence[str]) -> list[int]:
  """Counts whitespace-separated words (a tokenizer-free budget, e.g. for rule programs and tests)."""
  return [len(line.split()) for line in lines]
