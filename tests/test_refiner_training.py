"""Refining-model SFT on rule-programmer pairs (ProX's recipe), its export, and F1 against the teacher."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tokensift.core import paths
from tokensift.models import llama
from tokensift.rho1.selective_loss import token_cross_entropy
from tokensift.refine import refiner_eval as rev
from tokensift.refine import refiner_training as rt
from tokensift.refine import rules
from tokensift.refine.model_programmer import ModelProgrammer
from tokensift.core import hf_tokenizer

TINY = rt.RefinerTrainConfig(
  model=rt.RefinerModelConfig(
    hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1, max_position_embeddings=320
  ),
  doc_prompt_tokens=96,
  chunk_tokens=128,
  max_program_tokens=40,
  steps=150,
  batch_tokens=1024,
  buckets=(96, 192),
  learning_rate=1e-2,
  warmup_steps=2,
  checkpoint_every=75,
  log_every=10,
)


@pytest.fixture(scope="module")
def c4_train(data_dir):
  """C4 train documents: 8 the rules keep (one with removed lines) and 4 they drop."""
  from tokensift.core import docs

  kept, edited, dropped = [], [], []
  for d in docs.DocumentInput(task="c4_en_raw", split="train").rows():
    p = rules.write_program(d.text, rules.RuleConfig.web())
    if p.doc_program == "drop_doc()":
      dropped.append(d.text)
    elif p.chunk_program != "keep_chunk()" and len(d.text) < 1500:
      edited.append(d.text)
    elif len(d.text) < 1200:
      kept.append(d.text)
    if len(kept) >= 7 and edited and len(dropped) >= 4:
      break
  return kept[:7] + edited[:1] + dropped[:4]


@pytest.fixture(scope="module")
def prompter():
  files = hf_tokenizer.tokenizer_files(paths.smollm2_gguf())
  lcfg = rt.llama_config(TINY.model, 49152)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
  return ModelProgrammer(
    llama.Llama(lcfg), llama.init_params(lcfg), files, config=rt.programmer_config(TINY), mesh=mesh
  )


def test_pairs_are_the_teachers_programs_on_the_refiners_prompts(c4_train, prompter):
  pairs, counts = rt.build_pairs(c4_train, prompter, TINY)
  assert counts["doc_pairs"] == len(c4_train) and counts["teacher_drops"] == 4
  assert counts["chunks_with_edits"] >= 1 and counts["chunk_pairs"] > len(c4_train) - 4
  doc_prompts = prompter.doc_prompts(c4_train)
  tok = prompter.tokenizer
  for p in pairs:
    assert p.target[-1] == prompter.eos_id and prompter.eos_id not in p.target[:-1]
    text = c4_train[p.doc]
    program = tok.decode(list(p.target[:-1]), skip_special_tokens=False)
    teacher = rules.write_program(text, rules.RuleConfig.web())
    if p.kind == "doc":
      assert p.prompt == tuple(doc_prompts[p.doc]) and program == teacher.doc_program
    else:
      assert teacher.doc_program == "keep_doc()"
      rendered = tok.decode(list(p.prompt), skip_special_tokens=False)
      assert "[doc]\n[" in rendered and rendered.endswith(prompter._suffix)
      chunk_list = prompter.chunks(text)
      assert program in teacher.chunk_programs(chunk_list, text)
  assert sum(p.kind == "chunk" for p in pairs) == counts["chunk_pairs"]


def test_loss_is_on_program_tokens_only(c4_train, prompter):
  pairs, _ = rt.build_pairs(c4_train[:3], prompter, TINY)
  idx = [0, 1, 2]
  length = 192
  batch = rt.make_batch(pairs, idx, length, rows=4, program_len=41)
  for r, i in enumerate(idx):  # hidden state at positions[k] predicts labels[k] = the next input token
    n = len(pairs[i].target)
    assert np.array_equal(batch["tokens"][r, batch["positions"][r, :n] + 1], batch["labels"][r, :n])
    assert batch["weights"][r].sum() == n
  assert batch["weights"][3].sum() == 0  # padding row
  lcfg = rt.llama_config(TINY.model, 49152)
  module = llama.Llama(lcfg)
  params = llama.init_params(lcfg, jax.random.PRNGKey(3))
  picked = module.apply({"params": params}, batch["tokens"], batch["positions"], method=rt._program_logits)
  ce_picked, _ = token_cross_entropy(picked, jnp.asarray(batch["labels"]))
  full = module.apply({"params": params}, batch["tokens"])  # [b, l, v]: the plain causal forward
  targets = np.zeros_like(batch["tokens"])
  targets[:, :-1] = batch["tokens"][:, 1:]
  ce_full, _ = token_cross_entropy(full, jnp.asarray(targets))
  mask = np.zeros(batch["tokens"].shape, bool)
  for r in range(3):
    n = int(batch["weights"][r].sum())
    mask[r, batch["positions"][r, :n]] = True
    np.testing.assert_allclose(np.asarray(ce_picked)[r, :n], np.asarray(ce_full)[r][mask[r]], rtol=2e-5, atol=2e-5)
  assert mask.sum() == batch["weights"].sum() < (batch["tokens"] > 0).sum() / 4  # prompts carry no loss


def test_schedule_is_deterministic_and_rebalances():
  pairs = (
    [rt.Pair((1,) * 10, (2, 3), "doc", i, edits=i < 2) for i in range(10)]
    + [rt.Pair((1,) * 50, (4, 5), "chunk", i, edits=i == 0) for i in range(40)]
    + [rt.Pair((1,) * 500, (4, 5), "chunk", 0)]
  )  # fits no bucket
  plain = dataclasses.replace(TINY, batch_tokens=96 * 4)  # 4 rows per batch
  stream = rt.batch_schedule(pairs, plain)
  one_epoch = [i for _, idx in (next(stream) for _ in range(13)) for i in idx]  # 50 pairs = 13 batches
  assert sorted(one_epoch) == list(range(50))  # every pair that fits exactly once; pair 50 never

  cfg = dataclasses.replace(plain, edit_repeat=3, keep_chunk_fraction=0.25)

  def take(n=60):
    stream = rt.batch_schedule(pairs, cfg)
    return [i for _ in range(n) for i in next(stream)[1]]

  seen = take()
  assert seen == take()  # same seed, same stream
  counts = np.bincount(seen, minlength=51)
  per_doc = counts[2:10].mean()  # plain doc pairs: once per epoch
  assert counts[50] == 0 and per_doc >= 3
  assert abs(counts[[0, 1, 10]].mean() / per_doc - 3) < 0.5  # pairs with edits: 3 times per epoch
  assert 0.1 < counts[11:50].mean() / per_doc < 0.45  # keep_chunk() pairs: about a quarter of the epochs


def test_train_export_resume_and_score(c4_train, tmp_path):
  summary = rt.run_refiner_training(c4_train, TINY, tmp_path / "refiner", progress=False)
  assert summary["doc_pairs"] == len(c4_train) and summary["pairs_too_long"] == 0
  assert summary["final_loss"] < 0.5 * summary["first_loss"]
  records = [json.loads(x) for x in (tmp_path / "refiner" / "train" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == list(range(10, TINY.steps + 1, 10))
  model_dir = tmp_path / "refiner" / "model"
  assert {p.name for p in model_dir.iterdir()} >= {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
  }
  # A rerun resumes from the final checkpoint: no step trains, the exported weights are the same.
  before = (model_dir / "model.safetensors").read_bytes()
  again = rt.run_refiner_training(c4_train, TINY, tmp_path / "refiner", progress=False)
  assert again["resumed_from"] == TINY.steps and again["program_tokens_this_run"] == 0
  assert (model_dir / "model.safetensors").read_bytes() == before
  # The exported directory is a refining model the refine job can load; scored against its teacher.
  mp = ModelProgrammer.from_path(model_dir, config=rt.programmer_config(TINY, batch_size=4))
  result = rev.evaluate_refiner(c4_train, mp)
  assert result["ceiling"]["doc"]["f1"] == 1.0 and result["ceiling"]["lines_chunk_stage"]["f1"] == 1.0
  assert result["ceiling"]["lines_end_to_end"]["f1"] == 1.0
  assert result["refiner"]["doc"]["support"] == 4
  # The training documents were memorised well enough to put every doc-level decision right.
  assert result["refiner"]["doc"]["f1"] == 1.0, result["programs"]
  assert result["refiner"]["same_chunk_output"] >= 0.8 and result["ceiling"]["same_chunk_output"] == 1.0
  assert all(p["refiner_doc"] in ("keep_doc()", "drop_doc()") for p in result["programs"])


def test_a_stopped_sft_resumes_from_its_checkpoint_with_the_same_losses(c4_train, prompter, tmp_path):
  """8 SFT steps uninterrupted, and stopped after step 5 (last checkpoint: 3) then rerun: the rerun resumes from
  step 3 (the batch schedule replayed to there) and logs the same losses, ending on the same weights."""
  from tokensift.trainer.metrics import read_metrics

  cfg = dataclasses.replace(TINY, steps=8, log_every=1, checkpoint_every=3)
  pairs, _ = rt.build_pairs(c4_train[:6], prompter, cfg)
  straight, summary = rt.train_refiner(pairs, cfg, 49152, tmp_path / "a", progress=False)
  assert summary["steps"] == 8 and summary["resumed_from"] is None
  _, stopped = rt.train_refiner(pairs, cfg, 49152, tmp_path / "b", progress=False, stop_at=5)
  assert stopped["steps"] == 5 and [r["step"] for r in read_metrics(tmp_path / "b")] == [1, 2, 3, 4, 5]
  resumed, summary_b = rt.train_refiner(pairs, cfg, 49152, tmp_path / "b", progress=False)
  assert summary_b["resumed_from"] == 3 and summary_b["steps"] == 8
  a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
  assert [r["step"] for r in a] == list(range(1, 9)) and a == b
  assert summary_b["final_loss"] == summary["final_loss"] and summary_b["first_loss"] == summary["first_loss"]
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True))
  with pytest.raises(ValueError, match="holds a run with settings"):  # other pairs in the same directory
    rt.train_refiner(pairs[1:], cfg, 49152, tmp_path / "a", progress=False)


def test_f1_counts_against_the_teacher():
  text = "\n".join(f"line {i} has enough words to count here." for i in range(6))
  teacher_doc, teacher_chunk = (
    ["keep_doc()", "drop_doc()", "keep_doc()"],
    ["remove_lines(line_start=1, line_end=2)", None, "keep_chunk()"],
  )
  student_doc = ["keep_doc()", "keep_doc()", "drop_doc()"]
  student_chunk = ["remove_lines(line_start=2, line_end=3)", "keep_chunk()", "keep_chunk()"]
  out = rev.compare_programs([text] * 3, teacher_doc, teacher_chunk, student_doc, student_chunk)
  assert out["doc"] == dict(out["doc"], tp=0, fp=1, fn=1, tn=1, f1=0.0, support=1)
  # chunk stage, teacher-kept docs 0 and 2: teacher {1, 2}, student {2, 3} (doc 2: none, none)
  assert (out["lines_chunk_stage"]["tp"], out["lines_chunk_stage"]["fp"], out["lines_chunk_stage"]["fn"]) == (1, 1, 1)
  assert out["lines_chunk_stage"]["f1"] == 0.5 and out["lines_chunk_stage"]["tn"] == 12 - 3
  # end to end: doc 1 teacher drops (6 lines) and student keeps; doc 2 student drops (6 lines) the teacher keeps
  e2e = out["lines_end_to_end"]
  assert (e2e["tp"], e2e["fp"], e2e["fn"]) == (1, 1 + 6, 1 + 6)
  same = rev.compare_programs([text] * 3, teacher_doc, teacher_chunk, teacher_doc, teacher_chunk)
  assert same["doc"]["f1"] == same["lines_chunk_stage"]["f1"] == same["lines_end_to_end"]["f1"] == 1.0
  none = rev.compare_programs([text], ["keep_doc()"], ["keep_chunk()"], ["keep_doc()"], ["keep_chunk()"])
  assert none["lines_chunk_stage"]["f1"] == 1.0 and none["lines_chunk_stage"]["support"] == 0
  with pytest.raises(ValueError, match="student_chunk has 1 programs for 3"):
    rev.compare_programs([text] * 3, teacher_doc, teacher_chunk, student_doc, student_chunk[:1])


def test_config_errors_name_the_value():
  with pytest.raises(ValueError, match="buckets"):
    dataclasses.replace(TINY, buckets=(128, 64))
  with pytest.raises(ValueError, match="exceeds max_position_embeddings=320"):
    dataclasses.replace(TINY, buckets=(64, 512))
  with pytest.raises(ValueError, match="steps=0"):
    dataclasses.replace(TINY, steps=0)
