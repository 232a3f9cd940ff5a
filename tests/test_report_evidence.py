"""The report's reading sentences say what their numbers say (hand-made detection figures)."""

from tokensift.pipeline.report import ablation_sections as ra
from tokensift.pipeline.report import evidence_sections as re_
from tokensift.pipeline.report import text as rt


def test_askllm_sentence_names_the_kinds_it_prefers_and_the_yes_no_mass():
  a = {
    "auc_by_junk_kind": {"navigation": 0.85, "random_chars": 0.16},
    "auc_normalised": 0.37,
    "p_yes_clean": 0.059,
    "p_yes_junk": 0.072,
    "yes_no_mass_clean": 0.103,
    "yes_no_mass_junk": 0.12,
  }
  s = re_._askllm_why(a)
  assert "navigation 0.85, random chars 0.16" in s
  assert "It rates random chars above clean text; it ranks navigation below." in s
  assert "0.059 on clean and 0.072 on junk" in s and "only 10% (clean) and 12% (junk)" in s
  assert "AUC 0.37: worse than chance" in s
  assert "mostly does not answer the question" in s
  answered = re_._askllm_why(dict(a, yes_no_mass_clean=0.81, yes_no_mass_junk=0.64))
  assert "only 81% (clean) and 64% (junk) of the next-token probability. The yes/no" in answered
  assert "does not answer" not in answered
  assert re_._askllm_why({}) == ""


def _setup(final_means, unigram):
  st = dict(
    seeds=3,
    num_layers=2,
    hidden_size=64,
    steps=200,
    batch_size=8,
    seq_len=128,
    rate=50.0,
    learning_rate=1e-2,
    warmup_steps=20,
    doc_tokens=192,
  )
  abl = {
    "settings": st,
    "vocab": {"units": "characters"},
    "budget": dict(
      params_per_model=1000,
      tokens_seen_per_model=204800,
      val_tokens=36000,
      val_docs=64,
      positions=204800,
      rule="min(1 epoch of the pool, 2 of the smallest selection)",
      bound="pool",
      regime="data-abundant",
      epochs={"contaminated": 1.0, "random": 1.9},
    ),
    "reference": {
      "kind": "trained",
      "steps": 1000,
      "epochs": 0.93,
      "text": {"docs": 936, "source": "files c4", "pool_overlap": 0, "validation_overlap": 64},
      "final_val_ce": [2.4567],
    },
  }
  rows = [
    {"data": d, "epochs": e, "final_mean": m} for d, e, m in zip(("contaminated", "random"), (1.5, 3.0), final_means)
  ]
  return ra.setup_html(abl, {"rows": rows, "unigram_val_ce": unigram})


def test_setup_sentence_reads_the_runs_settings_and_the_side_of_the_unigram_level():
  s = _setup((2.80, 2.90), 3.245)
  assert (
    "200 steps of 8 × 128 characters (204,800 positions per model: 1.50 epochs of the contaminated pool, "
    "3.00 of a 50% subset)" in s
  )
  assert "the best run ends 0.45 nats below it" in s
  assert "Regime: data-abundant: 204,800 positions per model, fixed by the rule min(1 epoch of the pool" in s
  assert "that is 1.00 epochs of the whole pool, 1.90-1.90 of each selection" in s
  assert "trained for 1000 steps (0.93 epochs) on 936 clean documents (files c4; 0 pool and 64 validation" in s
  assert "validation CE 2.457 nats per character" in s
  assert "the best run ends 0.15 nats above it" in _setup((3.40, 3.50), 3.245)


def test_density_sentence_and_plot(tmp_path):
  det = {
    "density": {
      "rate": 50.0,
      "docs": 149,
      "bandwidth": 0.4387,
      "bandwidth_setting": "median_n",
      "kernel": "gaussian",
      "mean_log_density_dup": 1.9,
      "mean_log_density_other": 0.35,
      "clusters": {
        "0": {"size": 6, "ips": 0.17, "random": 0.5, "select_stage": 0.0},
        "1": {"size": 6, "ips": 0.21, "random": 0.48, "select_stage": 1 / 6},
      },
    }
  }
  html = re_.density_html(det, tmp_path)
  assert (tmp_path / "ev_density.png").stat().st_size > 5000
  assert "keeps on average 19% of each near-duplicate cluster against 49% for random" in html
  assert "fewer near-duplicates, as intended" in html and "0% of cluster 0, 17% of cluster 1" in html
  assert "near-duplicates 1.90, other documents 0.35 (gaussian kernel, bandwidth 0.439 from the median_n rule)" in html
  assert "not in the pool" not in html
  det["corpus"] = {"clusters": 3}  # cluster 2 lost to refinement
  assert "as intended); the select" in re_.density_html(det, tmp_path)
  assert ". Cluster 2 is not in the pool: refinement dropped every document of it" in re_.density_html(det, tmp_path)
  det["corpus"] = {"clusters": 4}
  assert ". Clusters 2 and 3 are not in the pool: refinement dropped every document of them" in re_.density_html(
    det, tmp_path
  )
  det["density"]["clusters"]["0"]["ips"] = det["density"]["clusters"]["1"]["ips"] = 0.5
  assert "no clear difference" in re_.density_html(det, tmp_path)


def test_scatter_sentence_counts_what_was_selected(tmp_path):
  import numpy as np

  ids = ["a", "b", "c", "d", "e"]
  labels = {
    "a": {"kind": "clean"},
    "b": {"kind": "clean"},
    "c": {"kind": "dup"},
    "d": {"kind": "junk", "junk_kind": "word_salad"},
    "e": {"kind": "junk", "junk_kind": "navigation"},
  }
  html = re_.scatter_html(
    ids,
    np.asarray([0.1, 0.2, 0.3, 0.4, 0.05]),
    np.asarray([1.0, 1.1, 2.0, 0.9, 0.8]),
    np.asarray([True, False, False, True, False]),
    0.08,
    labels,
    tmp_path,
  )
  assert (tmp_path / "ev_scatter.png").exists()
  assert "kept 2 of 5 scored documents: 1 of 2 real, 0 of 1 near-duplicate, 1 of 2 junk documents." in html
  assert "Junk kept per kind: word salad 1 of 1, navigation 0 of 1." in html


def test_prox_sentence_names_what_each_programmer_missed(tmp_path):
  def prox(tp, fp, fn, ltp, lfn, kinds):
    return {
      "docs": {"tp": tp, "fp": fp, "fn": fn, "precision": tp / (tp + fp), "recall": tp / (tp + fn)},
      "lines": {"tp": ltp, "fp": ltp, "fn": lfn, "precision": 0.5, "recall": ltp / (ltp + lfn)},
      "clean_dropped": 0.05,
      "dropped_by_junk_kind": kinds,
    }

  det = {
    "prox_rules": prox(20, 4, 4, 30, 0, {"lorem_ipsum": 1.0, "word_salad": 0.0}),
    "prox_refiner": prox(12, 2, 12, 3, 27, {"lorem_ipsum": 0.5, "word_salad": 1.0}),
  }
  s = re_.prox_html(det, tmp_path)
  assert (
    "the rule programmer dropped 20 of 24 junk documents (and 4 other documents, 5% of the non-junk ones) "
    "and removed 30 of the 30 inserted junk lines and 30 other lines (line precision 0.50)" in s
  )
  assert "the trained refiner dropped 12 of 24 junk documents (and 2 other documents" in s
  assert "removed 3 of the 30 inserted junk lines and 3 other lines" in s
  assert "Junk kinds not always dropped by the rule programmer: word salad (0% dropped)." in s
  assert "Junk kinds not always dropped by the trained refiner: lorem ipsum (50% dropped)." in s
  assert (tmp_path / "ev_prox.png").stat().st_size > 0
  det["corpus"] = {"junk_kinds": {"lorem_ipsum": 2, "word_salad": 22}}  # counts, where the corpus gives them
  s = re_.prox_html(det, tmp_path)
  assert "rule programmer: word salad (0 of 22 dropped)." in s and "refiner: lorem ipsum (1 of 2 dropped)." in s
  det["prox_rules"] = prox(20, 1, 4, 1, 29, {"lorem_ipsum": 1.0, "word_salad": 0.0})
  assert "(and 1 other document, " in re_.prox_html(det, tmp_path)
  assert "removed 1 of the 30 inserted junk lines and 1 other line (line" in re_.prox_html(det, tmp_path)


def test_selection_sentence_reads_the_40_percent_point_and_names_ties(tmp_path):
  def curve(k40, auc=None):
    return {"by_rate": [{"rate": 20.0, "junk_kept": 0.1}, {"rate": 40.0, "junk_kept": k40}], "auc_clean_over_junk": auc}

  sel = {
    "junk_docs": 10,
    "docs": 150,
    "askllm": curve(0.6, 0.29),
    "perplexity_low": curve(0.1, 0.74),
    "perplexity_middle": curve(0.1),
    "perplexity_high": curve(0.9),
    "random": curve(0.4),
  }
  s = re_.selection_html({"selection": sel}, tmp_path)
  assert "10 junk documents survived refinement and were scored with the 140 other documents." in s
  assert (
    "probability 0.29 (its ROC AUC: worse than chance, this scorer prefers the junk; lowest-perplexity "
    "filtering's is 0.74)"
  ) in s
  assert "ASK-LLM keeps 60% of the junk, lowest-perplexity filtering 10%, middle 10%, highest 90% and random 40%." in s
  assert "the least junk is kept by perplexity: lowest and perplexity: middle (tied)." in s
  sel["perplexity_middle"] = curve(0.2)
  assert "the least junk is kept by perplexity: lowest." in re_.selection_html({"selection": sel}, tmp_path)


def test_percentages_and_plurals():
  assert [rt.pct(x) for x in (None, 0.0, 0.004, 0.005, 0.0051, 0.27, 0.994, 0.9951, 1.0)] == [
    "–",
    "0%",
    "<1%",
    "<1%",
    "1%",
    "27%",
    "99%",
    ">99%",
    "100%",
  ]
  counts = (rt.count(1, "line"), rt.count(0, "line"), rt.count(1200, "copy", "copies"))
  assert counts == ("1 line", "0 lines", "1,200 copies")
  joined = (rt.join_words(["a"]), rt.join_words(["a", "b"]), rt.join_words(["a", "b", "c"]))
  assert joined == ("a", "a and b", "a, b and c")


def _sel_from(log_ppl, kinds, rates=(10.0, 20.0, 40.0, 60.0, 80.0)):
  """A selection block as the detection stage writes it, for a hand-made pool, plus the per-kind figures."""
  import numpy as np
  from tokensift.pipeline import evidence
  from tokensift.selection import perplexity as ppl

  junk = np.asarray([k is not None for k in kinds])
  sel = {"junk_docs": int(junk.sum()), "docs": len(kinds)}
  for mode in ppl.MODES:
    rows = []
    for r in rates:
      kept = np.zeros(len(kinds), bool)
      kept[ppl.select_indices(log_ppl, r, mode)] = True
      rows.append({"rate": r, "junk_kept": float(kept[junk].mean())})
    sel[f"perplexity_{mode}"] = {"by_rate": rows}
  sel["perplexity_by_kind"] = evidence.perplexity_by_junk_kind(np.asarray(log_ppl, float), kinds, rates)
  return sel


def test_flat_perplexity_curve_is_explained_by_the_junk_kinds_at_each_end():
  # 20 documents in perplexity order: navigation the lowest, keyword spam the 2nd lowest; random chars and two
  # word salads the three highest. Lowest-perplexity filtering keeps the same two at every rate.
  order = [3, 0, 5, 1, 7, 9, 2, 11, 4, 13, 6, 15, 8, 10, 12, 14, 16, 17, 18, 19]  # pool index of each position
  log_ppl, kinds = [0.0] * 20, [None] * 20
  for pos, i in enumerate(order):
    log_ppl[i] = 1.0 + 0.1 * pos
  for pos, i in enumerate(order):
    kinds[i] = {0: "navigation", 1: "keyword_spam", 17: "random_chars", 18: "word_salad", 19: "word_salad"}.get(pos)
  sel = _sel_from(log_ppl, kinds)
  by = sel["perplexity_by_kind"]
  for mode in ("low", "middle", "high"):  # the per-kind figures add up to the curve they explain
    for j, row in enumerate(sel[f"perplexity_{mode}"]["by_rate"]):
      assert abs(sum(d["n"] * d["kept"][mode][j] for d in by.values()) / 5 - row["junk_kept"]) < 1e-9
  assert [x["junk_kept"] for x in sel["perplexity_low"]["by_rate"]] == [0.4] * 5
  s = re_._perplexity_why(sel)
  assert (
    "navigation (1 document) and keyword spam (1 document) sit within the lowest-perplexity 10% of the "
    "pool; random chars (1 document) and word salad (2 documents) sit within the highest-perplexity 15% of "
    "the pool."
  ) in s
  assert (
    "So lowest-perplexity filtering keeps the same 40% of the junk at every rate from 10% to 80% (all of "
    "the keyword spam and navigation, none of the random chars and word salad)."
  ) in s
  assert "highest-perplexity filtering" not in s and "middle-perplexity" not in s  # those curves rise
  # spread the low-perplexity junk through the pool: no curve is flat any more, nothing to explain
  log_ppl[order[0]], log_ppl[order[1]] = 1.85, 2.45
  assert re_._perplexity_why(_sel_from(log_ppl, kinds)) == ""
  assert re_._perplexity_why({k: v for k, v in sel.items() if k != "perplexity_by_kind"}) == ""


def test_flat_curve_at_zero_and_a_kind_kept_in_part():
  # junk only at the two ends: middle-perplexity filtering never keeps any; one navigation page sits low and one
  # high, so the lowest filter keeps half of the navigation at every rate.
  kinds = [None] * 20
  kinds[0], kinds[19], kinds[18] = "navigation", "navigation", "word_salad"
  s = re_._perplexity_why(_sel_from([float(i) for i in range(20)], kinds))
  assert "navigation (2 documents) are spread across the order" in s
  assert "word salad (1 document) sits within the highest-perplexity 10% of the pool" in s
  assert (
    "lowest-perplexity filtering keeps the same 33% of the junk at every rate from 10% to 80% (50% of the "
    "navigation, none of the word salad)" not in s
  )  # 'none of' is only said beside what is kept whole
  assert (
    "lowest-perplexity filtering keeps the same 33% of the junk at every rate from 10% to 80% (none of the "
    "word salad, 50% of the navigation)" in s
  )
  assert "middle-perplexity filtering keeps none of the junk at any rate;" in s


def test_filters_saying_the_same_are_named_together():
  kinds = [None] * 18 + ["word_salad", "random_chars"]  # junk only at the high end
  s = re_._perplexity_why(_sel_from([float(i) for i in range(20)], kinds))
  assert "word salad (1 document) and random chars (1 document) sit within the highest-perplexity 10% of the pool." in s
  assert (
    "So lowest- and middle-perplexity filtering keep none of the junk at any rate from 10% to 80%; "
    "highest-perplexity filtering keeps all of the junk at every rate."
  ) in s


def _ablation(finals):
  """Hand-made ablation results: run -> final validation CE per seed (curves end there)."""
  runs = {}
  for name, f in finals.items():
    loss, data = name.split("_", 1)
    curve = [{"step": s, "val_ce": [x + (2 - k) * 0.2 for x in f]} for k, s in enumerate((100, 200, 300))]
    runs[name] = {
      "loss": loss,
      "data": data,
      "what": data,
      "docs": 10,
      "tokens": 1000,
      "curve": curve,
      "final_val_ce": f,
      "best_val_ce": f,
    }
  return {
    "runs": runs,
    "vocab": {"units": "characters", "in_vocab_ids": 100, "size": 103, "val_oov_share": 0.002},
    "unigram_val_ce": 3.3,
  }


def test_ablation_sentence_counts_what_is_beyond_seed_noise(tmp_path):
  from tokensift.pipeline import evidence_summary

  abl = _ablation(
    {"clm_contaminated": [2.30, 2.35, 2.40], "slm_contaminated": [2.50, 2.56, 2.58], "clm_random": [2.31, 2.38, 2.39]}
  )
  s = ra.ablation_html(abl, evidence_summary.ablation_table(abl), tmp_path)
  assert "Lowest final validation CE: clm_contaminated (2.350 ± 0.050); highest: slm_contaminated (2.547)" in s
  assert "the best run is 0.950 nats below it" in s
  assert (
    "Of 1 paired comparison, 1 is beyond seed noise (paired t over seeds, p < 0.05, every seed the same "
    "sign): slm_contaminated higher than clm_contaminated by 0.197."
  ) in s
  assert "<1% of validation characters are OOV" in s
  assert (tmp_path / "ev_ablation_curves.png").stat().st_size > 5000
  abl["runs"]["slm_contaminated"]["final_val_ce"] = [2.28, 2.40, 2.41]
  assert "1 paired comparison, none is beyond seed noise (paired" in ra.ablation_html(
    abl, evidence_summary.ablation_table(abl), tmp_path
  )
