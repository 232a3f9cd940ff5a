"""tokensift's t5x model classes (runs where t5x is importable, skips elsewhere): params_axes from logical
boxes, t5x train state creation with Adafactor, the selective loss_fn against the pure loss, encoder-decoder,
and the decoder families under t5x (the launches themselves: test_t5x_launches.py)."""

import numpy as np
import pytest

t5x = pytest.importorskip("t5x")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402
from t5x import adafactor, train_state  # noqa: E402

from tokensift.rho1 import t5x_models  # noqa: E402
from tokensift.models.llama import Llama, LlamaConfig  # noqa: E402
from tokensift.rho1.selective_loss import selective_cross_entropy  # noqa: E402
from tokensift.models.t5 import T5, T5Config  # noqa: E402

VOCAB = 512


def _vocab():
  import seqio

  return seqio.PassThroughVocabulary(size=VOCAB, eos_id=1)


def _llama():
  return Llama(
    LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, num_kv_heads=1)
  )


def _optimizer():
  return adafactor.Adafactor(decay_rate=0.8, logical_factor_rules=t5x_models.logical_factor_rules())


def _packed_batch(seed=0, batch=4, length=24):
  rng = np.random.default_rng(seed)
  targets = rng.integers(3, VOCAB, size=(batch, length)).astype(np.int32)
  seg = np.ones((batch, length), np.int32)
  seg[:, length // 2 :] = 2
  seg[0, -5:] = 0  # padding
  targets[seg == 0] = 0
  pos = np.zeros_like(seg)
  for r in range(batch):
    for s in (1, 2):
      pos[r, seg[r] == s] = np.arange((seg[r] == s).sum())
  inputs = np.where(pos == 0, 0, np.roll(targets, 1, axis=1)) * (seg > 0)
  return {
    "decoder_target_tokens": targets,
    "decoder_input_tokens": inputs.astype(np.int32),
    "decoder_loss_weights": (seg > 0).astype(np.int32),
    "decoder_segment_ids": seg,
    "decoder_positions": pos,
    "decoder_ref_losses": rng.gamma(2.0, 2.0, size=(batch, length)).astype(np.float32) * (seg > 0),
  }


def _model(cls=t5x_models.SelectiveDecoderOnlyModel, **kw):
  return cls(module=_llama(), vocabulary=_vocab(), optimizer_def=_optimizer(), **kw)


def test_initial_variables_carry_params_axes_and_make_a_t5x_train_state():
  model = _model()
  shapes = {"decoder_input_tokens": (2, 8), "decoder_target_tokens": (2, 8)}
  variables = model.get_initial_variables(jax.random.PRNGKey(0), shapes, {"decoder_input_tokens": jnp.int32})
  params = traverse_util.flatten_dict(variables["params"])
  axes = traverse_util.flatten_dict(variables["params_axes"])
  assert set(axes) == {(*k[:-1], k[-1] + "_axes") for k in params}
  names = {k: v.names for k, v in axes.items()}
  assert names[("layers_0", "attention", "query_axes")] == ("embed", "heads", "head_dim")
  assert names[("token_embed", "embedding_axes")] == ("vocab", "embed")
  assert all(isinstance(v, jax.Array) for v in params.values())
  state = train_state.FlaxOptimTrainState.create(model.optimizer_def, variables)
  assert state.step == 0


def test_selective_loss_fn_matches_the_pure_loss_and_masks_gradients():
  model = _model(loss_normalizing_factor="NUM_REAL_TARGET_TOKENS", slm_ratio=0.6)
  batch = _packed_batch()
  variables = model.get_initial_variables(
    jax.random.PRNGKey(1), {"decoder_input_tokens": (4, 24)}, {"decoder_input_tokens": jnp.int32}
  )
  params = variables["params"]
  loss, metrics = jax.jit(model.loss_fn)(params, batch, None)
  logits = model._compute_logits(params, batch)
  want, want_m = selective_cross_entropy(
    logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"], batch["decoder_ref_losses"], 0.6
  )
  np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
  computed = {k: m.compute() for k, m in metrics.items() if k.startswith("slm/")}
  np.testing.assert_allclose(float(computed["slm/selected_fraction"]), float(want_m["selected_fraction"]), rtol=1e-6)
  np.testing.assert_allclose(float(computed["slm/excess_selected"]), float(want_m["excess_selected"]), rtol=1e-5)
  np.testing.assert_allclose(float(computed["slm/ce_unmasked"]), float(want_m["ce_unmasked"]), rtol=1e-5)
  # t5x's base metrics count the selected tokens only (the boolean mask passed to compute_base_metrics).
  assert float(metrics["loss_per_nonpadding_target_token"].compute()) == pytest.approx(
    float(loss) / float(want_m["num_selected"]), rel=1e-5
  )
  # The reference losses are a batch feature: gradients flow to params only; changing them changes the loss.
  grads = jax.grad(lambda p: model.loss_fn(p, batch, None)[0])(params)
  assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))
  flipped = dict(batch, decoder_ref_losses=-batch["decoder_ref_losses"])
  assert float(model.loss_fn(params, flipped, None)[0]) != pytest.approx(float(loss))
  with pytest.raises(ValueError, match="decoder_ref_losses"):
    model.loss_fn(params, {k: v for k, v in batch.items() if k != "decoder_ref_losses"}, None)
  with pytest.raises(ValueError, match="slm_ratio=0"):
    _model(slm_ratio=0.0)


def test_plain_decoder_only_model_is_t5x_cross_entropy():
  model = _model(t5x_models.DecoderOnlyModel, loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
  batch = {k: v for k, v in _packed_batch().items() if k != "decoder_ref_losses"}
  variables = model.get_initial_variables(
    jax.random.PRNGKey(1), {"decoder_input_tokens": (4, 24)}, {"decoder_input_tokens": jnp.int32}
  )
  loss, _ = model.loss_fn(variables["params"], batch, None)
  sel = _model(loss_normalizing_factor="NUM_REAL_TARGET_TOKENS", slm_ratio=1.0)
  loss1, _ = sel.loss_fn(variables["params"], dict(batch, decoder_ref_losses=np.zeros((4, 24), np.float32)), None)
  np.testing.assert_allclose(float(loss), float(loss1), rtol=1e-6)  # ratio 1 selects every token


def _vocab_exps(jaxpr) -> int:
  """How many ``exp`` ops over a full-vocabulary array the (nested) jaxpr holds: one per softmax pass."""
  count = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "exp" and eqn.outvars[0].aval.shape[-1:] == (VOCAB,):
      count += 1
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else (value,):
        sub = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr (pjit, custom_jvp/vjp, remat, scan bodies)
        if hasattr(sub, "eqns"):
          count += _vocab_exps(sub)
  return count


def test_selective_loss_normalizes_the_vocabulary_once_and_is_t5x_loss_at_ratio_1():
  """One full-vocabulary softmax pass per loss (the selection's per-token CE and the training loss share it),
  and at ratio 1 with label smoothing and z-loss the loss, z-loss and gradients are t5x's cross entropy's."""
  kw = dict(loss_normalizing_factor="NUM_REAL_TARGET_TOKENS", label_smoothing=0.1, z_loss=1e-3)
  sel, plain = _model(slm_ratio=1.0, **kw), _model(t5x_models.DecoderOnlyModel, **kw)
  batch = _packed_batch(seed=2)
  params = sel.get_initial_variables(
    jax.random.PRNGKey(1), {"decoder_input_tokens": (4, 24)}, {"decoder_input_tokens": jnp.int32}
  )["params"]
  assert _vocab_exps(jax.make_jaxpr(lambda p: sel.loss_fn(p, batch, None)[0])(params).jaxpr) == 1
  plain_batch = {k: v for k, v in batch.items() if k != "decoder_ref_losses"}
  (loss, metrics), grads = jax.value_and_grad(lambda p: sel.loss_fn(p, batch, None), has_aux=True)(params)
  (want, want_m), want_grads = jax.value_and_grad(lambda p: plain.loss_fn(p, plain_batch, None), has_aux=True)(params)
  np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["z_loss"].compute()), float(want_m["z_loss"].compute()), rtol=1e-5)
  for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-6)


def test_selective_encoder_decoder_model():
  module = T5(
    T5Config(vocab_size=VOCAB, d_model=16, num_heads=2, head_dim=8, d_ff=32, num_encoder_layers=1, num_decoder_layers=1)
  )
  model = t5x_models.SelectiveEncoderDecoderModel(
    module=module,
    input_vocabulary=_vocab(),
    output_vocabulary=_vocab(),
    optimizer_def=_optimizer(),
    loss_normalizing_factor="NUM_REAL_TARGET_TOKENS",
    slm_ratio=0.5,
  )
  variables = model.get_initial_variables(
    jax.random.PRNGKey(0),
    {"encoder_input_tokens": (4, 10), "decoder_input_tokens": (4, 24)},
    {"encoder_input_tokens": jnp.int32, "decoder_input_tokens": jnp.int32},
  )
  assert "params_axes" in variables
  batch = _packed_batch()
  batch.update(
    encoder_input_tokens=np.random.default_rng(0).integers(3, VOCAB, (4, 10)).astype(np.int32),
    encoder_segment_ids=np.ones((4, 10), np.int32),
    encoder_positions=np.tile(np.arange(10), (4, 1)),
  )
  batch["decoder_segment_ids"] = np.where(batch["decoder_segment_ids"] > 0, 1, 0).astype(np.int32)
  loss, metrics = model.loss_fn(variables["params"], batch, None)
  assert np.isfinite(float(loss))
  assert float(metrics["slm/selected_fraction"].compute()) == pytest.approx(0.5, abs=0.02)
  assert model.FEATURE_CONVERTER_CLS.__name__ == "SelectiveEncDecFeatureConverter"


def test_selective_encoder_decoder_loss_fn_is_the_pure_encdec_loss():
  """t5x's SelectiveEncoderDecoderModel.loss_fn equals encdec_selective_loss (the NumPy-tested pure loss)."""
  from tokensift.rho1.encdec_reference_losses import encdec_selective_loss

  module = T5(
    T5Config(vocab_size=VOCAB, d_model=16, num_heads=2, head_dim=8, d_ff=32, num_encoder_layers=1, num_decoder_layers=1)
  )
  model = t5x_models.SelectiveEncoderDecoderModel(
    module=module,
    input_vocabulary=_vocab(),
    output_vocabulary=_vocab(),
    optimizer_def=_optimizer(),
    loss_normalizing_factor="NUM_REAL_TARGET_TOKENS",
    slm_ratio=0.6,
    z_loss=0.0,
  )
  rng = np.random.default_rng(4)
  targets = rng.integers(3, VOCAB, (4, 12)).astype(np.int32)
  targets[1, 7:] = 0
  batch = {
    "encoder_input_tokens": rng.integers(3, VOCAB, (4, 10)).astype(np.int32),
    "decoder_target_tokens": targets,
    "decoder_input_tokens": np.concatenate([np.zeros((4, 1), np.int32), targets[:, :-1]], 1),
    "decoder_loss_weights": (targets > 0).astype(np.int32),
    "decoder_ref_losses": (rng.gamma(2.0, 2.0, (4, 12)) * (targets > 0)).astype(np.float32),
  }
  variables = model.get_initial_variables(
    jax.random.PRNGKey(0),
    {"encoder_input_tokens": (4, 10), "decoder_input_tokens": (4, 12)},
    {"encoder_input_tokens": jnp.int32, "decoder_input_tokens": jnp.int32},
  )
  loss, metrics = model.loss_fn(variables["params"], batch, None)
  want, want_m = encdec_selective_loss(module, variables["params"], batch, 0.6)
  np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
  assert float(metrics["slm/selected_fraction"].compute()) == pytest.approx(float(want_m["selected_fraction"]))


@pytest.mark.parametrize("family", ["mistral", "qwen2", "gemma", "gemma2"])
def test_decoder_families_drive_t5x_decoder_only_model(family):
  """Each decoder family (config from an HF-style config dict) trains under t5x's DecoderOnlyModel: params_axes,
  a t5x train state, and the selective loss_fn equal to the pure loss."""
  from tokensift.models.decoder_families import config_from_hf

  hf = {
    "model_type": family,
    "vocab_size": VOCAB,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 64,
    "head_dim": 8,
  }
  hf.update(
    {
      "mistral": {"sliding_window": 6},
      "qwen2": {"use_sliding_window": True, "sliding_window": 6, "max_window_layers": 1},
      "gemma": {"hidden_act": "gelu_pytorch_tanh"},
      "gemma2": {
        "sliding_window": 6,
        "query_pre_attn_scalar": 8,
        "attn_logit_softcapping": 5.0,
        "final_logit_softcapping": 3.0,
        "hidden_activation": "gelu_pytorch_tanh",
      },
    }[family]
  )
  cfg = config_from_hf(hf)
  assert cfg.family == family
  model = t5x_models.SelectiveDecoderOnlyModel(
    module=Llama(cfg),
    vocabulary=_vocab(),
    optimizer_def=_optimizer(),
    loss_normalizing_factor="NUM_REAL_TARGET_TOKENS",
    slm_ratio=0.6,
  )
  variables = model.get_initial_variables(
    jax.random.PRNGKey(2), {"decoder_input_tokens": (4, 24)}, {"decoder_input_tokens": jnp.int32}
  )
  assert "params_axes" in variables
  train_state.FlaxOptimTrainState.create(model.optimizer_def, variables)
  batch = _packed_batch(seed=3)
  loss, _ = jax.jit(model.loss_fn)(variables["params"], batch, None)
  logits = model._compute_logits(variables["params"], batch)
  want, _ = selective_cross_entropy(
    logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"], batch["decoder_ref_losses"], 0.6
  )
  np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
