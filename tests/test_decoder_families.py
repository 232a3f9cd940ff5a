"""Mistral, Qwen2, Gemma and Gemma 2 against HF transformers: random tiny models written by transformers'
``save_pretrained`` (single and sharded safetensors) and loaded by ``load_llama``; padded batches, full and
last-token logits, cached greedy decoding against HF ``generate``, bfloat16, sliding windows shorter than the
sequence, unsupported variants refused naming the field. Token ids come from real C4 text."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tokensift.models.checkpoint_check import CheckpointError
from tokensift.models.generate import greedy_generate, last_token_logits
from tokensift.models.llama_loaders import hf_config_dict, hf_state_dict, load_llama, params_from_hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_llama import VOCAB, c4_token_rows, hf_logits, jitted_apply  # noqa: E402

WINDOW = 5  # shorter than every test sequence, so sliding-window layers really drop keys
COMMON = dict(
  vocab_size=VOCAB,
  hidden_size=32,
  intermediate_size=40,
  num_hidden_layers=2,
  num_attention_heads=4,
  num_key_value_heads=2,
  rms_norm_eps=1e-6,
  max_position_embeddings=128,
  initializer_range=0.2,
  pad_token_id=0,
  bos_token_id=None,
  eos_token_id=None,
)
FAMILIES = {
  "mistral": ("MistralConfig", "MistralForCausalLM", dict(sliding_window=WINDOW, rope_theta=2000.0)),
  "qwen2": (
    "Qwen2Config",
    "Qwen2ForCausalLM",
    dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1, tie_word_embeddings=True),
  ),
  "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(head_dim=16, hidden_act="gelu_pytorch_tanh")),
  "gemma2": (
    "Gemma2Config",
    "Gemma2ForCausalLM",
    dict(
      head_dim=16,
      sliding_window=WINDOW,
      query_pre_attn_scalar=24,
      attn_logit_softcapping=2.0,
      final_logit_softcapping=3.0,
    ),
  ),
}


def save_hf_family(family, directory, seed=0, overrides=None, **save_kwargs):
  """A random tiny HF model of ``family`` (norm weights and biases randomized too) written by save_pretrained."""
  cfg_name, model_name, extra = FAMILIES[family]
  torch.manual_seed(seed)
  cfg = getattr(transformers, cfg_name)(**{**COMMON, **extra, **(overrides or {})})
  cfg._attn_implementation = "eager"  # Gemma 2's soft-capping needs eager; the same reference for every family
  model = getattr(transformers, model_name)(cfg).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:
        p.uniform_(-0.5, 0.5) if family.startswith("gemma") else p.uniform_(0.5, 1.5)
      elif name.endswith("bias"):
        p.normal_(0.0, 0.5)
  model.save_pretrained(directory, **save_kwargs)
  return model


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_model(request, tmp_path_factory):
  directory = tmp_path_factory.mktemp(request.param)
  return request.param, save_hf_family(request.param, directory), directory


def _padded_batch(data_dir):
  tokens = c4_token_rows(data_dir, 3, 16, offset=40)
  lengths = np.array([16, 11, 7])
  mask = (np.arange(16)[None] < lengths[:, None]).astype(np.int64)
  return tokens * mask, mask, lengths


def test_config_switches_follow_the_family(family_model):
  family, model, directory = family_model
  cfg = load_llama(directory).config
  assert cfg.family == family
  assert cfg.attention_bias == (family == "qwen2")
  assert cfg.norm_offset_one == cfg.scale_embeddings == family.startswith("gemma")
  assert cfg.sandwich_norms == (family == "gemma2")
  sliding = [cfg.is_sliding(i) for i in range(cfg.num_layers)]
  assert (
    sliding
    == {"mistral": [True, True], "qwen2": [False, True], "gemma": [False, False], "gemma2": [True, False]}[family]
  )
  assert cfg.tie_word_embeddings == model.config.tie_word_embeddings


def test_hf_parity_fp32_padded_batch(family_model, data_dir):
  family, model, directory = family_model
  loaded = load_llama(directory)
  tokens, mask, lengths = _padded_batch(data_dir)
  ref = hf_logits(model, tokens, mask)
  ours = np.asarray(jitted_apply(loaded.module)(loaded.params, tokens))
  assert ours.dtype == np.float32 and ours.shape == ref.shape
  for row, n in enumerate(lengths):
    np.testing.assert_allclose(ours[row, :n], ref[row, :n], atol=1e-4, rtol=0, err_msg=family)
  assert np.abs(ref).max() > 0.5  # not a comparison of near-zero logits
  last = np.asarray(last_token_logits(loaded.module, loaded.params, tokens, lengths))
  np.testing.assert_allclose(last, ref[np.arange(3), lengths - 1], atol=1e-4, rtol=0)
  # t5x padding mask (targets 0 = padding) leaves the real positions unchanged
  masked = np.asarray(jitted_apply(loaded.module)(loaded.params, tokens, tokens))
  for row, n in enumerate(lengths):
    np.testing.assert_allclose(masked[row, :n], ref[row, :n], atol=1e-4, rtol=0)


def test_sliding_window_is_honoured_beyond_the_window(family_model, data_dir):
  family, model, directory = family_model
  loaded = load_llama(directory)
  if family == "gemma":  # Gemma (1) has no local attention: nothing to drop
    assert loaded.config.sliding_window is None and not loaded.config.is_sliding(0)
    return
  import dataclasses
  from tokensift.models.llama import Llama

  tokens, _, _ = _padded_batch(data_dir)
  windowed = np.asarray(jitted_apply(loaded.module)(loaded.params, tokens[:1]))
  full_cfg = dataclasses.replace(loaded.config, sliding_window=None, layer_types=None)
  full = np.asarray(jitted_apply(Llama(full_cfg))(loaded.params, tokens[:1]))
  np.testing.assert_allclose(windowed[0, :WINDOW], full[0, :WINDOW], atol=1e-5)  # inside the window: same
  assert np.abs(windowed[0, WINDOW:] - full[0, WINDOW:]).max() > 1e-3  # beyond it: keys really dropped


def test_cached_greedy_decoding_matches_hf_generate(family_model, data_dir):
  family, model, directory = family_model
  loaded = load_llama(directory)
  rows = c4_token_rows(data_dir, 3, 9, offset=60)
  prompts = [rows[0, :3].tolist(), rows[1, :9].tolist(), rows[2, :6].tolist()]
  ours = greedy_generate(loaded.module, loaded.params, prompts, max_new_tokens=8, eos_id=None)
  for prompt, got in zip(prompts, ours):
    with torch.no_grad():
      out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=8,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
      )
    assert got == out[0, len(prompt) :].tolist(), family  # 9 + 8 tokens > WINDOW: the cache honours the window


def test_bfloat16_tracks_hf_fp32(family_model, data_dir):
  """Stated bf16 tolerance: max |logit error| <= 5% of max |logit| and >= 90% argmax agreement."""
  _, model, directory = family_model
  bf16 = load_llama(directory, dtype="bfloat16")
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(bf16.params))
  tokens, mask, lengths = _padded_batch(data_dir)
  ref = hf_logits(model, tokens, mask)
  ours = np.asarray(jitted_apply(bf16.module)(bf16.params, tokens))
  valid = mask.astype(bool)
  assert np.abs(ours[valid] - ref[valid]).max() <= 0.05 * np.abs(ref[valid]).max()
  assert (ours[valid].argmax(-1) == ref[valid].argmax(-1)).mean() >= 0.9


def test_sharded_safetensors_and_export_round_trip(family_model, tmp_path):
  family, model, directory = family_model
  single = load_llama(directory)
  sharded_dir = tmp_path / "sharded"
  model.save_pretrained(sharded_dir, max_shard_size="20KB")
  assert (sharded_dir / "model.safetensors.index.json").exists()
  assert len(list(sharded_dir.glob("model-*.safetensors"))) > 1
  jax.tree.map(np.testing.assert_array_equal, load_llama(sharded_dir).params, single.params)
  exported = hf_state_dict(single.config, single.params)
  reference = {
    k: v.numpy()
    for k, v in model.state_dict().items()
    if not (k == "lm_head.weight" and single.config.tie_word_embeddings)
  }
  assert exported.keys() == reference.keys()
  for name, value in exported.items():
    np.testing.assert_array_equal(value, reference[name], err_msg=name)
  jax.tree.map(np.testing.assert_array_equal, params_from_hf(single.config, exported, source="x"), single.params)
  # the exported config is one transformers reads as the same family and shape
  cfg = getattr(transformers, FAMILIES[family][0])(**hf_config_dict(single.config))
  assert (cfg.model_type, cfg.num_key_value_heads, cfg.head_dim) == (family, 2, single.config.resolved_head_dim)


UNSUPPORTED = {
  # family: (config.json edit, the field the error must name)
  "mistral": ({"attention_bias": True}, "attention_bias=true"),
  "qwen2": ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
  "gemma": ({"hidden_act": "relu"}, "hidden_act='relu'"),
  "gemma2": ({"use_bidirectional_attention": True}, "use_bidirectional_attention=true"),
}


def test_unsupported_variants_are_refused_naming_the_field(family_model, tmp_path):
  family, _, directory = family_model
  for edit, field in [
    (
      {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
      "rope_parameters.rope_type='linear'",
    ),
    ({"rope_scaling": {"type": "yarn", "factor": 4.0}}, "rope_scaling.rope_type='yarn'"),
    UNSUPPORTED[family],
  ]:
    bad = tmp_path / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    shutil.copytree(directory, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg.update(edit)
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=f"unsupported {family} features: .*{field}".replace("[", r"\[")):
      load_llama(bad)


def test_unknown_family_is_refused(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "phi3", "architectures": ["Phi3ForCausalLM"]}))
  with pytest.raises(CheckpointError, match=r"model_type='phi3'.*gemma2 \(Gemma2ForCausalLM\)"):
    load_llama(tmp_path)


def test_sharded_mesh_and_packing(family_model, data_dir):
  """On a (data 4, model 2) mesh: the new parameters (biases, sandwich norms) get the rules' shardings and
  sharded logits equal single-device ones; packed segments equal separate rows (sliding windows included)."""
  from jax.sharding import PartitionSpec as P

  from tokensift.models import partitioning

  family, _, directory = family_model
  lm = load_llama(directory)
  mesh = partitioning.make_mesh(partitioning.MeshConfig(data=4, model=2))
  tokens = c4_token_rows(data_dir, 8, 12, offset=80)
  shardings = partitioning.param_shardings(lm.module, mesh, tokens)
  params = partitioning.place_params(lm.params, shardings)
  layer = params["layers_1"]
  assert layer["attention"]["query"].sharding.spec == P(None, "model", None)
  if family == "qwen2":
    assert layer["attention"]["query_bias"].sharding.spec == P("model", None)
    assert layer["attention"]["key_bias"].sharding.spec == P(None, None)
  if family == "gemma2":
    assert set(layer) >= {"post_attention_norm", "post_mlp_norm"}
  sharded = partitioning.jit_apply(lm.module, mesh, shardings)(
    params, jax.device_put(tokens, partitioning.batch_sharding(mesh))
  )
  np.testing.assert_allclose(np.asarray(sharded), np.asarray(jitted_apply(lm.module)(lm.params, tokens)), atol=1e-5)

  a, b = tokens[0, :10], tokens[1, :9]
  packed = np.concatenate([a, b, np.zeros(1, np.int32)])[None]
  segments = np.array([[1] * 10 + [2] * 9 + [0]])
  positions = np.array([list(range(10)) + list(range(9)) + [0]])
  apply = jitted_apply(lm.module)
  out = np.asarray(apply(lm.params, packed, packed, decoder_segment_ids=segments, decoder_positions=positions))
  np.testing.assert_allclose(out[0, :10], np.asarray(apply(lm.params, a[None]))[0], atol=1e-5)
  np.testing.assert_allclose(out[0, 10:19], np.asarray(apply(lm.params, b[None]))[0], atol=1e-5)


def test_embedded_trainer_slm_steps_on_gemma2(tmp_path, data_dir):
  """The embedded trainer's SLM train step (sharded, data 4 x model 2) runs the family with the most switches
  (Gemma 2: soft-capping, sandwich norms, local/global layers) and lowers the loss."""
  import optax

  from tokensift.models import partitioning
  from tokensift.trainer.config import LossConfig
  from tokensift.trainer.steps import Steps

  save_hf_family("gemma2", tmp_path, seed=5)
  lm = load_llama(tmp_path)
  mesh = partitioning.make_mesh(partitioning.MeshConfig(data=4, model=2))
  rows = c4_token_rows(data_dir, 8, 17, offset=100)
  batch = {
    "decoder_input_tokens": rows[:, :-1],
    "decoder_target_tokens": rows[:, 1:],
    "decoder_loss_weights": np.ones((8, 16), np.int32),
    "decoder_ref_losses": np.full((8, 16), 2.0, np.float32),
  }
  steps = Steps(lm.module, LossConfig(kind="slm", slm_ratio=0.6), optax.adam(3e-3), optax.constant_schedule(3e-3), mesh)
  state = steps.init_state(8, {"targets": 16})
  state["params"] = partitioning.place_params(lm.params, jax.tree.map(lambda x: x.sharding, state["params"]))
  device_batch = steps.put_batch(batch)
  losses = []
  for _ in range(3):
    state, metrics = steps.train_step(state, device_batch)
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_family_config_fields_are_validated():
  from tokensift.models.llama import LlamaConfig

  base = dict(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=2, num_heads=2, num_kv_heads=1)
  with pytest.raises(ValueError, match="layer_types has 3 entries for num_layers=2"):
    LlamaConfig(**base, sliding_window=4, layer_types=["full_attention"] * 3)
  with pytest.raises(ValueError, match="'sliding_attention' layers but sliding_window is not set"):
    LlamaConfig(**base, layer_types=["sliding_attention", "full_attention"])
  with pytest.raises(ValueError, match=r"layer_types \['chunked_attention'\]"):
    LlamaConfig(**base, sliding_window=4, layer_types=["chunked_attention", "full_attention"])
  with pytest.raises(ValueError, match="hidden_act='gelu'"):
    LlamaConfig(**base, hidden_act="gelu")
  with pytest.raises(ValueError, match="family='phi3'"):
    LlamaConfig(**base, family="phi3")
  cfg = LlamaConfig(**base, sliding_window=4, layer_types=["sliding_attention", "full_attention"])
  assert cfg.layer_types == ("sliding_attention", "full_attention") and hash(cfg)  # lists become tuples
  assert [cfg.is_sliding(i) for i in range(2)] == [True, False]
