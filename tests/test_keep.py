"""One keep-k rule (``selection.keep.keep_count``: round half up, at least 1): the rule on its own, then every
selector on the real C4 validation documents (their MiniLM embeddings, a length score, a unigram perplexity) at
every paper rate and several pool sizes, 145 (the report's pool) included, keeping the same number of documents."""

import collections
import json
import math

import numpy as np
import pytest

from tokensift.pipeline import detection as det
from tokensift.selection import perplexity as ppl
from tokensift.selection import samplers, select_job, topk, variants
from tokensift.selection.keep import PAPER_RATES, keep_count
from test_embed_job import c4_documents, c4_embeddings

SIZES = (1, 7, 145, 200)


def test_keep_count_rounds_half_up_and_keeps_at_least_one():
  assert [keep_count(145, r) for r in PAPER_RATES] == [15, 29, 58, 87, 116]  # 14.5 -> 15 (banker's: 14)
  assert [keep_count(1000, r) for r in PAPER_RATES] == [100, 200, 400, 600, 800]
  assert [keep_count(n, 10) for n in (5, 15, 25, 35)] == [1, 2, 3, 4]  # every .5 goes up
  assert keep_count(7, 50) == 4 and keep_count(7, 10) == 1 and keep_count(5, 100) == 5
  assert keep_count(375, 9.2) == 35  # 34.5 exactly; float arithmetic (375 * 9.2 / 100 + 0.5) gives 34
  assert keep_count(3, 10) == 1 and keep_count(1, 10) == 1 and keep_count(0, 10) == 0  # at least 1 when n > 0
  assert keep_count(np.int64(145), np.float32(10)) == 15


@pytest.mark.parametrize("bad", [0, -5, 100.5, float("nan"), float("inf"), "10", True, None])
def test_keep_count_names_a_bad_rate(bad):
  with pytest.raises(
    ValueError,
    match=r"rate " + repr(bad).replace("(", r"\(").replace(")", r"\)") + r" must be a percentage in \(0, 100\]",
  ):
    keep_count(10, bad)


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_keep_count_names_a_bad_count(bad):
  with pytest.raises(ValueError, match=f"n={bad!r} must be an int >= 0"):
    keep_count(bad, 10)


def test_select_config_names_a_bad_rate():
  with pytest.raises(ValueError, match=r"sampling rate 0 must be a percentage"):
    select_job.SelectConfig(rates=(10, 0))
  with pytest.raises(ValueError, match=r"askllm_fraction 150 must be a percentage"):
    select_job.SelectConfig(askllm_fraction=150)


def _unigram_log_ppl(texts: list[str]) -> np.ndarray:
  """Each document's mean token loss under the pool's own unigram model (words): a real perplexity. [n]"""
  words = [t.split() for t in texts]
  counts = collections.Counter(w for ws in words for w in ws)
  total = sum(counts.values())
  return ppl.log_perplexity([[-math.log(counts[w] / total) for w in ws] for ws in words])


def _kept_by_every_selector(n: int, tmp_path) -> dict[str, list[int]]:
  """Selector -> documents kept at each paper rate, on the first ``n`` C4 validation documents."""
  ids, emb = c4_embeddings()
  texts = [d.text for d in c4_documents()]
  assert [d.id for d in c4_documents()] == ids
  ids, emb, texts = ids[:n], emb[:n], texts[:n]
  d = tmp_path / str(n)
  d.mkdir()
  score_file = d / "score-00000-of-00001.jsonl"
  score_file.write_text("".join(json.dumps({"id": i, "score": float(len(t))}) + "\n" for i, t in zip(ids, texts)))
  emb_file = d / "embed-00000-of-00001.jsonl"
  emb_file.write_text("".join(json.dumps({"id": i, "embedding": e.tolist()}) + "\n" for i, e in zip(ids, emb)))
  records = [json.loads(line) for line in score_file.read_text().splitlines()]
  log_ppl = _unigram_log_ppl(texts)
  junk = np.arange(n) % 3 == 0
  kept: dict[str, list[int]] = {
    "askllm_top_k": [len(topk.top_k(records, r).ids) for r in PAPER_RATES],
    "askllm_lists": [k for _, k, _ in topk.write_topk_lists(score_file, PAPER_RATES, out_dir=d / "askllm").values()],
  }
  shares = det.kept_share_by_rate([r["score"] for r in records], junk, PAPER_RATES)
  kept["askllm_evidence"] = [
    round(s["junk_kept"] * junk.sum() + (s["clean_kept"] or 0) * (~junk).sum()) for s in shares
  ]
  for method in samplers.METHODS:  # DENSITY (ips) and its top-k, bottom-k and random baselines
    sel = select_job.select(emb_file, d / method, select_job.SelectConfig(method=method, bandwidth=1.0))
    kept[f"select_{method}"] = [sel.lists[r][1] for r in PAPER_RATES]
    assert [len(variants.read_id_list(sel.lists[r][0])) for r in PAPER_RATES] == kept[f"select_{method}"]
  for mode in ppl.MODES:
    kept[f"perplexity_{mode}"] = [len(ppl.select_indices(log_ppl, r, mode)) for r in PAPER_RATES]
  kept["random_evidence"] = [len(det.random_select(n, r, seed=0)) for r in PAPER_RATES]
  return kept


@pytest.mark.parametrize("n", SIZES)
def test_every_selector_keeps_the_same_k(n, tmp_path):
  kept = _kept_by_every_selector(n, tmp_path)
  want = [keep_count(n, r) for r in PAPER_RATES]
  assert {name: k for name, k in kept.items() if k != want} == {}, want
  if n == 145:
    assert want == [15, 29, 58, 87, 116]


def test_beam_selectors_keep_the_same_k(tmp_path):
  pytest.importorskip("apache_beam")
  from tokensift.selection import beam_select

  ids, emb = c4_embeddings()
  n = 145
  emb_file = tmp_path / "embed-00000-of-00001.jsonl"
  emb_file.write_text("".join(json.dumps({"id": i, "embedding": e.tolist()}) + "\n" for i, e in zip(ids[:n], emb[:n])))
  score_file = tmp_path / "score-00000-of-00001.jsonl"
  score_file.write_text(
    "".join(json.dumps({"id": i, "score": float(len(d.text))}) + "\n" for i, d in zip(ids[:n], c4_documents()))
  )
  summary = beam_select.run_select(emb_file, tmp_path / "density", select_job.SelectConfig(bandwidth=1.0), workers=1)
  written = beam_select.run_topk(score_file, PAPER_RATES, out_dir=tmp_path / "askllm", workers=1)
  want = [keep_count(n, r) for r in PAPER_RATES]
  assert want == [15, 29, 58, 87, 116]
  assert [summary["rates"][f"{r:g}"]["k"] for r in PAPER_RATES] == want
  assert [len(variants.read_id_list(written[r])) for r in PAPER_RATES] == want
