"""ASK-LLM prompt: verbatim text, token-accurate truncation on real C4 documents, chat template, answer ids."""

import functools
import gzip
import json
import re
import time

import pytest

from tokensift.core import paths
from tokensift.selection import askllm_prompt as ap
from tokensift.core import hf_tokenizer

EXPECTED = """###
{example}
###
Does the previous paragraph demarcated within ### and ### contain informative signal for pre-training a large-language model? An informative datapoint should be well-formatted, contain some usable knowledge of the world, and strictly NOT have any harmful, racist, sexist, etc. content.
OPTIONS:
- yes
- no"""  # noqa: E501  (the paper's prompt, verbatim)


@pytest.fixture(scope="module")
def c4_docs(data_dir):
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz") as f:
    return [json.loads(line)["text"] for line in f][:150]


@pytest.fixture(scope="module")
def smol():
  files = hf_tokenizer.tokenizer_files(paths.smollm2_gguf())
  return files, ap.HFPromptTokenizer.from_files(files)


def test_prompt_is_verbatim(data_dir):
  assert ap.PROMPT_TEMPLATE == EXPECTED
  design = data_dir.parent / "DESIGN.md"
  if design.exists():  # the spec's code block, character for character
    block = re.search(r"```\n(###\n\{example\}.*?)\n```", design.read_text(), re.S).group(1)
    assert ap.PROMPT_TEMPLATE == block
  doc = "a {example} b {} \\n"
  assert ap.build_prompt(doc) == EXPECTED.replace("{example}", doc, 1)


def test_chat_template_split_matches_render_chat(smol):
  files, _ = smol
  render = functools.partial(hf_tokenizer.render_chat, files)
  fmt = ap.chat_format_from_template(render, 512)
  assert fmt.chat_prefix.endswith("<|im_start|>user\n") and fmt.chat_suffix == "<|im_end|>\n<|im_start|>assistant\n"
  doc = "Some text with <b>html</b> and ünïcode.\n\nSecond paragraph."
  assert fmt.chat_prefix + ap.build_prompt(doc) + fmt.chat_suffix == render(ap.build_prompt(doc))
  with pytest.raises(ValueError, match="exactly once"):
    ap.chat_format_from_template(lambda m: m + m, 512)
  with pytest.raises(ValueError, match="rewrites"):
    ap.chat_format_from_template(lambda m: "<s>" + (m if m == ap.SENTINEL else m.upper()), 512)


def _check_prompt(doc, res, tok, fmt, *, tail):
  assert len(res.ids) <= fmt.max_length
  assert res.ids == ap._full_ids(res.text, tok, fmt)  # exactly the tokenization of the text
  assert doc.startswith(res.text)
  assert res.truncated == (res.text != doc)
  assert tok.decode(res.ids).endswith(tail)  # question and options never cut
  if res.truncated:  # cut to (almost) the full budget, not far below it
    assert len(res.ids) >= fmt.max_length - 3, (len(res.ids), fmt.max_length)
    assert len(res.text) > 0


@pytest.mark.parametrize("max_length", [160, 512])
def test_truncation_smollm2_real_docs(smol, c4_docs, max_length):
  files, tok = smol
  fmt = ap.chat_format_from_template(functools.partial(hf_tokenizer.render_chat, files), max_length)
  results = [ap.prompt_ids(d, tok, fmt) for d in c4_docs]
  n_trunc = sum(r.truncated for r in results)
  assert 0 < n_trunc < len(c4_docs)
  tail = "OPTIONS:\n- yes\n- no<|im_end|>\n<|im_start|>assistant\n"
  for d, r in zip(c4_docs, results):
    _check_prompt(d, r, tok, fmt, tail=tail)
    if not r.truncated:
      assert len(r.ids) == len(tok.encode(fmt.chat_prefix + ap.build_prompt(d) + fmt.chat_suffix))


def test_truncation_sentencepiece_with_eos(data_dir, c4_docs):
  tok = ap.SentencePiecePromptTokenizer.from_file(str(data_dir / "tokenizers/c4-32768.model"))
  fmt = ap.ChatFormat(max_length=200, append_eos=True)
  docs = c4_docs[:60] + ["Ünïcödé — “quotes” 中文字符 " * 200]
  for d in docs:
    r = ap.prompt_ids(d, tok, fmt)
    assert r.ids[-1] == tok.eos_id
    _check_prompt(d, r, tok, fmt, tail="- no")
  ids, starts = tok.encode_with_starts("héllo wörld 中文")
  assert starts == sorted(starts) and starts[0] == 0 and max(starts) < len("héllo wörld 中文")


def test_huge_document_is_cut_fast(smol):
  files, tok = smol
  fmt = ap.chat_format_from_template(functools.partial(hf_tokenizer.render_chat, files), 512)
  doc = ("The quick brown fox jumps over the lazy dog. " * 250_000)[:10_000_000]
  t0 = time.time()
  r = ap.prompt_ids(doc, tok, fmt)
  assert time.time() - t0 < 5.0  # never tokenizes the 10 MB whole
  assert r.truncated and 500 <= len(r.ids) <= 512 and doc.startswith(r.text)
  one_token_chars = "\u00e9" * 5000  # multi-byte characters, several per token or tokens per char
  r = ap.prompt_ids(one_token_chars, tok, fmt)
  assert r.truncated and len(r.ids) <= 512 and one_token_chars.startswith(r.text)


def test_context_too_small_names_the_values(smol):
  _, tok = smol
  with pytest.raises(ValueError, match=r"max_length=40 .* take \d+ tokens"):
    ap.prompt_ids("doc", tok, ap.ChatFormat(max_length=40))
  with pytest.raises(ValueError, match="too small"):
    ap.ChatFormat(max_length=4)


def test_answer_ids(smol, data_dir):
  files, tok = smol
  a = ap.answer_ids(tok)
  assert tok.decode([a.yes]) == "yes" and tok.decode([a.no]) == "no"
  assert a.yes_variants[0] == a.yes and len(set(a.yes_variants)) == len(a.yes_variants) >= 3
  assert {tok.decode([i]) for i in a.yes_variants} >= {"yes", "Yes", " yes", " Yes"}
  sp = ap.SentencePiecePromptTokenizer.from_file(str(data_dir / "tokenizers/c4-32768.model"))
  b = ap.answer_ids(sp)
  assert sp.sp.id_to_piece(b.yes) == "▁yes" and b.yes in b.yes_variants
  assert len(b.yes_variants) == len(set(b.yes_variants))  # "yes" and " yes" are one piece: counted once
