"""Chunk rendering as ProX shows it to its refining model: [NNN] prefixes, greedy packing, the [doc] wrapper."""

import gzip
import json
import re

import pytest

from tokensift.refine import chunks as ck
from tokensift.refine import rules


def test_numbered_lines_format():
  assert ck.numbered_lines("a\n\n b") == ["[000]a", "[001]", "[002] b"]
  assert ck.numbered("x", 7) == "[007]x"
  assert ck.numbered("x", 1234) == "[1234]x"


def test_greedy_packing_by_hand():
  # Whitespace token counts of the numbered lines: "[000]a b" -> 2, etc.
  text = "a b\nc d e\nf\ng h i j k l m n\no p"  # costs 2, 3, 1, 8, 2
  got = ck.pack_chunks(text, ck.whitespace_counter, max_tokens=6)
  assert [(c.first_line, c.last_line, c.tokens) for c in got] == [(0, 2, 6), (3, 3, 8), (4, 4, 2)]
  assert got[0].text == "[000]a b\n[001]c d e\n[002]f"
  assert got[1].text == "[003]g h i j k l m n"  # longer than the budget: stands alone
  assert got[2].text == "[004]o p"  # numbering stays global


def test_long_first_line_and_budget_edges():
  text = "a b c d e f g\nh\ni"  # 7, 1, 1
  got = ck.pack_chunks(text, ck.whitespace_counter, max_tokens=2)
  assert [(c.first_line, c.last_line) for c in got] == [(0, 0), (1, 2)]
  assert [(c.first_line, c.last_line) for c in ck.pack_chunks("a\nb\nc", ck.whitespace_counter, 1)] == [
    (0, 0),
    (1, 1),
    (2, 2),
  ]
  # One extra token per line (ProX counted a BOS with each line).
  assert [
    (c.first_line, c.last_line) for c in ck.pack_chunks("a\nb\nc", ck.whitespace_counter, 4, extra_tokens_per_line=1)
  ] == [(0, 1), (2, 2)]
  assert ck.pack_chunks("", ck.whitespace_counter) == []
  assert len(ck.pack_chunks("\n", ck.whitespace_counter)) == 1  # two empty lines, one chunk
  with pytest.raises(ValueError, match="0"):
    ck.pack_chunks("a", ck.whitespace_counter, 0)


def test_prompts():
  chunk = ck.pack_chunks("x\ny", ck.whitespace_counter)[0]
  assert ck.chunk_prompt(chunk) == "[doc]\n[000]x\n[001]y\n[/doc]"
  assert ck.doc_prompt("raw text") == "raw text"
  assert ck.chat_messages("u") == [{"role": "system", "content": ck.SYSTEM_PROMPT}, {"role": "user", "content": "u"}]
  assert ck.SYSTEM_PROMPT == "You are a helpful, respectful and honest assistant."


def test_real_tokenizer_on_c4_documents(data_dir):
  from tokensift.tasks import vocabularies

  vocab = vocabularies.smollm2()
  count = ck.vocab_counter(vocab)
  assert count(["[000]Hello world"]) == [len(vocab.encode("[000]Hello world"))]
  path = data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz"
  texts = [json.loads(line)["text"] for line in gzip.open(path, "rt")]
  long_docs = sorted(texts, key=len)[-3:]
  for text in long_docs:
    budget = 200
    got = ck.pack_chunks(text, count, budget)
    assert len(got) > 1
    lines = text.split("\n")
    costs = count(ck.numbered_lines(text))
    # Chunks tile the lines in order; each is within budget unless it is one long line; packing is greedy.
    assert [c.first_line for c in got] == [0] + [c.last_line + 1 for c in got[:-1]]
    assert got[-1].last_line == len(lines) - 1
    for k, c in enumerate(got):
      assert c.tokens == sum(costs[c.first_line : c.last_line + 1])
      assert c.tokens <= budget or c.first_line == c.last_line
      if k + 1 < len(got) and c.tokens <= budget:
        assert c.tokens + costs[c.last_line + 1] > budget
      body = [re.sub(r"^\[\d{3,}\]", "", ln) for ln in c.text.split("\n")]
      assert body == lines[c.first_line : c.last_line + 1]
  # The default budget (1500 tokens) keeps a typical C4 document in one chunk.
  assert len(ck.pack_chunks(texts[0], count)) == 1


def test_rule_program_split_per_chunk_runs_like_the_whole(data_dir):
  from tokensift.refine import executor

  body = [f"The sentence number {i} is here &amp; there with the rest." for i in range(30)]
  text = "\n".join(["Home | About | Contact", *body, "Please enable javascript to see comments.", body[3]])
  rp = rules.write_program(text)
  assert rp.rules == ("boilerplate", "html_entity", "javascript", "repeated_line")
  got = ck.pack_chunks(text, ck.whitespace_counter, max_tokens=40)
  per_chunk = rp.chunk_programs(got, text)
  assert len(per_chunk) == len(got) > 2
  whole = executor.execute(text, rp.doc_program, rp.chunk_program)
  joined = executor.execute(text, rp.doc_program, "\n".join(per_chunk))
  assert whole.errors == () and joined.errors == ()
  assert joined.text == whole.text and "&amp;" not in whole.text and "javascript" not in whole.text
