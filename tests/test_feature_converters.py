"""Packed/padded batches carry reference losses aligned with decoder_target_tokens: checked by recomputing each
document's losses from the unpacked documents, and by the model's own losses on the packed rows."""

import flax.linen as nn
import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

from tokensift.rho1 import feature_converters as fc
from tokensift.rho1 import reference_losses as rl
from tokensift.models.llama import Llama, LlamaConfig
from tokensift.rho1.selective_loss import token_cross_entropy

TASK = "c4_en_raw_smollm2"  # C4 documents vary in length (43 to 1000+ tokens), so rows pack 1 to 4 documents
MAX_LEN, PACK_LEN, DOCS = 160, 256, 16


def tiny_llama(vocab=49152, seed=0):
  cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, num_kv_heads=1)
  model = Llama(cfg)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.ones((1, 8), np.int32))["params"])
  rng = np.random.default_rng(seed)  # host-side random init: no XLA compile of the init graph
  params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.5).astype(np.float32), nn.unbox(shapes))
  return model, params


@pytest.fixture(scope="module")
def ref_task(tmp_path_factory, data_dir):
  model, params = tiny_llama()
  scorer = rl.ReferenceScorer(model, params, batch_tokens=1024, max_length=MAX_LEN, length_multiple=32)
  out = tmp_path_factory.mktemp("ref")
  rl.compute_reference_losses(
    task=TASK, out_dir=out, splits=("validation",), max_docs=DOCS, max_length=MAX_LEN, scorer=scorer, progress=False
  )
  name = rl.register_reference_loss_task(TASK, str(out), name="c4_ref_for_converter_test")
  return name, model, params


def _unpacked_docs():
  ds = seqio.get_mixture_or_task(TASK).get_dataset(sequence_length=None, split="validation", shuffle=False)
  return [ex["targets"][:MAX_LEN] for ex in ds.take(DOCS).as_numpy_iterator()]


def _packed_rows(task_name, pack):
  task = seqio.get_mixture_or_task(task_name)
  lengths = {"targets": PACK_LEN, "ref_losses": PACK_LEN}
  ds = task.get_dataset(sequence_length=lengths, split="validation", shuffle=False)
  return list(fc.SelectiveLMFeatureConverter(pack=pack)(ds, lengths).as_numpy_iterator())


def test_loss_bits_roundtrip_exactly():
  values = np.array([0.0, -0.0, 1e-45, 1e-30, 3.14159, 17.5, 1e30, np.inf], np.float32)
  bits = fc.encode_losses(tf.constant(values)).numpy()
  assert np.all(bits != 0)
  back = fc.decode_losses(tf.constant(bits)).numpy()
  assert back.tobytes() == values.tobytes()  # bit-exact, -0.0 included
  assert fc.decode_losses(tf.constant([0], tf.int32)).numpy()[0] == 0.0
  with pytest.raises(tf.errors.InvalidArgumentError, match="NaN"):
    fc.encode_losses(tf.constant([1.0, np.nan], tf.float32))


def test_packed_ref_losses_match_losses_recomputed_from_unpacked_documents(ref_task):
  name, model, params = ref_task
  docs = _unpacked_docs()
  targets = np.zeros((len(docs), MAX_LEN), np.int32)  # one document per row, right-padded: no packing
  for i, doc in enumerate(docs):
    targets[i, : len(doc)] = doc
  ce = jax.jit(lambda i, t: token_cross_entropy(model.apply({"params": params}, i, t), t)[0])(
    rl.shift_right(targets), targets
  )
  recomputed = {tuple(doc.tolist()): np.asarray(ce)[i, : len(doc)] for i, doc in enumerate(docs)}
  rows = _packed_rows(name, pack=True)
  seen = []
  for row in rows:
    seg, tgt, ref = row["decoder_segment_ids"], row["decoder_target_tokens"], row["decoder_ref_losses"]
    assert set(row) == {
      "decoder_target_tokens",
      "decoder_input_tokens",
      "decoder_loss_weights",
      "decoder_segment_ids",
      "decoder_positions",
      "decoder_ref_losses",
    }
    assert np.all(ref[seg == 0] == 0.0) and np.all(row["decoder_loss_weights"][seg == 0] == 0)
    for s in range(1, seg.max() + 1):
      tokens = tuple(tgt[seg == s].tolist())
      assert tokens in recomputed, "a packed segment is not one of the documents"
      np.testing.assert_allclose(ref[seg == s], recomputed[tokens], rtol=1e-5, atol=1e-5)
      np.testing.assert_array_equal(row["decoder_positions"][seg == s], np.arange(len(tokens)))
      seen.append(tokens)
  assert sorted(seen) == sorted(recomputed)  # every document exactly once
  assert max(r["decoder_segment_ids"].max() for r in rows) >= 2  # packing really happened


def test_model_losses_on_packed_rows_equal_the_packed_reference_losses(ref_task):
  """The reference model itself, run on the packed rows (segment ids + positions), reproduces
  decoder_ref_losses token by token: the offline per-document losses are the in-pack losses."""
  name, model, params = ref_task
  rows = _packed_rows(name, pack=True)
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  logits = jax.jit(
    lambda b: model.apply(
      {"params": params},
      b["decoder_input_tokens"],
      b["decoder_target_tokens"],
      decoder_segment_ids=b["decoder_segment_ids"],
      decoder_positions=b["decoder_positions"],
    )
  )(batch)
  ce = np.asarray(token_cross_entropy(logits, batch["decoder_target_tokens"])[0])
  valid = batch["decoder_loss_weights"] > 0
  np.testing.assert_allclose(ce[valid], batch["decoder_ref_losses"][valid], rtol=1e-4, atol=1e-4)


def test_unpacked_rows_are_aligned_and_padded(ref_task):
  name, _, _ = ref_task
  rows = _packed_rows(name, pack=False)
  docs = _unpacked_docs()
  assert len(rows) == len(docs)
  for row, doc in zip(rows, docs):
    n = len(doc)
    np.testing.assert_array_equal(row["decoder_target_tokens"][:n], doc)
    assert np.all(row["decoder_ref_losses"][:n] > 0) and np.all(row["decoder_ref_losses"][n:] == 0)


def _encdec_dataset():
  def gen():
    for d in range(7):
      n_in, n_tgt = 3 + d % 4, 2 + (d * 3) % 5
      yield {
        "inputs": np.arange(1, n_in + 1, dtype=np.int32) + 100 * d,
        "targets": np.full(n_tgt, d + 1, np.int32),
        "ref_losses": (d * 10 + np.arange(n_tgt) + 0.5).astype(np.float32),
      }

  sig = {
    "inputs": tf.TensorSpec([None], tf.int32),
    "targets": tf.TensorSpec([None], tf.int32),
    "ref_losses": tf.TensorSpec([None], tf.float32),
  }
  return tf.data.Dataset.from_generator(gen, output_signature=sig)


def test_encoder_decoder_converter_packs_ref_losses_with_targets():
  lengths = {"inputs": 16, "targets": 12, "ref_losses": 12}
  rows = list(fc.SelectiveEncDecFeatureConverter(pack=True)(_encdec_dataset(), lengths).as_numpy_iterator())
  docs = set()
  for row in rows:
    seg = row["decoder_segment_ids"]
    for s in range(1, seg.max() + 1):
      d = int(row["decoder_target_tokens"][seg == s][0]) - 1  # targets of document d are all d + 1
      np.testing.assert_array_equal(row["decoder_ref_losses"][seg == s], d * 10 + np.arange((seg == s).sum()) + 0.5)
      np.testing.assert_array_equal(row["encoder_input_tokens"][row["encoder_segment_ids"] == s] // 100, d)
      docs.add(d)
  assert docs == set(range(7)) and len(rows) < 7


def test_bad_lengths_and_interior_padding_are_errors():
  conv = fc.SelectiveLMFeatureConverter(pack=True)
  ds = _encdec_dataset().map(lambda ex: {"targets": ex["targets"], "ref_losses": ex["ref_losses"]})
  with pytest.raises(ValueError, match="ref_losses.*must equal"):
    conv(ds, {"targets": 12, "ref_losses": 10})
  bad = ds.map(
    lambda ex: {
      "targets": tf.concat([ex["targets"], [0, 5]], 0),
      "ref_losses": tf.concat([ex["ref_losses"], [1.0, 1.0]], 0),
    }
  )
  with pytest.raises(tf.errors.InvalidArgumentError, match="padding id 0 inside"):
    list(conv(bad, {"targets": 12, "ref_losses": 12}).as_numpy_iterator())
  short = ds.map(lambda ex: {"targets": ex["targets"], "ref_losses": ex["ref_losses"][:-1]})
  with pytest.raises(tf.errors.InvalidArgumentError, match="differ in length"):
    list(conv(short, {"targets": 12, "ref_losses": 12}).as_numpy_iterator())
