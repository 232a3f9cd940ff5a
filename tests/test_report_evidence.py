"""The report's reading sentences say what their numbers say (hand-made detection figures)."""
from tokensift.pipeline import report_evidence as re_


def test_askllm_sentence_names_the_kinds_it_prefers_and_the_yes_no_mass():
  a = {"auc_by_junk_kind": {"navigation": 0.85, "random_chars": 0.16}, "auc_normalised": 0.37,
       "p_yes_clean": 0.059, "p_yes_junk": 0.072, "yes_no_mass_clean": 0.103, "yes_no_mass_junk": 0.12}
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
  st = dict(seeds=3, num_layers=2, hidden_size=64, steps=200, batch_size=8, seq_len=128, rate=50.0,
            learning_rate=1e-2, warmup_steps=20, doc_tokens=192)
  abl = {"settings": st, "vocab": {"units": "characters"},
         "budget": dict(params_per_model=1000, tokens_seen_per_model=204800, val_tokens=36000, val_docs=64)}
  rows = [{"data": d, "epochs": e, "final_mean": m} for d, e, m in
          zip(("contaminated", "random"), (1.5, 3.0), final_means)]
  return re_.setup_html(abl, {"rows": rows, "unigram_val_ce": unigram})


def test_setup_sentence_reads_the_runs_settings_and_the_side_of_the_unigram_level():
  s = _setup((2.80, 2.90), 3.245)
  assert "200 steps of 8 × 128 characters (204,800 positions per model: 1.5 epochs of the contaminated pool, " \
         "3.0 of a 50% subset)" in s
  assert "the best run ends 0.45 nats below it" in s
  assert "score in the budget (192 tokens)." in s and "256 tokens" not in s
  assert "the best run ends 0.15 nats above it" in _setup((3.40, 3.50), 3.245)


def test_density_sentence_and_plot(tmp_path):
  det = {"density": {"rate": 50.0, "docs": 149, "bandwidth": 0.4387, "bandwidth_setting": "median_n",
                     "kernel": "gaussian", "mean_log_density_dup": 1.9, "mean_log_density_other": 0.35,
                     "clusters": {"0": {"size": 6, "ips": 0.17, "random": 0.5, "select_stage": 0.0},
                                  "1": {"size": 6, "ips": 0.21, "random": 0.48, "select_stage": 1 / 6}}}}
  html = re_.density_html(det, tmp_path)
  assert (tmp_path / "ev_density.png").stat().st_size > 5000
  assert "keeps on average 19% of each near-duplicate cluster against 49% for random" in html
  assert "fewer near-duplicates, as intended" in html and "0% of cluster 0, 17% of cluster 1" in html
  assert "near-duplicates 1.90, other documents 0.35 (gaussian kernel, bandwidth median_n = 0.439)" in html
  det["density"]["clusters"]["0"]["ips"] = det["density"]["clusters"]["1"]["ips"] = 0.5
  assert "no clear difference" in re_.density_html(det, tmp_path)


def test_scatter_sentence_counts_what_was_selected(tmp_path):
  import numpy as np
  ids = ["a", "b", "c", "d", "e"]
  labels = {"a": {"kind": "clean"}, "b": {"kind": "clean"}, "c": {"kind": "dup"}, "d": {"kind": "junk"},
            "e": {"kind": "junk"}}
  html = re_.scatter_html(ids, np.asarray([0.1, 0.2, 0.3, 0.4, 0.05]), np.asarray([1.0, 1.1, 2.0, 0.9, 0.8]),
                          np.asarray([True, False, False, True, False]), 0.08, labels, tmp_path)
  assert (tmp_path / "ev_scatter.png").exists()
  assert "kept 2 of 5 scored documents: 1 of 2 real, 0 of 1 near-duplicate, 1 of 2 junk documents." in html


def test_prox_sentence_names_what_each_programmer_missed(tmp_path):
  def prox(tp, fp, fn, ltp, lfn, kinds):
    return {"docs": {"tp": tp, "fp": fp, "fn": fn, "precision": tp / (tp + fp), "recall": tp / (tp + fn)},
            "lines": {"tp": ltp, "fn": lfn, "precision": 0.5, "recall": ltp / (ltp + lfn)},
            "clean_dropped": 0.05, "dropped_by_junk_kind": kinds}
  det = {"prox_rules": prox(20, 4, 4, 30, 0, {"lorem_ipsum": 1.0, "word_salad": 0.0}),
         "prox_refiner": prox(12, 2, 12, 3, 27, {"lorem_ipsum": 0.5, "word_salad": 1.0})}
  s = re_.prox_html(det, tmp_path)
  assert "the rule programmer dropped 20 of 24 junk documents (and 4 others, 5% of the non-junk ones) and " \
         "removed 30 of 30 inserted junk lines" in s
  assert "the trained refiner dropped 12 of 24 junk documents" in s and "removed 3 of 30 inserted" in s
  assert "Junk kinds not always dropped by the rule programmer: word salad (0% dropped)." in s
  assert "Junk kinds not always dropped by the trained refiner: lorem ipsum (50% dropped)." in s
  assert (tmp_path / "ev_prox.png").stat().st_size > 0


def test_selection_sentence_reads_the_40_percent_point_and_names_ties(tmp_path):
  def curve(k40, auc=None):
    return {"by_rate": [{"rate": 20.0, "junk_kept": 0.1}, {"rate": 40.0, "junk_kept": k40}],
            "auc_clean_over_junk": auc}
  sel = {"junk_docs": 10, "docs": 150, "askllm": curve(0.6, 0.29), "perplexity_low": curve(0.1, 0.74),
         "perplexity_middle": curve(0.1), "perplexity_high": curve(0.9), "random": curve(0.4)}
  s = re_.selection_html({"selection": sel}, tmp_path)
  assert "probability 0.29 (ROC AUC: worse than chance, this scorer prefers the junk; perplexity-low: 0.74)" in s
  assert "ASK-LLM keeps 60% of the junk, lowest-perplexity filtering 10%, middle 10%, highest 90%, random 40%." in s
  assert "the least junk is kept by perplexity: lowest and perplexity: middle (tied)." in s
  sel["perplexity_middle"] = curve(0.2)
  assert "the least junk is kept by perplexity: lowest." in re_.selection_html({"selection": sel}, tmp_path)
