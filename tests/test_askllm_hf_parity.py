"""Real SmolLM2-135M-Instruct (GGUF): tokensift's P("yes") equals HF transformers' (PyTorch, same GGUF, test
only) for the same chat-templated prompt, on C4 sample documents including ones longer than the context."""

import gzip
import json

import numpy as np
import pytest

from tokensift.core import paths
from tokensift.selection import askllm_prompt as ap
from tokensift.selection import score_job

torch = pytest.importorskip("torch")  # test-only peer; absent on Python 3.12 installs (see docs/install.md)

MAX_LENGTH = 256  # small context: forces truncation cheaply


@pytest.fixture(scope="module")
def c4_docs(data_dir):
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz") as f:
    texts = [json.loads(line)["text"] for line in f][:40]
  by_len = sorted(texts, key=len)
  return [by_len[0], by_len[10], by_len[-1], texts[0]]  # short ones and the longest (far over 256 tokens)


def test_p_yes_matches_hf_transformers(c4_docs):
  cfg = score_job.ScoreJobConfig(max_length=MAX_LENGTH, min_bucket=MAX_LENGTH, max_batch=4)
  scorer = score_job.build_scorer(cfg)
  ours = scorer.score(c4_docs)
  assert ours[2].truncated and not ours[0].truncated

  from transformers import AutoModelForCausalLM, AutoTokenizer

  gguf = paths.smollm2_gguf()
  hf_tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
  hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
  yes, no = hf_tok.encode("yes", add_special_tokens=False), hf_tok.encode("no", add_special_tokens=False)
  assert [yes, no] == [[scorer.answers.yes], [scorer.answers.no]]
  for doc, rec in zip(c4_docs, ours):
    prompt = ap.prompt_ids(doc, scorer.tokenizer, scorer.fmt)
    ids = hf_tok.apply_chat_template(
      [{"role": "user", "content": ap.build_prompt(prompt.text)}], add_generation_prompt=True, tokenize=True
    )
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert ids == prompt.ids and len(ids) == rec.tokens <= MAX_LENGTH  # HF builds the same input
    with torch.no_grad():
      logits = hf(torch.tensor([ids])).logits[0, -1].double()
    logp = torch.log_softmax(logits, -1)
    p_yes = float(logp[yes[0]].exp())
    assert abs(rec.score - p_yes) <= 1e-3, (rec.score, p_yes)
    assert abs(rec.logp_yes - float(logp[yes[0]])) <= 1e-3
    assert abs(rec.logp_no - float(logp[no[0]])) <= 1e-3
    variants = float(torch.logsumexp(logp[list(scorer.answers.yes_variants)], 0))
    assert abs(rec.logp_yes_variants - variants) <= 1e-3
  assert np.ptp([r.score for r in ours]) > 0  # documents get different scores
