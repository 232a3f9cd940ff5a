"""The main job end to end in miniature (gin_configs/pipeline/mini.gin): real code paths, a few dozen C4
documents, a tiny random Llama (SmolLM2's tokenizer and chat template) standing in for SmolLM2 as ASK-LLM scorer
and reference model; the refiner is trained, MiniLM embeds."""

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest

from tokensift import cli
from tokensift.core import jobs, paths
from tokensift.models import llama
from tokensift.pipeline import config as pc
from tokensift.pipeline import distill_stages, run, stages
from tokensift.refine import refiner_training as rt
from tokensift.selection.keep import keep_count
from tokensift.selection.variants import read_id_list
from tokensift.core import hf_tokenizer

MINI = "gin_configs/pipeline/mini.gin"
JUDGE_DOCS = 20  # mini.gin's ScoreConfig.judge_docs
STAGES = [
  "corpus",
  "refiner_train",
  "refiner_eval",
  "refine_rules",
  "refine",
  "score",
  "embed",
  "distill",
  "density",
  "select",
  "perplexity",
  "reference",
  "ablations",
  "detection",
  "lm_data",
  "reference_losses",
  "train",
  "evaluate",
  "report",
]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
  """A random Llama-family checkpoint (HF directory) with SmolLM2's vocabulary, tokenizer and chat template."""
  files = hf_tokenizer.tokenizer_files(paths.smollm2_gguf())
  cfg = llama.LlamaConfig(
    vocab_size=49152,
    hidden_size=16,
    intermediate_size=32,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    max_position_embeddings=512,
    tie_word_embeddings=True,
  )
  params = jax.device_get(rt.init_params(cfg, seed=7))
  return rt.export_hf(tmp_path_factory.mktemp("tiny") / "llama", cfg, params, files)


@pytest.fixture(scope="module")
def finished(tiny_llama, tmp_path_factory, data_dir):
  run_dir = tmp_path_factory.mktemp("pipeline") / "run"
  argv = [
    "pipeline",
    "--gin_file",
    MINI,
    "--run_dir",
    str(run_dir),
    "--no_progress",
    "--gin",
    f"score_job.ScoreJobConfig.model = '{tiny_llama}'",
    "--gin",
    f"config.ReferenceConfig.model = '{tiny_llama}'",
  ]
  assert cli.main(argv) == 0
  return run_dir, argv


def _marker(run_dir: Path, name: str) -> dict:
  return json.loads((run_dir / name / stages.MARKER).read_text())


def test_every_stage_finished_with_its_config_and_timing(finished):
  run_dir, _ = finished
  timings = json.loads((run_dir / stages.TIMINGS).read_text())
  assert [s["name"] for s in timings["stages"]] == STAGES
  for name in STAGES:
    m = _marker(run_dir, name)
    assert m["stage"] == name and m["seconds"] > 0 and m["config"] is not None and len(m["fingerprint"]) == 16
  assert _marker(run_dir, "score")["config"]["job"]["max_length"] == 160  # mini.gin's value, not the default
  # each job-backed stage also has its job's shard completion markers
  for name, job in (
    ("refine", "refine"),
    ("refine_rules", "refine"),
    ("score", "score"),
    ("embed", "embed"),
    ("lm_data", "tokens_train"),
    ("reference_losses", "ref_losses_train"),
    ("reference_losses", "ref_losses_validation"),
  ):
    assert jobs.shard_files(run_dir / name, job), (name, job)


def test_document_counts_agree_across_stages(finished):
  run_dir, _ = finished
  s = {name: _marker(run_dir, name)["summary"] for name in STAGES}
  refined = [r for f in jobs.shard_files(run_dir / "refine", "refine") for r in jobs.read_records(f)]
  kept = [r for r in refined if r["kept"]]
  # the known-answer corpus: 24 real documents, 2 of them turned into clusters of 3, 6 junk documents
  assert s["corpus"]["docs_in"] == 24 and s["corpus"]["docs_out"] == 24 - 2 + 2 * 3 + 6
  assert s["refine"]["docs_in"] == len(refined) == 34 and s["refine"]["docs_out"] == len(kept) > 12
  assert s["refine_rules"]["docs_in"] == 34
  for name in ("embed", "lm_data", "distill"):
    assert s[name]["docs_in"] == len(kept) == s[name]["docs_out"], name
  judged = min(JUDGE_DOCS, len(kept))
  assert s["score"]["docs_in"] == len(kept) and s["score"]["docs_out"] == s["score"]["judged"] == judged
  assert s["select"]["askllm_scored"] == len(kept)  # select ranked the merged judge + head scores
  assert s["density"]["docs_out"] == s["embed"]["docs_out"]
  chosen = read_id_list(run_dir / "select" / s["select"]["id_list"])
  assert len(chosen) == s["select"]["docs_out"] == keep_count(len(kept), 50.0)
  assert set(chosen) <= {str(r["id"]) for r in kept}
  assert s["reference_losses"]["train"]["records"] == len(chosen)
  assert s["reference_losses"]["validation"]["records"] == 8
  assert s["train"]["docs_in"] == len(chosen)
  kept_tokens = sum(r["stats"]["tokens_after"] for r in kept)
  assert s["refine"]["tokens_out"] == kept_tokens == s["score"]["tokens_in"] == s["distill"]["tokens_out"]
  assert s["select"]["tokens_out"] == sum(r["stats"]["tokens_after"] for r in kept if str(r["id"]) in set(chosen))
  # the refiner's F1 figures and the ceiling, computed (the ceiling agrees perfectly with itself)
  ev = s["refiner_eval"]
  tr = s["refiner_train"]  # SFT on corrupted copies of the 24 training documents outside the 24-document pool
  assert tr["docs_in"] == 48 and tr["corrupted"]["excluded_pool_docs"] == 24 and tr["corrupted"]["junk"] == 6
  assert (tr["task"], tr["split"]) == ("c4_en_raw", "train")  # RefinerConfig.train_task unset: the corpus task
  assert tr["docs_out"] == 24 + 6 and tr["doc_pairs"] == 30
  assert ev["docs_in"] == 12 and ev["ceiling"]["doc"]["f1"] == 1.0 and 0.0 <= ev["refiner"]["doc"]["f1"] <= 1.0


def test_distill_stage_scores_the_unjudged_documents(finished):
  """The judge scored mini.gin's 20 hash-chosen refined documents; the head, fitted on their embeddings, scored
  the rest; the merged score file holds one record per refined document: the judge's where it has one."""
  run_dir, _ = finished
  kept = [
    str(r["id"]) for f in jobs.shard_files(run_dir / "refine", "refine") for r in jobs.read_records(f) if r["kept"]
  ]
  judge = {str(r["id"]): r for f in jobs.shard_files(run_dir / "score", "score") for r in jobs.read_records(f)}
  assert set(judge) == distill_stages.judged_ids(kept, JUDGE_DOCS) and len(judge) == JUDGE_DOCS < len(kept)
  merged = jobs.read_records(run_dir / "distill" / distill_stages.MERGED)
  assert sorted(str(r["id"]) for r in merged) == sorted(kept)  # every refined document, once
  s = _marker(run_dir, "distill")["summary"]
  assert s["judged"] == JUDGE_DOCS and s["head_scored"] == len(kept) - JUDGE_DOCS
  for r in merged:
    if str(r["id"]) in judge:
      assert r["scorer"] == "judge" and r["score"] == judge[str(r["id"])]["score"] and r["logp_no"] is not None
    else:  # the head's record, in the judge's schema: score = sigmoid of the head's logit of P(yes)
      assert r["scorer"] == s["scorer"] and r["scorer"].startswith("distilled:") and r["logp_no"] is None
      assert r["score"] == pytest.approx(1 / (1 + np.exp(-r["head_logit"])), rel=1e-9)
  fid = json.loads((run_dir / "distill" / "head" / "fidelity.json").read_text())
  head = json.loads((run_dir / "distill" / "head" / "head.json").read_text())
  assert fid["docs"] == head["heldout_docs"] >= 2 and head["train_docs"] + head["heldout_docs"] == JUDGE_DOCS
  assert (
    -1 <= fid["spearman"] <= 1
    and -1 <= fid["kendall"] <= 1
    and set(fid["topk_overlap"]) == {"10", "20", "40", "60", "80"}
  )
  assert s["fidelity"]["spearman"] == fid["spearman"] and head["head"] == "ridge"
  # every consumer reads the merged scores: detection's ASK-LLM figures count both scorers
  det = json.loads((run_dir / "detection" / "detection.json").read_text())
  assert sum(det["selection"]["askllm"]["scorers"].values()) == det["selection"]["docs"]
  assert det["selection"]["askllm"]["scorers"]["head"] > 0
  page = (run_dir / "report" / "index.html").read_text()
  assert "ASK-LLM distilled" in page and "fidelity to the judge is what this measures, not quality" in page
  assert "come from the judge and the distilled head" in page


def test_refiner_and_rules_real_documents_dropped(finished):
  """detection.json and the report give the refiner's share of real (non-junk) documents dropped next to the
  rules', counted from the refine records and the corpus labels."""
  run_dir, _ = finished
  det = json.loads((run_dir / "detection" / "detection.json").read_text())
  labels = {r["id"]: r for r in jobs.read_records(run_dir / "corpus" / "labels.jsonl")}
  for who, stage in (("refiner", "refine"), ("rules", "refine_rules")):
    recs = [r for f in jobs.shard_files(run_dir / stage, "refine") for r in jobs.read_records(f)]
    real = [r for r in recs if labels[str(r["id"])]["kind"] != "junk"]
    got = det["real_dropped"][who]
    assert got["docs"] == len(real) == 28 and got["dropped"] == sum(not r["kept"] for r in real)
    assert got["share"] == pytest.approx(got["dropped"] / got["docs"])
  assert det["real_dropped"]["refiner"]["programmer"] == "refiner"
  page = (run_dir / "report" / "index.html").read_text()
  assert page.count("Real documents (every pool document but the synthetic junk) dropped") == 2  # ProX + refiner


def test_training_runs_and_validation_table(finished):
  run_dir, _ = finished
  ev = _marker(run_dir, "evaluate")["summary"]
  assert [r["run"] for r in ev["table"]] == ["slm_selected", "clm_selected", "clm_refined_pool"]
  for row in ev["table"]:
    assert row["steps"] == 8 and np.isfinite(row["final_val_ce"]) and 5.0 < row["final_val_ce"] < 12.0
  runs = _marker(run_dir, "train")["summary"]["runs"]
  assert 0.5 < runs["slm_selected"]["train"]["selected_fraction"] <= 0.7  # Rho-1 kept ~60% of the tokens
  assert "selected_fraction" not in runs["clm_selected"]["train"]
  # every run is evaluated on the same held-out tokens
  assert len({round(r["eval"]["num_valid"]) for r in runs.values()}) == 1


def test_detection_and_ablations(finished):
  run_dir, _ = finished
  det = json.loads((run_dir / "detection" / "detection.json").read_text())
  assert det["corpus"]["junk"] == 6 and det["corpus"]["clusters"] == 2
  for who in ("prox_rules", "prox_refiner"):
    d = det[who]
    assert d["docs"]["tp"] + d["docs"]["fn"] == 6  # every junk document is counted once
    assert d["lines"]["tp"] + d["lines"]["fn"] == det["corpus"]["junk_lines"]
  assert det["prox_rules"]["docs"]["tp"] >= 4  # the rules drop most synthetic junk (near-empty, spam, ...)
  sel = det["selection"]
  assert [r["rate"] for r in sel["askllm"]["by_rate"]] == [10.0, 20.0, 40.0, 60.0, 80.0]
  assert set(det["density"]["clusters"]) == {"0", "1"}
  assert det["slm"]["curve"] and all(0 <= c["clean_selected"] <= 1 for c in det["slm"]["curve"])
  ref = _marker(run_dir, "reference")["summary"]
  assert ref["text"]["source"] == "c4_en_raw:train" and ref["text"]["candidates"] == 48
  assert ref["text"]["pool_overlap"] == 24 and ref["docs_out"] == ref["text"]["docs"] == 24  # the pool is left out
  assert ref["steps"] == 12 and np.isfinite(ref["final_val_ce"])
  abl = _marker(run_dir, "ablations")["summary"]["table"]
  b = abl["budget"]  # the data-abundant rule: <= 1 epoch of the pool, <= 2 of the smallest selection
  assert b["positions"] == b["steps"] * 4 * 32 == b["tokens_seen_per_model"]
  assert b["positions"] <= b["units"]["contaminated"] and b["regime"] == "data-abundant"
  assert all(b["positions"] <= 2 * b["units"][k] for k in ("random", "askllm", "perplexity", "density"))
  assert b["positions"] + 4 * 32 > min(b["limits"].values())  # the largest whole number of steps under it
  assert len(abl["rows"]) == 9 and all(r["seeds"] == 3 and np.isfinite(r["final_mean"]) for r in abl["rows"])
  assert abl["unigram_val_ce"] > 0 and any(p["a"] == "clm_askllm" and p["b"] == "clm_random" for p in abl["pairs"])


def test_report_has_its_images_and_sections(finished):
  run_dir, _ = finished
  page = (run_dir / "report" / "index.html").read_text()
  imgs = [x.split('"')[0] for x in page.split('<img src="')[1:]]
  assert {
    "funnel.png",
    "refiner_sft.png",
    "score_hist.png",
    "density_hist.png",
    "density_vs_score.png",
    "curves.png",
    "ev_prox.png",
    "ev_selection.png",
    "ev_scatter.png",
    "ev_density.png",
    "ev_slm.png",
    "ev_ablation_curves.png",
  } <= set(imgs)
  assert "Synthetic corruptions" in page and ("beyond seed noise" in page or "within seed noise" in page)
  for img in imgs:
    data = (run_dir / "report" / img).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, img
  assert "<del>" in page  # a refined document with struck-through lines (dropped documents count too)
  b = _marker(run_dir, "ablations")["summary"]["table"]["budget"]  # the positions budget is what the report says
  ref = _marker(run_dir, "reference")["summary"]
  assert f"Regime: {b['regime']}: {b['positions']:,} positions per model, fixed by the rule" in page
  assert f"that is {b['epochs']['contaminated']:.2f} epochs of the whole pool" in page
  assert f"trained for 12 steps ({ref['epochs']:.2f} epochs) on 24 clean documents (c4_en_raw:train; 24 pool" in page
  assert f"validation CE {ref['final_val_ce']:.3f} nats per character" in page
  assert (run_dir / "report" / "token_view.html").read_text().count('class="sel"') > 0
  for stage in STAGES[:-1]:
    assert f"<td>{stage}</td>" in page
  assert "slm_selected" in page and "teacher positives" in page


def test_second_run_does_no_work(finished, capsys):
  run_dir, argv = finished
  before = {
    p: p.stat().st_mtime_ns
    for p in run_dir.rglob("*")
    if p.is_file() and p.name != stages.TIMINGS and p.name != "pipeline.json"
  }
  assert cli.main(argv) == 0
  out = capsys.readouterr().out
  assert out.count("nothing to do") == len(STAGES) and "running" not in out
  after = {
    p: p.stat().st_mtime_ns
    for p in run_dir.rglob("*")
    if p.is_file() and p.name != stages.TIMINGS and p.name != "pipeline.json"
  }
  assert after == before  # no file written, none deleted
  timings = json.loads((run_dir / stages.TIMINGS).read_text())
  assert {s["status"] for s in timings["stages"]} == {"cached"} and timings["total_seconds_this_invocation"] == 0


def test_changed_setting_is_refused_naming_it(finished, capsys):
  run_dir, argv = finished
  assert cli.main(argv + ["--gin", "config.SelectionConfig.rate = 40.0"]) == 2
  err = capsys.readouterr().err
  assert "stage 'select'" in err and "rate: 50.0 -> 40.0" in err and "--restart_from select" in err


def test_config_errors_are_clear(tmp_path):
  with pytest.raises(ValueError, match="runs"):
    pc.LMConfig(runs=("slm_everything",))
  with pytest.raises(ValueError, match="programmer='refiner' needs"):
    pc.PipelineConfig(refiner=pc.RefinerConfig(enabled=False))
  with pytest.raises(FileNotFoundError, match="nope.gin"):
    pc.parse_gin(["nope.gin"], [])
  with pytest.raises(ValueError, match="unknown stage 'scor'"):
    run.run_pipeline(pc.PipelineConfig(), tmp_path / "r", restart_from="scor", log=lambda s: None)


def test_lm_stages_hold_the_trainer_configs():
  """LMConfig.train is the embedded trainer's TrainConfig (with its LossConfig / OptimizerConfig), bound in gin
  under the trainer's names over the pipeline's defaults, validated by the trainer's own checks."""
  from tokensift.trainer.config import TrainConfig

  mini = pc.parse_gin([MINI], []).lm
  assert isinstance(mini.train, TrainConfig)
  t = mini.train
  assert (t.train_steps, t.batch_size, t.eval_every, t.log_every, t.pack) == (8, 8, 4, 2, False)  # mini.gin
  # unbound in mini.gin: LMConfig.train's defaults, not the trainer classes' own (1e-3, no warmup / decay)
  assert (t.optimizer.learning_rate, t.optimizer.warmup_steps, t.optimizer.weight_decay) == (3e-3, 10, 0.01)
  assert t.loss.slm_ratio == 0.6 and t.keep_checkpoints == 1
  default = pc.parse_gin(["gin_configs/pipeline/default.gin"], ["tc.LossConfig.slm_ratio = 0.7"]).lm
  assert (default.train.train_steps, default.train.batch_size, default.train.loss.slm_ratio) == (100, 4, 0.7)
  run_cfg = mini.run_train_config(
    model_dir="/m/slm", task="t", loss_kind="clm", ref_losses=True, eval_split="validation", progress=False
  )
  assert dict(run_cfg.feature_lengths) == {"targets": 32, "ref_losses": 32} and run_cfg.loss.kind == "clm"
  assert (run_cfg.model_dir, run_cfg.task, run_cfg.train_steps) == ("/m/slm", "t", 8)
  with pytest.raises(ValueError, match=r"LossConfig.slm_ratio=0.0 must be in \(0, 1\]"):  # one check, the trainer's
    pc.parse_gin([MINI], ["tc.LossConfig.slm_ratio = 0.0"])
  with pytest.raises(ValueError, match="TrainConfig.model_dir.*sets model_dir"):
    pc.parse_gin([MINI], ["tc.TrainConfig.model_dir = '/elsewhere'"])
  with pytest.raises(ValueError, match="LossConfig.kind"):
    pc.parse_gin([MINI], ["tc.LossConfig.kind = 'clm'"])


def test_judged_part_is_fixed_by_the_ids():
  """ScoreConfig.judge_docs' rule: the k ids with the smallest hash, whatever their order; nested in k; all of
  them for None or k >= n; independent of the head's held-out split (another hash key)."""
  from tokensift.selection import distill

  ids = [f"doc{i}" for i in range(2000)]
  part = distill_stages.judged_ids(ids, 500)
  assert len(part) == 500 and part == distill_stages.judged_ids(ids[::-1], 500)
  u = dict(zip(ids, distill.id_hash(ids, distill_stages.JUDGE_KEY)))
  assert max(u[i] for i in part) < min(u[i] for i in set(ids) - part)  # the smallest hashes
  assert distill_stages.judged_ids(ids, 499) < part < distill_stages.judged_ids(ids, 501)
  assert distill_stages.judged_ids(ids, None) == set(ids) == distill_stages.judged_ids(ids, 2000)
  judged = sorted(part)
  held = distill.heldout_mask(judged, 20.0).mean()
  assert 0.15 < held < 0.25  # the head's 20% hold-out within the judged part is not skewed by the choice
  with pytest.raises(ValueError, match="judge_docs=3 must be >= 8"):
    pc.ScoreConfig(judge_docs=3)
  with pytest.raises(ValueError, match="head kind 'lasso'"):
    pc.ScoreConfig(judge_docs=20, head="lasso")


def test_merge_takes_the_judge_where_it_scored():
  judge = [{"id": "b", "score": 0.2, "logp_yes": -1.6, "logp_no": -0.3}, {"id": "z", "score": 0.5, "logp_yes": -0.7}]
  head = [
    {"id": i, "score": s, "logp_yes": float(np.log(s)), "logp_no": None, "scorer": "distilled:abc"}
    for i, s in (("a", 0.9), ("b", 0.7), ("c", 0.1), ("b", 0.6))
  ]
  merged = distill_stages.merge_records(judge, head)
  assert [(r["id"], r["score"], r["scorer"]) for r in merged] == [
    ("a", 0.9, "distilled:abc"),
    ("b", 0.2, "judge"),  # the judge's record, not the head's
    ("c", 0.1, "distilled:abc"),
    ("z", 0.5, "judge"),  # judged, not embedded: kept
  ]
  assert distill_stages.scorer_counts(merged) == {"judge": 2, "head": 2}
  assert distill_stages.merge_records(judge, []) == [dict(r, scorer="judge") for r in judge]


def test_refiner_learns_from_the_corpus_task(tmp_path):
  """RefinerConfig.train_task / eval_task unset follow CorpusConfig.task: with OpenWebMath (math profile) the SFT
  documents are owm_raw train documents outside the pool, none from C4; C4 keeps its documents."""
  from tokensift.pipeline.context import Context
  from tokensift.pipeline.corpus_stages import refiner_train_texts

  corpus = pc.CorpusConfig(task="owm_raw", profile="math", max_docs=10, lm_task="owm_raw_smollm2")
  cfg = pc.PipelineConfig(corpus=corpus, refiner=pc.RefinerConfig(train_docs=30))
  assert cfg.refiner_tasks() == {
    "train_task": "owm_raw",
    "train_split": "train",
    "eval_task": "owm_raw",
    "eval_split": "validation",
  }
  ctx = Context(cfg, tmp_path)
  owm = ctx.task_texts("owm_raw", "train", 30)
  c4 = set(ctx.task_texts("c4_en_raw", "train", 30))
  texts, n_in, extra = refiner_train_texts(ctx)
  assert n_in == 30 and extra["task"] == "owm_raw" and extra["corrupted"]["excluded_pool_docs"] == 10
  assert not set(texts) & (c4 | set(owm[:10]))  # nothing from C4 or from the pool
  untouched = set(texts) & set(owm[10:])  # the training documents the corruptions left as they are
  assert len(untouched) >= 5 and any("$" in t or "\\" in t for t in untouched)
  plain = Context(dataclasses.replace(cfg, refiner=pc.RefinerConfig(train_docs=30, corrupt_training=False)), tmp_path)
  assert refiner_train_texts(plain)[0] == owm
  explicit = pc.PipelineConfig(corpus=corpus, refiner=pc.RefinerConfig(train_task="c4_en_raw", eval_split="train"))
  assert explicit.refiner_tasks()["train_task"] == "c4_en_raw" and explicit.refiner_tasks()["eval_split"] == "train"
  default = pc.PipelineConfig().refiner_tasks()  # C4: the same task and splits as before they followed the corpus
  assert (default["train_task"], default["eval_task"], default["eval_split"]) == (
    "c4_en_raw",
    "c4_en_raw",
    "validation",
  )
