"""Span-corruption and prefix tasks (and their selection variants) on the C4 sample, the seqio metrics, the
mixtures' sampling rates, and the encoder-decoder SLM loss against NumPy (no t5x needed)."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

import tokensift.tasks
from tokensift.core import paths
from tokensift.selection import variants
from tokensift.tasks import metrics, mixtures
from tokensift.tasks import span_corruption as sc
from tokensift.tasks import vocabularies

LENGTHS = {"inputs": 64, "targets": 32}


@pytest.fixture(scope="module")
def c4_docs(data_dir):
  import os

  os.environ.setdefault("TOKENSIFT_DATA_DIR", str(data_dir))
  tokensift.tasks.register_all()
  ds = seqio.get_mixture_or_task("c4_en_raw").source.get_dataset("validation", shuffle=False)
  return [(ex["id"].decode(), ex["text"].decode()) for ex in ds.as_numpy_iterator()]


def _reconstruct(inputs, targets, vocab_size):
  """Original chunk from a span-corruption pair (EOS stripped): sentinel k in inputs -> span k of targets."""
  inputs, targets = list(inputs[inputs != 0][:-1]), list(targets[targets != 0][:-1])
  spans, cur = {}, None
  for t in targets:
    if t >= vocab_size - 100:
      cur = t
      spans[cur] = []
    else:
      spans[cur].append(t)
  out = []
  for t in inputs:
    out.extend(spans[t] if t >= vocab_size - 100 else [t])
  return out


def test_corrupt_is_t5s_algorithm():
  assert sc.span_corruption_lengths(512) == (568, 114)  # T5's random_spans_helper figures
  tokens = tf.range(3, 103, dtype=tf.int32)
  seeds = [tf.constant([1, 2]), tf.constant([3, 4])]
  inputs, targets = sc.corrupt(tokens, seeds, vocab_size=1000)
  inputs, targets = inputs.numpy(), targets.numpy()
  sentinels_in = inputs[inputs >= 900]
  assert list(sentinels_in) == [999, 998, 997, 996, 995]  # round(15 / 3) = 5 spans, numbered down from the end
  assert list(targets[targets >= 900]) == list(sentinels_in)
  assert len(targets) - 5 == 15 and len(inputs) == 100 - 15 + 5  # round(100 * 0.15) noise tokens
  assert inputs[0] < 900  # a non-noise span comes first
  rebuilt = _reconstruct(np.append(inputs, 1), np.append(targets, 1), 1000)
  assert rebuilt == list(range(3, 103))
  again = sc.corrupt(tokens, seeds, vocab_size=1000)[0].numpy()
  np.testing.assert_array_equal(again, inputs)  # seeded: reproducible


def test_c4_span_corruption_task_features(c4_docs):
  task = seqio.get_mixture_or_task("c4_en_raw_span_corruption")
  vocab = task.output_features["targets"].vocabulary
  assert (vocab.pad_id, vocab.eos_id, vocab.vocab_size) == (0, 1, 32868)
  exs = list(task.get_dataset(LENGTHS, split="validation", shuffle=False, seed=0).take(3).as_numpy_iterator())
  chunk, _ = sc.span_corruption_lengths(64)
  stream = [t for _, text in c4_docs[:20] for t in vocab.encode(text)]
  for i, ex in enumerate(exs):
    assert ex["inputs"].dtype == np.int32 and ex["inputs"][-1] == 1 and ex["targets"][-1] == 1
    assert len(ex["inputs"]) <= 64 and 0 not in ex["inputs"] and 0 not in ex["targets"]
    assert ex["targets"][0] == vocab.vocab_size - 1  # <extra_id_0>
    assert _reconstruct(ex["inputs"], ex["targets"], vocab.vocab_size) == stream[i * chunk : (i + 1) * chunk]


def test_selection_variant_gets_a_span_corruption_variant(c4_docs, tmp_path):
  kept = [doc_id for doc_id, _ in c4_docs[5:25:2]]
  path = variants.write_id_list(tmp_path / "testsel_r5.txt", kept)
  variants.register_variant(variants.variant_name("c4_en_raw", "testsel", 5), "c4_en_raw", path)
  names = tokensift.tasks.register_all()
  name = variants.variant_name("c4_en_raw_span_corruption", "testsel", 5)
  assert name == "c4_en_testsel_r5_span_corruption" == sc.span_corruption_name("c4_en_testsel_r5")
  assert name in names and "c4_en_testsel_r5_mix50" in names
  task = seqio.get_mixture_or_task(name)
  ex = next(task.get_dataset(LENGTHS, split="validation", shuffle=False, seed=0).as_numpy_iterator())
  vocab = vocabularies.c4_t5()
  texts = dict(c4_docs)
  stream = [t for i in kept for t in vocab.encode(texts[i])]
  assert _reconstruct(ex["inputs"], ex["targets"], vocab.vocab_size) == stream[: sc.span_corruption_lengths(64)[0]]
  with pytest.raises(ValueError, match="SmolLM2"):
    sc.span_corruption_variant("c4_en_raw_smollm2")
  # Every selection kind a selection directory holds: ASK-LLM top-k, DENSITY, their combination.
  sel = tmp_path / "sel"
  for tag in ("askllm", "density", "askllm50_density"):
    variants.write_id_list(sel / f"{tag}_r10.txt", kept[:3])
  variants.register_selection_dir("c4_en_raw", sel)
  names = tokensift.tasks.register_all()
  for tag in ("askllm", "density", "askllm50_density"):
    assert f"c4_en_{tag}_r10_span_corruption" in names and f"c4_en_{tag}_r10_span_corruption_mix50" in names


def test_prefix_tasks_split_documents(c4_docs):
  for name, vocab in (("c4_en_prefix", vocabularies.c4_t5()), ("c4_en_prefix_smollm2", vocabularies.smollm2())):
    task = seqio.get_mixture_or_task(name)
    ex = next(task.get_dataset({"inputs": 32, "targets": 32}, split="validation", shuffle=False).as_numpy_iterator())
    tokens = vocab.encode(dict(c4_docs)[ex["id"].decode()])
    k = min(len(tokens) // 2, 31)
    assert list(ex["inputs"]) == tokens[:k] + [vocab.eos_id]
    assert list(ex["targets"]) == tokens[k : k + 31] + [vocab.eos_id]


def test_metrics():
  vocab = vocabularies.c4_t5()
  ex = {"targets": np.array(vocab.encode("the cat sat") + [1], np.int32)}
  t = metrics.keep_target_tokens(b"the cat sat", example=ex, is_target=True)
  assert t == {"text": "the cat sat", "tokens": list(ex["targets"])}
  assert metrics.keep_target_tokens("x", example=ex) == "x"
  got = metrics.perplexity([t, t], [-4.0, -8.0])
  n = 2 * len(ex["targets"])
  assert got["perplexity"] == pytest.approx(np.exp(12.0 / n)) and got["nll_per_sequence"] == 6.0
  acc = metrics.ENCDEC_METRICS[1]([t, t], ["the cat sat", "the dog sat"])
  n_tok = len(ex["targets"]) - 1
  dog = vocab.encode("the dog sat")
  want = (n_tok + sum(a == b for a, b in zip(ex["targets"][:-1], dog))) / (2 * n_tok)
  assert acc == {"token_accuracy": pytest.approx(want), "sequence_accuracy": 0.5}
  task = seqio.get_mixture_or_task("c4_en_raw_span_corruption")
  assert [f.__name__ for f in task.score_metric_fns] == ["perplexity"]
  assert [f.__name__ for f in task.predict_metric_fns] == ["token_accuracy"]
  assert seqio.get_mixture_or_task("owm_raw_smollm2").score_metric_fns  # t5x.eval has something to report


def _share(mixture, predicate, n=600):
  ds = mixture.get_dataset({"targets": 16}, split="train", shuffle=True, seed=1, passthrough_features=["id"])
  ids = [ex["id"].decode() for ex in ds.take(n).as_numpy_iterator()]
  return np.mean([predicate(i) for i in ids])


def test_mixtures_sample_at_their_rates(c4_docs, tmp_path):
  mix = mixtures.c4_owm_mixture(20)
  assert mix.name == "c4_owm_mix20"
  share_owm = _share(mix, lambda i: not i.startswith("c4-"))
  assert abs(share_owm - 0.2) < 0.05, share_owm  # 600 draws: sd 0.016
  train_ids = [
    ex["id"].decode()
    for ex in seqio.get_mixture_or_task("c4_en_raw")
    .source.get_dataset("train", shuffle=False)
    .take(1000)
    .as_numpy_iterator()
  ]
  kept = set(train_ids[::10])  # 100 of 1000
  path = variants.write_id_list(tmp_path / "mixsel_r10.txt", sorted(kept))
  variants.register_variant("c4_en_mixsel_r10", "c4_en_raw", path)
  mix = mixtures.mix_with_full("c4_en_mixsel_r10", 70)
  assert mix.name == "c4_en_mixsel_r10_mix70" and mixtures.full_task("c4_en_mixsel_r10") == "c4_en_raw"
  share = _share(mix, lambda i: i in kept)
  assert abs(share - (0.7 + 0.3 * 0.1)) < 0.05, share
  with pytest.raises(ValueError, match="between 0 and 100"):
    mixtures.mix_with_full("c4_en_mixsel_r10", 100)


def test_encdec_slm_loss_matches_numpy(c4_docs, tmp_path):
  import jax
  from tokensift.rho1 import encdec_reference_losses as erl
  from tokensift.rho1 import feature_converters as fc
  from tokensift.models.t5 import T5, T5Config

  def tiny(seed):
    module = T5(
      T5Config(
        vocab_size=32896, d_model=16, num_heads=2, head_dim=8, d_ff=32, num_encoder_layers=1, num_decoder_layers=1
      )
    )
    params = module.init(jax.random.PRNGKey(seed), np.ones((1, 8), np.int32), np.ones((1, 8), np.int32))["params"]
    return module, params

  ref_module, ref_params = tiny(1)
  lengths = {"inputs": 64, "targets": 16}
  scorer = erl.EncDecReferenceScorer(ref_module, ref_params, 64, 16, batch_size=8)
  erl.compute_encdec_reference_losses(
    task="c4_en_raw_span_corruption",
    out_dir=tmp_path,
    scorer=scorer,
    feature_lengths=lengths,
    splits=("validation",),
    max_examples=8,
  )
  name = erl.register_encdec_reference_loss_task(ref_dir=str(tmp_path), splits=("validation",))
  task = seqio.get_mixture_or_task(name)
  # the registration shared with the decoder-only job (reference_losses.register_ref_task)
  assert set(task.output_features) == {"inputs", "targets", "ref_losses"}
  assert task.postprocessor == seqio.get_mixture_or_task("c4_en_raw_span_corruption").postprocessor is not None
  with pytest.raises(paths.ConfigError, match="register_encdec_reference_loss_task needs ref_dir"):
    erl.register_encdec_reference_loss_task(ref_dir="")
  raw = list(task.get_dataset(None, split="validation", shuffle=False).as_numpy_iterator())
  assert len(raw) == 8 and all(len(r["ref_losses"]) == len(r["targets"]) for r in raw)
  conv = fc.SelectiveEncDecFeatureConverter(pack=False)
  ds = conv(task.get_dataset(None, split="validation", shuffle=False), {"inputs": 64, "targets": 16, "ref_losses": 16})
  batch = next(ds.batch(8).as_numpy_iterator())
  # Alignment: the packed reference losses are the reference model's losses of those very targets.
  want = scorer([(r["inputs"], r["targets"]) for r in raw[:1]])[0]
  np.testing.assert_allclose(batch["decoder_ref_losses"][0, : len(want)], want, rtol=1e-6)

  module, params = tiny(2)
  loss, m = erl.encdec_selective_loss(module, params, batch, ratio=0.6)
  logits = np.asarray(
    module.apply(
      {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"], batch["decoder_target_tokens"]
    ),
    np.float64,
  )
  logp = logits - logits.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  ce = -np.take_along_axis(logp, batch["decoder_target_tokens"][..., None].astype(int), -1)[..., 0]
  valid = batch["decoder_loss_weights"] > 0
  excess = (ce - batch["decoder_ref_losses"])[valid]
  k = int(np.floor(0.6 * valid.sum() + 0.5))
  chosen = np.argsort(-excess, kind="stable")[:k]
  np.testing.assert_allclose(float(loss), ce[valid][chosen].mean(), rtol=1e-4)
  assert float(m["selected_fraction"]) == pytest.approx(k / valid.sum())
