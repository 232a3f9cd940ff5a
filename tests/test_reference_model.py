"""Rho-1's reference model in the main job (``pipeline.reference_model``) and the ablations' data-abundant budget:
the reference's training text leaves out the pool and the validation documents (real C4 and OpenWebMath
documents); its per-unit losses, and the excess loss SLM ranks by, equal a NumPy computation from the models'
logits; a document's log perplexity is its mean unit loss; the positions budget follows its rule."""

import dataclasses

import numpy as np
import pytest

from tokensift.core import docs
from tokensift.pipeline import ablation_data as ad
from tokensift.pipeline import ablations as ab
from tokensift.pipeline import reference_model as rm

SMALL = dict(
  hidden_size=16,
  intermediate_size=32,
  num_layers=1,
  num_heads=2,
  num_kv_heads=1,
  seq_len=16,
  batch_size=4,
  steps=6,
  eval_every=3,
  warmup_steps=1,
  max_vocab=64,
)


def _texts(task, split, n):
  inp = docs.DocumentInput(task=task, split=split).validate()
  out = []
  for d in docs.documents_only(inp.rows(docs.ShardSpec()), docs.ReadReport()):
    out.append((d.id, d.text))
    if len(out) == n:
      break
  return out


def _context(tmp_path, **bindings):
  from tokensift.pipeline import config as pc
  from tokensift.pipeline.context import Context

  corpus = pc.CorpusConfig(**bindings.pop("corpus", {}))
  cfg = pc.PipelineConfig(
    corpus=corpus,
    reference=pc.ReferenceConfig(**bindings.pop("reference", {})),
    ablation=ab.AblationConfig(**bindings.pop("ablation", {})),
  )
  return Context(cfg, tmp_path)


def test_reference_text_on_c4_leaves_out_the_validation_documents(tmp_path):
  """C4's validation sample (1000 documents) minus the evaluation documents: its first 200 are the TFDS
  validation split, so exactly the 64 the ablations evaluate on are dropped, and no pool document is in it."""
  from tokensift.pipeline.evidence_stages import reference_texts

  ctx = _context(
    tmp_path,
    corpus={"max_docs": 40, "validation_docs": 24},
    reference={"train_files": ("c4/jsonl/c4-validation-sample-1000.json.gz",)},
    ablation={"validation_docs": 64},
  )
  kept, src = reference_texts(ctx)
  assert src["candidates"] == 1000 and src["validation_overlap"] == 64 and src["pool_overlap"] == 0
  assert len(kept) == src["docs"] == 936
  val = {" ".join(t.split()) for _, t in _texts("c4_en_raw", "validation", 64)}
  pool = _texts("c4_en_raw", "train", 40)
  texts = {" ".join(t.split()) for _, t in kept}
  assert not texts & val and not texts & {" ".join(t.split()) for _, t in pool}
  assert not {i for i, _ in kept} & {i for i, _ in pool}


def test_reference_text_on_openwebmath_is_the_train_split_after_the_pool(tmp_path):
  from tokensift.pipeline.evidence_stages import reference_texts

  ctx = _context(
    tmp_path,
    corpus={"task": "owm_raw", "lm_task": "owm_raw_smollm2", "profile": "math", "max_docs": 30},
    reference={"train_docs": 80},
    ablation={"validation_docs": 64},
  )
  kept, src = reference_texts(ctx)
  assert src["source"] == "owm_raw:train" and src["pool_overlap"] == 30 and src["validation_overlap"] == 0
  ids = {i for i, _ in kept}
  assert len(kept) == 50 and not ids & {i for i, _ in _texts("owm_raw", "train", 30)}
  assert not ids & {i for i, _ in _texts("owm_raw", "validation", 1000)}


def test_disjoint_matches_ids_and_normalised_text():
  kept, counts = rm.disjoint(
    [("a", "x  y"), ("b", "pool text"), ("c", "val\ntext"), ("p1", "new"), ("d", "kept")],
    pool=[("p1", "pool  text")],
    validation=["val text"],
  )
  assert kept == [("a", "x  y"), ("d", "kept")]
  assert counts == {"candidates": 5, "pool_overlap": 2, "validation_overlap": 1}


def _numpy_ce(net, params, tokens):
  """NumPy cross-entropy of every target from the model's logits: [rows, L]."""
  logits = np.asarray(net.apply({"params": params}, tokens[:, :-1]), np.float64)
  m = logits.max(-1, keepdims=True)
  logz = np.log(np.exp(logits - m).sum(-1)) + m[..., 0]
  tgt = np.take_along_axis(logits, tokens[:, 1:, None].astype(np.int64), -1)[..., 0]
  return logz - tgt


def test_unit_losses_and_excess_loss_equal_numpy():
  import jax

  cfg = ab.AblationConfig(**SMALL)
  trainer = ab.AblationSteps(cfg, vocab=64)
  states = trainer.init_state("clm", [3, 4])
  model = jax.tree_util.tree_map(lambda x: np.asarray(x[0]), states["params"])
  ref = jax.tree_util.tree_map(lambda x: np.asarray(x[1]), states["params"])
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 64, size=(300, 17)).astype(np.int32)  # > one 256-row chunk: the padded tail too
  ref_loss = trainer.unit_losses(ref, tokens)
  assert ref_loss.shape == (300, 17) and (ref_loss[:, 0] == 0).all()
  np.testing.assert_allclose(ref_loss[:, 1:], _numpy_ce(trainer.net, ref, tokens), rtol=1e-5, atol=1e-5)
  # the excess loss SLM ranks by: the model's CE minus the reference's, unit by unit
  from tokensift.rho1 import selective_loss as sl

  ce, _ = sl.token_cross_entropy(trainer.net.apply({"params": model}, tokens[:, :-1]), tokens[:, 1:])
  excess = np.asarray(ce) - ref_loss[:, 1:]
  want = _numpy_ce(trainer.net, model, tokens) - _numpy_ce(trainer.net, ref, tokens)
  np.testing.assert_allclose(excess, want, rtol=1e-5, atol=1e-5)
  assert np.std(want) > 0.01  # two different models: the excess is not a constant


def test_doc_log_ppl_is_the_mean_unit_loss_of_the_document_alone():
  import jax

  cfg = ab.AblationConfig(**SMALL)
  trainer = ab.AblationSteps(cfg, vocab=64)
  params = jax.tree_util.tree_map(lambda x: np.asarray(x[0]), trainer.init_state("clm", [1, 2])["params"])
  rng = np.random.default_rng(1)
  documents = [
    {"tokens": rng.integers(10, 60, size=n).tolist(), "ref_losses": [0.0] * n, "noise": [0] * n} for n in (5, 16, 40)
  ]
  mapping = {i: i for i in range(64)}
  got = rm.doc_log_ppl(trainer, params, documents, mapping)
  for d, v in zip(documents, got):
    rows = ad.pack([d], mapping, cfg.seq_len)
    ce = _numpy_ce(trainer.net, params, rows["tokens"])
    w = rows["weight"][:, 1:]
    assert v == pytest.approx((ce * w).sum() / w.sum(), rel=1e-5)


def test_positions_budget_rule():
  cfg = ab.AblationConfig(**dict(SMALL, steps=None, seq_len=32))  # 128 positions a step
  units = {"contaminated": 10_000, "refined_pool": 9_000, "random": 4_000, "askllm": 3_000, "density": 5_000}
  b = ad.positions_budget(cfg, units)
  assert b["limits"] == {"pool": 10_000, "selection askllm": 6_000} and b["bound"] == "selection askllm"
  assert b["steps"] == 6_000 // 128 and b["positions"] == 46 * 128 and b["regime"] == "data-abundant"
  assert b["epochs"]["contaminated"] == pytest.approx(46 * 128 / 10_000)
  units["askllm"] = 9_000
  assert ad.positions_budget(cfg, units)["bound"] == "selection random"  # 2 x 4,000 < 10,000
  fixed = ad.positions_budget(dataclasses.replace(cfg, steps=200), units)
  assert fixed["positions"] == 25_600 and fixed["regime"] == "repeated data" and fixed["limits"] == {}
  with pytest.raises(ValueError, match="less than one step of 128"):
    ad.positions_budget(cfg, {"contaminated": 100})
