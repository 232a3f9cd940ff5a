"""Rho-1 SLM loss: agreement with a straightforward NumPy implementation of DESIGN §6, zero gradients on
unselected tokens, deterministic ties, and the same global-batch selection on 1 device and on 8 fake devices."""

import collections
import json

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from tokensift.models import partitioning
from tokensift.models.llama import Llama, LlamaConfig
from tokensift.trainer.config import LossConfig
from tokensift.rho1.selective_loss import (
  select_tokens,
  selective_cross_entropy,
  token_cross_entropy,
  weighted_cross_entropy,
)


def numpy_slm(logits, targets, weights, ref, ratio, scope):
  """DESIGN §6 written out plainly: per-token CE (float64), excess = CE - ref, top-k of the valid tokens by
  excess (ties: lower row-major index first), loss = weighted mean CE over the selected tokens."""
  logits = np.asarray(logits, np.float64)
  m = logits.max(-1, keepdims=True)
  log_z = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
  ce = log_z - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  excess = ce - ref
  weights = np.asarray(weights, np.float64)
  valid = weights > 0
  selected = np.zeros(targets.shape, bool)
  groups = (
    [np.arange(targets.size)]
    if scope == "batch"
    else [r * targets.shape[1] + np.arange(targets.shape[1]) for r in range(targets.shape[0])]
  )
  flat_valid, flat_excess, flat_sel = valid.ravel(), excess.ravel(), selected.ravel()
  for g in groups:
    cand = [i for i in g if flat_valid[i]]
    k = int(np.floor(np.float32(len(cand)) * np.float32(ratio) + np.float32(0.5)))
    for i in sorted(cand, key=lambda i: (-flat_excess[i], i))[:k]:
      flat_sel[i] = True
  selected = flat_sel.reshape(targets.shape)
  sw = weights * selected
  loss = (ce * sw).sum() / sw.sum() if sw.sum() > 0 else 0.0
  unsel = valid & ~selected
  metrics = {
    "selected_fraction": selected.sum() / valid.sum(),
    "excess_selected": excess[selected].mean() if selected.any() else 0.0,
    "excess_unselected": excess[unsel].mean() if unsel.any() else 0.0,
    "ce_unmasked": (ce * weights).sum() / weights.sum(),
  }
  return loss, selected, metrics


def _random_case(seed, batch=4, length=24, vocab=50, pad_rows=True):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(batch, length, vocab)).astype(np.float32) * 3
  targets = rng.integers(1, vocab, size=(batch, length)).astype(np.int32)
  weights = np.ones((batch, length), np.float32)
  if pad_rows:
    for r in range(batch):  # right padding of random lengths, as after packing/padding
      weights[r, rng.integers(length // 2, length + 1) :] = 0
  targets = np.where(weights > 0, targets, 0).astype(np.int32)
  ref = rng.gamma(2.0, 1.5, size=(batch, length)).astype(np.float32)
  return logits, targets, weights, ref


@pytest.mark.parametrize("scope", ["batch", "sequence"])
@pytest.mark.parametrize("ratio", [0.05, 0.3, 0.7, 1.0])
def test_matches_numpy_on_random_inputs(scope, ratio):
  for seed in range(2):
    logits, targets, weights, ref = _random_case(seed)
    loss, metrics = jax.jit(selective_cross_entropy, static_argnames=("ratio", "scope"))(
      logits, targets, weights, ref, ratio=ratio, scope=scope
    )
    ce, _ = token_cross_entropy(logits, targets)
    mask = select_tokens(ce - ref, weights, ratio, scope)
    want_loss, want_sel, want = numpy_slm(logits, targets, weights, ref, ratio, scope)
    np.testing.assert_array_equal(np.asarray(mask), want_sel)
    np.testing.assert_allclose(float(loss), want_loss, rtol=2e-6, atol=1e-6)
    for name, value in want.items():
      np.testing.assert_allclose(float(metrics[name]), value, rtol=2e-5, atol=1e-5, err_msg=name)
    assert int(metrics["num_selected"]) == want_sel.sum()


def test_sequence_scope_counts_per_row():
  logits, targets, weights, ref = _random_case(7, batch=5, length=16)
  ce, _ = token_cross_entropy(logits, targets)
  mask = np.asarray(select_tokens(ce - ref, weights, 0.5, "sequence"))
  for r in range(5):
    n = int(weights[r].sum())
    assert mask[r].sum() == int(np.floor(np.float32(n) * np.float32(0.5) + np.float32(0.5)))
    assert not mask[r][weights[r] == 0].any()


def test_matches_numpy_on_real_inputs(data_dir):
  """Real OpenWebMath text in the real C4 SentencePiece vocabulary; logits of a (random-init) Llama decoder;
  reference losses of a unigram LM fitted on the sample (a genuine, if weak, reference model)."""
  import sentencepiece as spm

  sp = spm.SentencePieceProcessor(model_file=str(data_dir / "tokenizers/c4-32768.model"))
  rows = [json.loads(line)["text"] for line in open(data_dir / "openwebmath/owm-sample-878.jsonl")][:40]
  encoded = sp.encode(rows)
  counts = collections.Counter(t for ids in encoded for t in ids)
  total = sum(counts.values())
  length = 48
  targets = np.zeros((6, length), np.int32)
  for i, d in enumerate(encoded[:6]):
    d = [t for t in d if t > 0][:length]
    targets[i, : len(d)] = d
  weights = (targets > 0).astype(np.float32)
  ref = np.where(targets > 0, -np.log(np.vectorize(lambda t: counts[t] / total)(targets) + 1e-12), 0)
  ref = ref.astype(np.float32)
  cfg = LlamaConfig(
    vocab_size=sp.get_piece_size(), hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, num_kv_heads=1
  )
  model = Llama(cfg)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), targets)["params"])
  rng = np.random.default_rng(3)  # random init drawn on the host: no XLA compile of the init graph
  params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.3).astype(np.float32), nn.unbox(shapes))
  inputs = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  logits = jax.jit(model.apply)({"params": params}, inputs, targets)
  for scope in ("batch", "sequence"):
    loss, metrics = selective_cross_entropy(logits, targets, weights, ref, 0.6, scope)
    want_loss, want_sel, want = numpy_slm(np.asarray(logits), targets, weights, ref, 0.6, scope)
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["selected_fraction"]), want["selected_fraction"], rtol=1e-6)
    np.testing.assert_allclose(float(metrics["excess_selected"]), want["excess_selected"], rtol=1e-4)
    assert float(metrics["excess_selected"]) > float(metrics["excess_unselected"])


def test_gradients_zero_exactly_on_unselected_tokens():
  logits, targets, weights, ref = _random_case(1)

  def loss_fn(lg):
    return selective_cross_entropy(lg, targets, weights, ref, 0.5, "batch", z_loss=1e-3)[0]

  grad = np.asarray(jax.grad(loss_fn)(jnp.asarray(logits)))
  ce, _ = token_cross_entropy(logits, targets)
  mask = np.asarray(select_tokens(ce - ref, weights, 0.5))
  per_token = np.abs(grad).sum(-1)
  assert mask.sum() > 0 and (~mask).sum() > 0
  assert np.all(per_token[~mask] == 0.0)
  assert np.all(per_token[mask] > 0.0)
  # The reference losses receive no gradient (the mask is a stop-gradient).
  g_ref = jax.grad(lambda r: selective_cross_entropy(logits, targets, weights, r, 0.5)[0])(jnp.asarray(ref))
  assert np.all(np.asarray(g_ref) == 0.0)


def test_zero_weight_tokens_never_selected_and_ties_deterministic():
  excess = np.array([[5.0, 1.0, 1.0, 9.0, 1.0, 1.0], [1.0, 1.0, 100.0, 1.0, 0.0, 1.0]], np.float32)
  weights = np.array([[1, 1, 1, 0, 1, 1], [1, 1, 0, 1, 1, 1]], np.float32)
  # 10 valid tokens, ratio 0.4 -> k = 4: the 5.0, then three of the eight tied 1.0s in row-major order.
  mask = np.asarray(select_tokens(excess, weights, 0.4, "batch"))
  want = np.zeros_like(mask)
  want[0, [0, 1, 2, 4]] = True
  np.testing.assert_array_equal(mask, want)
  assert not mask[weights == 0].any()
  # NaN excess (e.g. a NaN reference loss) is never preferred to a real value.
  excess2 = excess.copy()
  excess2[0, 1] = np.nan
  assert not np.asarray(select_tokens(excess2, weights, 0.4))[0, 1]


def test_ratio_one_equals_plain_cross_entropy_and_bad_arguments():
  logits, targets, weights, ref = _random_case(2)
  slm, m = selective_cross_entropy(logits, targets, weights, ref, 1.0)
  clm, m2 = weighted_cross_entropy(logits, targets, weights)
  np.testing.assert_allclose(float(slm), float(clm), rtol=1e-6)
  np.testing.assert_allclose(float(m["ce_unmasked"]), float(m2["ce_unmasked"]), rtol=1e-6)
  with pytest.raises(ValueError, match="scope='row'"):
    select_tokens(ref, weights, 0.5, "row")
  for bad in (0.0, 1.5, -0.1, float("nan"), "x"):  # one range, (0, 1], checked by check_slm_ratio everywhere
    with pytest.raises(ValueError, match=r"slm_ratio=.* must be in \(0, 1\]"):
      select_tokens(ref, weights, bad)
    with pytest.raises(ValueError, match=r"LossConfig.slm_ratio=.* must be in \(0, 1\]"):
      LossConfig(slm_ratio=bad)
  with pytest.raises(ValueError, match="shape mismatch"):
    selective_cross_entropy(logits, targets, weights, ref[:, :3], 0.5)


@pytest.mark.parametrize("mesh_shape", [(8, 1), (4, 2)])
def test_global_batch_selection_same_on_1_and_8_devices(mesh_shape):
  assert jax.device_count() == 8, "conftest sets 8 fake CPU devices"
  logits, targets, weights, ref = _random_case(11, batch=8, length=32, vocab=64)
  fn = jax.jit(
    lambda lg, t, w, r: (
      selective_cross_entropy(lg, t, w, r, 0.6)[0],
      select_tokens(token_cross_entropy(lg, t)[0] - r, w, 0.6),
    )
  )
  one = jax.devices()[0]
  loss1, mask1 = fn(*(jax.device_put(x, one) for x in (logits, targets, weights, ref)))
  mesh = Mesh(np.asarray(jax.devices()).reshape(mesh_shape), ("data", "model"))
  bs = partitioning.batch_sharding(mesh, 2)
  args = (
    jax.device_put(logits, NamedSharding(mesh, P("data", None, "model"))),
    *(jax.device_put(x, bs) for x in (targets, weights, ref)),
  )
  loss8, mask8 = fn(*args)
  assert len(loss8.sharding.device_set) == 8 or len(mask8.sharding.device_set) == 8
  np.testing.assert_array_equal(np.asarray(mask1), np.asarray(mask8))
  np.testing.assert_allclose(float(loss1), float(loss8), rtol=1e-6)
  # A per-device top-k would differ: each shard keeping its own 60% is not the global top 60%.
  ce, _ = token_cross_entropy(logits, targets)
  local = np.concatenate(
    [np.asarray(select_tokens(ce[i : i + 1] - ref[i : i + 1], weights[i : i + 1], 0.6)) for i in range(8)]
  )
  assert not np.array_equal(local, np.asarray(mask1))
