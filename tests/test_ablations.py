"""The ablation data path: compact vocabulary, packing (tokens, reference losses and noise labels stay aligned),
and the unigram level, on hand-made cases; training on the core: runs side by side, and a stopped run resumed
from its checkpoint gives the same curves."""

import math

import numpy as np
import pytest

from tokensift.pipeline import ablation_data as ad
from tokensift.pipeline import ablations as ab


def test_compact_vocab_most_frequent_first_then_oov():
  m = ad.compact_vocab([[50, 7, 7, 9], [7, 9, 123]], max_vocab=5)
  assert m == {7: 3, 9: 4}  # 3 reserved ids (pad, OOV, separator) + the 2 most frequent
  assert ad.compact_vocab([[5, 4], [4, 5]], 10) == {4: 3, 5: 4}  # ties by id


def test_pack_keeps_labels_aligned():
  docs = [
    {"tokens": [10, 11, 12], "ref_losses": [1.0, 2.0, 3.0], "noise": [0, 1, 0]},
    {"tokens": [13, 99], "ref_losses": [4.0, 5.0], "noise": [1, 1]},
  ]
  mapping = {10: 3, 11: 4, 12: 5, 13: 6}
  rows = ad.pack(docs, mapping, seq_len=4)
  # stream: 3 4 5 SEP 6 OOV SEP + padding, rows of 5 overlapping by one (inputs/targets)
  np.testing.assert_array_equal(rows["tokens"], [[3, 4, 5, ad.SEP, 6], [6, ad.OOV, ad.SEP, ad.PAD, ad.PAD]])
  np.testing.assert_array_equal(rows["ref"], [[1, 2, 3, 0, 4], [4, 5, 0, 0, 0]])
  np.testing.assert_array_equal(rows["noise"], [[0, 1, 0, 0, 1], [1, 1, 0, 0, 0]])
  np.testing.assert_array_equal(rows["weight"], [[1, 1, 1, 0, 1], [1, 1, 0, 0, 0]])


def test_unigram_level():
  train = ad.pack([{"tokens": [3, 3, 3, 4], "ref_losses": [0] * 4, "noise": [0] * 4}], {3: 3, 4: 4}, 8)
  val = ad.pack([{"tokens": [3, 4], "ref_losses": [0] * 2, "noise": [0] * 2}], {3: 3, 4: 4}, 8)
  # training targets (everything after the first token): 3 3 4 -> add-one counts over 5 ids: 3 -> 3, 4 -> 2
  p3, p4 = 3 / 8, 2 / 8
  assert ad.unigram_ce(train, val, 5) == pytest.approx(-math.log(p4))  # the one validation target is 4
  assert p3 > p4


def test_config_is_checked():
  with pytest.raises(ValueError, match="unknown"):
    ab.AblationConfig(runs=("clm_everything",))
  with pytest.raises(ValueError, match="seeds=1"):
    ab.AblationConfig(seeds=1)


def test_untied_output_projection_adds_one_hidden_by_vocab_matrix():
  """``tie_embeddings=False`` (the default) gives the ablation models their own [hidden, vocab] output matrix."""
  kw = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1, seq_len=16, steps=40)
  tied = ab.AblationSteps(ab.AblationConfig(tie_embeddings=True, **kw), vocab=64).param_count()
  untied = ab.AblationSteps(ab.AblationConfig(**kw), vocab=64).param_count()
  assert not ab.AblationConfig().tie_embeddings
  assert untied - tied == 16 * 64


def _docs(texts, tokenizer):
  from tokensift.pipeline.evidence_stages import _tokenize

  out = []
  for t in texts:
    ids, noise, ends = _tokenize(tokenizer, t, 24, [])
    out.append({"tokens": ids, "ref_losses": [1.0] * len(ids), "noise": noise, "ends": ends, "text": t[: ends[-1]]})
  return out


def test_runs_in_threads_equal_one_at_a_time_and_record_the_budget(tmp_path):
  """Two runs trained side by side (workers=2) give bit-identical curves to one at a time; the result records
  what each model saw (token positions, epochs per data set) and the setup the report prints."""
  from tokensift.core import docs
  from tokensift.tasks import vocabularies

  tok = vocabularies.smollm2().tokenizer
  inp = docs.DocumentInput(task="c4_en_raw", split="train").validate()
  texts = [d.text for d in docs.documents_only(inp.rows(docs.ShardSpec()), docs.ReadReport())][:24]
  data = {"contaminated": _docs(texts[:16], tok), "random": _docs(texts[:8], tok)}
  val = _docs(texts[16:], tok)
  kw = dict(
    seeds=2,
    hidden_size=16,
    intermediate_size=32,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    seq_len=32,
    batch_size=4,
    steps=4,
    eval_every=2,
    warmup_steps=1,
    max_vocab=128,
    runs=("clm_contaminated", "clm_random"),
  )
  with pytest.raises(ValueError, match="needs each document's 'text'"):
    ab.run_ablations(
      ab.AblationConfig(**kw),
      {"contaminated": [{"tokens": [5], "ref_losses": [1.0], "noise": [0]}]},
      val,
      tmp_path / "bad",
      log=lambda *a: None,
    )
  one = ab.run_ablations(ab.AblationConfig(workers=1, **kw), data, val, tmp_path / "one", log=lambda *a: None)
  two = ab.run_ablations(ab.AblationConfig(workers=2, **kw), data, val, tmp_path / "two", log=lambda *a: None)
  assert list(two["runs"]) == ["clm_contaminated", "clm_random"]
  for name in one["runs"]:
    assert one["runs"][name]["curve"] == two["runs"][name]["curve"]
  b = one["budget"]
  assert b["tokens_seen_per_model"] == 4 * 4 * 32 and b["val_docs"] == 8 and b["params_per_model"] > 128 * 16
  chars = {k: [ad.to_chars(d) for d in v] for k, v in data.items()}  # the default vocabulary: characters
  rows = {n: ad.pack(chars[r["data"]], {}, 32)["tokens"].shape[0] for n, r in one["runs"].items()}
  assert one["runs"]["clm_contaminated"]["tokens"] == sum(len(d["text"]) for d in data["contaminated"])
  assert one["vocab"]["units"] == "characters"
  assert one["vocab"]["in_vocab_ids"] == len({c for d in data["contaminated"] for c in d["text"]}) < 128 - 3
  for name, r in one["runs"].items():
    assert r["epochs"] == pytest.approx(4 * 4 * 32 / r["tokens"])  # positions seen over the data set's units
    assert rows[name] >= 1
    assert np.isfinite(r["final_val_ce"]).all() and len(r["final_val_ce"]) == 2
  assert one["runs"]["clm_random"]["what"] == "a random 50% of the refined pool"
  assert one["settings"]["workers"] == 1 and one["settings"]["vocabulary"] == "chars"
  # what the printed table and the report say about it
  from tokensift.pipeline import evidence_summary
  from tokensift.pipeline.report import ablation_sections as report_ablations

  table = evidence_summary.ablation_table(one)
  assert [r["final_by_seed"] for r in table["rows"]] == [r["final_val_ce"] for r in one["runs"].values()]
  text = evidence_summary.format_evidence(None, table)
  assert "each model: 1 layer, width 16 (untied output)," in text
  assert "nats per unit (characters" in text and f"({b['tokens_seen_per_model']:,} positions seen)" in text
  page = report_ablations.setup_html(one, table)
  assert "Why characters" in page and f"({one['unigram_val_ce']:.3f} nats per character" in page


@pytest.fixture(scope="module")
def c4_char_rows():
  """Packed character rows of C4 train documents (SmolLM2 tokens' unit reference losses spread over their
  characters) and of held-out ones, in the compact vocabulary."""
  from tokensift.core import docs
  from tokensift.tasks import vocabularies

  tok = vocabularies.smollm2().tokenizer
  inp = docs.DocumentInput(task="c4_en_raw", split="train").validate()
  texts = [d.text for d in docs.documents_only(inp.rows(docs.ShardSpec()), docs.ReadReport())][:12]
  train, val = [ad.to_chars(d) for d in _docs(texts[:8], tok)], [ad.to_chars(d) for d in _docs(texts[8:], tok)]
  for k, d in enumerate(train):  # a noise span in every other document, so the SLM counts see both kinds
    d["noise"] = [int(k % 2 == 0 and 5 <= i < 25) for i in range(len(d["tokens"]))]
    d["ref_losses"] = [4.0 if z else r for r, z in zip(d["ref_losses"], d["noise"])]
  mapping = ad.compact_vocab([d["tokens"] for d in train], 64)
  return ad.pack(train, mapping, 16), ad.pack(val, mapping, 16)


def test_a_stopped_run_resumes_from_its_checkpoint_with_the_same_curves(tmp_path, c4_char_rows):
  """An SLM run (2 seeds vmapped, 6 steps, checkpoints at 2, 4, 6) stopped after step 3 and rerun resumes from
  step 2 and logs exactly the losses, validation curves and SLM selection counts of an uninterrupted run; a
  finished run reruns nothing; a directory of a run on other rows is refused."""
  from tokensift.trainer.metrics import read_metrics

  rows, val = c4_char_rows
  cfg = ab.AblationConfig(
    seeds=2,
    hidden_size=16,
    intermediate_size=32,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    seq_len=16,
    batch_size=4,
    steps=6,
    eval_every=2,
    warmup_steps=1,
    max_vocab=64,
  )
  steps = ab.AblationSteps(cfg, vocab=64)
  straight = steps.train("slm", rows, val, [0, 1], tmp_path / "a")
  stopped = steps.train("slm", rows, val, [0, 1], tmp_path / "b", stop_at=3)
  assert [c["step"] for c in stopped["curve"]] == [2] and sorted(
    p.name for p in (tmp_path / "b" / "checkpoints").iterdir() if p.name.isdigit()
  ) == ["2"]
  resumed = steps.train("slm", rows, val, [0, 1], tmp_path / "b")
  assert resumed == straight
  assert read_metrics(tmp_path / "b") == read_metrics(tmp_path / "a")
  assert [r["step"] for r in read_metrics(tmp_path / "a")] == [2, 4, 6]
  assert [c["step"] for c in straight["curve"]] == [2, 4, 6] and len(straight["final_val_ce"]) == 2
  assert straight["final_val_ce"][0] != straight["final_val_ce"][1]  # two seeds, two models
  total = {k: np.sum([w[k] for w in straight["slm_selection"]], axis=0) for k in ab.COUNTS}  # per seed
  assert all(0 < total["noise_tokens"]) and all(total["noise_tokens"] + total["clean_tokens"] <= 6 * 4 * 16)
  selected = (total["noise_selected"] + total["clean_selected"]) / (total["noise_tokens"] + total["clean_tokens"])
  np.testing.assert_allclose(selected, 0.6, atol=0.02)
  # the noise span's high reference losses keep its tokens out of the selection more than clean ones
  assert all(total["noise_selected"] / total["noise_tokens"] < total["clean_selected"] / total["clean_tokens"])
  again = steps.train("slm", rows, val, [0, 1], tmp_path / "a")  # finished: nothing to train
  assert again == straight and read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
  other = {k: v[:-1] for k, v in rows.items()}
  with pytest.raises(ValueError, match="holds a run with settings"):
    steps.train("slm", other, val, [0, 1], tmp_path / "a")


def test_to_chars_spreads_reference_losses_over_characters():
  # "ab" + " cd" + two byte-level pieces of "é" (both end at 6): losses 1, 3, 2 + 4
  doc = {"text": "ab cdé", "ends": [2, 5, 6, 6], "ref_losses": [1.0, 3.0, 2.0, 4.0], "noise": [0, 1, 0, 1]}
  c = ad.to_chars(doc)
  assert c["tokens"] == [ord(x) for x in "ab cdé"]
  np.testing.assert_allclose(c["ref_losses"], [0.5, 0.5, 1.0, 1.0, 1.0, 6.0])
  assert c["noise"] == [0, 0, 1, 1, 1, 1]
  assert sum(c["ref_losses"]) == pytest.approx(sum(doc["ref_losses"]))  # the document's reference NLL
  with pytest.raises(ValueError, match="token ends"):
    ad.to_chars(dict(doc, ends=[2, 5, 6]))


def test_real_tokenizer_offsets_cover_the_text():
  """Token ends from the perplexity stage's tokenizer walk the text without gaps, so to_chars sees every
  character of what the reference model scored (C4 text with non-ASCII characters)."""
  from tokensift.pipeline.evidence_stages import _tokenize
  from tokensift.tasks import vocabularies

  text = "Café au lait — 3€ only! 日本語 too.\nNext line"
  ids, noise, ends = _tokenize(vocabularies.smollm2().tokenizer, text, 10**6, [(5, 12, "x")])
  assert len(ids) == len(noise) == len(ends) and ends[-1] == len(text) and ends == sorted(ends)
  c = ad.to_chars({"text": text, "ends": ends, "ref_losses": [1.0] * len(ids), "noise": noise})
  assert "".join(map(chr, c["tokens"])) == text and sum(c["ref_losses"]) == pytest.approx(len(ids))
  assert all(c["noise"][5:12]) and not any(c["noise"][:4])
