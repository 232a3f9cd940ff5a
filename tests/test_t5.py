"""T5 / FLAN-T5 network and loaders: parity with HF transformers (PyTorch, test-only), t5x decode cache,
packing, T5X legacy checkpoint, bad checkpoints."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tokensift.models import t5_loaders
from tokensift.models.checkpoint_check import CheckpointError, flat
from tokensift.models.t5 import T5, T5Config, relative_position_bucket, t5_sentence_embeddings

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

VOCAB = 96


def _randomize(model, seed):
  torch.manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.normal_(0.0, 0.5)


def save_hf_t5(path, *, feed_forward_proj="gated-gelu", untied=True, encoder_only=False, seed=0):
  """A random tiny HF T5 written with save_pretrained (safetensors); returns the reloaded torch model."""
  cfg = transformers.T5Config(
    vocab_size=VOCAB,
    d_model=16,
    d_kv=4,
    d_ff=32,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=20,
    feed_forward_proj=feed_forward_proj,
    tie_word_embeddings=not untied,
    dropout_rate=0.0,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
  )
  cls = transformers.T5EncoderModel if encoder_only else transformers.T5ForConditionalGeneration
  model = cls(cfg).eval()
  _randomize(model, seed)
  model.save_pretrained(str(path))
  if untied and not encoder_only:
    # transformers>=5 always ties lm_head to the embedding at construction; a FLAN-T5 checkpoint has its own
    # lm_head.weight (and from_pretrained then unties), so write one.
    sd = load_file(str(path / "model.safetensors"))
    sd["lm_head.weight"] = torch.randn(VOCAB, 16, generator=torch.Generator().manual_seed(seed + 1))
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
    cfg_json = json.loads((path / "config.json").read_text())
    cfg_json["tie_word_embeddings"] = False  # as FLAN-T5's config.json says
    cfg_json.pop("scale_decoder_outputs", None)
    (path / "config.json").write_text(json.dumps(cfg_json))
  return cls.from_pretrained(str(path)).eval()


def _batch(seed=0, enc_len=30, dec_len=25):
  rng = np.random.default_rng(seed)
  enc = rng.integers(2, VOCAB, (3, enc_len))
  enc[1, 20:] = 0
  enc[2, 5:] = 0
  dec = rng.integers(2, VOCAB, (3, dec_len))
  dec[:, 0] = 0
  return enc, dec


@pytest.fixture(scope="module")
def hf_t5(tmp_path_factory):
  path = tmp_path_factory.mktemp("hf_t5")
  return path, save_hf_t5(path)


def _hf_logits(model, enc, dec):
  with torch.no_grad():
    return model(
      input_ids=torch.tensor(enc), attention_mask=torch.tensor(enc > 0).long(), decoder_input_ids=torch.tensor(dec)
    ).logits.numpy()


def test_relative_position_buckets_match_hf():
  rel = np.arange(-300, 300)[None, :]
  for bidirectional in (True, False):
    for nb, md in ((32, 128), (8, 20)):
      want = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
        torch.tensor(rel), bidirectional=bidirectional, num_buckets=nb, max_distance=md
      ).numpy()
      for xp_rel in (rel, jnp.asarray(rel)):  # NumPy (trace time, what the network uses) and jnp
        got = np.asarray(relative_position_bucket(xp_rel, bidirectional=bidirectional, num_buckets=nb, max_distance=md))
        np.testing.assert_array_equal(got, want)


def test_hf_parity_gated_gelu_untied_fp32(hf_t5):
  path, model = hf_t5
  loaded = t5_loaders.load_t5(path)
  cfg = loaded.config
  assert (cfg.feed_forward_proj, cfg.tie_word_embeddings, cfg.scales_decoder_outputs) == ("gated-gelu", False, False)
  assert loaded.params["decoder"]["logits_dense"]["kernel"].shape == (16, VOCAB)
  enc, dec = _batch()
  ref = _hf_logits(model, enc, dec)
  out = np.asarray(loaded.module.apply({"params": loaded.params}, jnp.asarray(enc), jnp.asarray(dec)))
  assert out.dtype == np.float32 and out.shape == ref.shape
  assert np.abs(out - ref).max() <= 1e-4, np.abs(out - ref).max()
  # t5x-style padding mask from decoder_target_tokens leaves the unpadded rows unchanged
  targets = np.concatenate([dec[:, 1:], np.ones((3, 1), int)], axis=1)
  out2 = np.asarray(loaded.module.apply({"params": loaded.params}, enc, dec, targets))
  assert np.abs(out2 - ref).max() <= 1e-4


def test_hf_parity_relu_tied_scaled(tmp_path):
  model = save_hf_t5(tmp_path, feed_forward_proj="relu", untied=False, seed=3)
  loaded = t5_loaders.load_t5(tmp_path)
  assert loaded.config.tie_word_embeddings and loaded.config.scales_decoder_outputs
  assert "logits_dense" not in loaded.params["decoder"]
  enc, dec = _batch(1)
  ref = _hf_logits(model, enc, dec)
  out = np.asarray(loaded.module.apply({"params": loaded.params}, enc, dec))
  assert np.abs(out - ref).max() <= 1e-4, np.abs(out - ref).max()


def test_encoder_only_and_sentence_embeddings_match_hf(tmp_path):
  model = save_hf_t5(tmp_path, encoder_only=True, seed=5)
  loaded = t5_loaders.load_t5(tmp_path)
  assert set(loaded.params) == {"token_embedder", "encoder"}
  enc, _ = _batch(2)
  mask = (enc > 0).astype(np.int64)
  with torch.no_grad():
    hidden = model(input_ids=torch.tensor(enc), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
  out = np.asarray(loaded.module.apply({"params": loaded.params}, enc))
  valid = mask.astype(bool)
  assert np.abs(out[valid] - hidden[valid]).max() <= 1e-4
  pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  pooled /= np.linalg.norm(pooled, axis=-1, keepdims=True)
  emb = np.asarray(t5_sentence_embeddings(loaded.module, loaded.params, jnp.asarray(enc)))
  assert emb.shape == (3, 16)
  np.testing.assert_allclose(emb, pooled, atol=1e-5)


def test_bf16_compute_close_to_fp32(hf_t5):
  path, _ = hf_t5
  f32 = t5_loaders.load_t5(path)
  b16 = t5_loaders.load_t5(path, dtype="bfloat16")
  enc, dec = _batch()
  a = np.asarray(f32.module.apply({"params": f32.params}, enc, dec))
  b = np.asarray(b16.module.apply({"params": b16.params}, enc, dec))
  assert b.dtype == np.float32  # logits stay float32
  encoded = b16.module.apply({"params": b16.params}, enc, method=b16.module.encode)
  assert encoded.dtype == jnp.bfloat16
  rel = np.abs(a - b).max() / np.abs(a).max()
  assert 0 < rel < 0.1, rel
  assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.8


def test_decode_with_cache_equals_full_decode(hf_t5):
  path, _ = hf_t5
  loaded = t5_loaders.load_t5(path)
  module, params = loaded.module, loaded.params
  enc, dec = _batch(4, enc_len=12, dec_len=9)
  full = np.asarray(module.apply({"params": params}, enc, dec))
  b, length = dec.shape
  _, variables = module.apply(
    {"params": params},
    jnp.ones_like(enc),
    jnp.ones((b, length), jnp.int32),
    jnp.ones((b, length), jnp.int32),
    decode=True,
    mutable=["cache"],
  )
  cache = variables["cache"]
  sa = cache["decoder"]["layers_0"]["self_attention"]
  assert sa["cached_key"].shape == (b, 4, 4, length) and sa["cache_index"].shape == ()  # t5x layout
  encoded = module.apply({"params": params}, enc, method=module.encode)
  step = jax.jit(
    lambda c, tok: module.apply(
      {"params": params, "cache": c},
      encoded,
      enc,
      tok,
      tok,
      decode=True,
      max_decode_length=length,
      mutable=["cache"],
      method=module.decode,
    )
  )
  for t in range(length):
    logits, upd = step(cache, jnp.asarray(dec[:, t : t + 1]))
    cache = upd["cache"]
    assert np.abs(np.asarray(logits)[:, 0] - full[:, t]).max() <= 1e-4, t
  assert int(cache["decoder"]["layers_1"]["self_attention"]["cache_index"]) == length


def test_packed_segments_equal_separate_sequences(hf_t5):
  path, _ = hf_t5
  loaded = t5_loaders.load_t5(path)
  apply = lambda *a, **k: np.asarray(loaded.module.apply({"params": loaded.params}, *a, **k))
  rng = np.random.default_rng(7)
  ea, eb = rng.integers(2, VOCAB, 5), rng.integers(2, VOCAB, 4)
  ta, tb = rng.integers(2, VOCAB, 3), rng.integers(2, VOCAB, 4)
  shift = lambda t: np.concatenate([[0], t[:-1]])
  alone = [apply(e[None], shift(t)[None], t[None]) for e, t in ((ea, ta), (eb, tb))]
  enc = np.concatenate([ea, eb, [0]])[None]
  enc_seg = np.array([[1] * 5 + [2] * 4 + [0]])
  tgt = np.concatenate([ta, tb, [0, 0]])[None]
  dec = np.concatenate([shift(ta), shift(tb), [0, 0]])[None]
  dec_seg = np.array([[1] * 3 + [2] * 4 + [0, 0]])
  packed = apply(enc, dec, tgt, encoder_segment_ids=enc_seg, decoder_segment_ids=dec_seg)
  assert np.abs(packed[0, :3] - alone[0][0]).max() <= 1e-4
  assert np.abs(packed[0, 3:7] - alone[1][0]).max() <= 1e-4


def _t5x_to_hf_state(target, config):
  """Independent reverse mapping t5x names/layout -> HF T5 names, to run the T5X checkpoint in transformers."""
  f = flat(target)
  sd = {
    "shared.weight": f["token_embedder/embedding"],
    "lm_head.weight": f["decoder/logits_dense/kernel"].T,
    "encoder.final_layer_norm.weight": f["encoder/encoder_norm/scale"],
    "decoder.final_layer_norm.weight": f["decoder/decoder_norm/scale"],
    **{
      f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight": f[f"{stack}/relpos_bias/rel_embedding"].T
      for stack in ("encoder", "decoder")
    },
  }
  subs = {
    "encoder": [
      ("attention", "0.SelfAttention"),
      ("pre_attention_layer_norm", "0.layer_norm"),
      ("mlp", "1.DenseReluDense"),
      ("pre_mlp_layer_norm", "1.layer_norm"),
    ],
    "decoder": [
      ("self_attention", "0.SelfAttention"),
      ("pre_self_attention_layer_norm", "0.layer_norm"),
      ("encoder_decoder_attention", "1.EncDecAttention"),
      ("pre_cross_attention_layer_norm", "1.layer_norm"),
      ("mlp", "2.DenseReluDense"),
      ("pre_mlp_layer_norm", "2.layer_norm"),
    ],
  }
  for stack, pairs in subs.items():
    for i in range(2):
      for ours, hf in pairs:
        pre = f"{stack}/layers_{i}/{ours}"
        if ours.endswith("norm"):
          sd[f"{stack}.block.{i}.layer.{hf}.weight"] = f[f"{pre}/scale"]
        elif ours == "mlp":
          for w in ("wi_0", "wi_1", "wo"):
            sd[f"{stack}.block.{i}.layer.{hf}.{w}.weight"] = f[f"{pre}/{w}/kernel"].T
        else:
          for w, h in (("query", "q"), ("key", "k"), ("value", "v"), ("out", "o")):
            sd[f"{stack}.block.{i}.layer.{hf}.{h}.weight"] = f[f"{pre}/{w}/kernel"].T  # flat 2-D in t5x
  return {k: torch.tensor(np.ascontiguousarray(v)) for k, v in sd.items()}


def test_t5x_legacy_msgpack_checkpoint_loads_and_matches_transformers(data_dir):
  path = data_dir / "checkpoints" / "t5x_tiny.checkpoint_0"
  loaded = t5_loaders.load_t5(path)
  cfg = loaded.config
  assert (cfg.vocab_size, cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.d_ff) == (32128, 8, 4, 3, 16)
  assert (cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.tie_word_embeddings) == (2, 2, False)
  assert len(flat(loaded.params)) == 52  # every array of the checkpoint's target tree, none left over
  enc = np.array([[37, 423, 215, 1510, 1, 0, 0], [8, 55, 1, 0, 0, 0, 0]])
  dec = np.array([[0, 37, 423, 1], [0, 8, 55, 1]])
  out = np.asarray(loaded.module.apply({"params": loaded.params}, enc, dec))
  assert out.shape == (2, 4, 32128) and np.isfinite(out).all()
  # the same weights run by transformers give the same logits
  target = t5_loaders.read_t5x_target(path)
  hf_cfg = transformers.T5Config(
    vocab_size=32128,
    d_model=8,
    d_kv=3,
    d_ff=16,
    num_layers=2,
    num_heads=4,
    feed_forward_proj="gated-gelu",
    tie_word_embeddings=False,
    dropout_rate=0.0,
  )
  model = transformers.T5ForConditionalGeneration(hf_cfg).eval()
  model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())  # untie (transformers>=5 ties)
  missing, unexpected = model.load_state_dict(_t5x_to_hf_state(target, cfg), strict=False)
  assert not unexpected and all("embed_tokens" in m for m in missing)
  model.config.scale_decoder_outputs = False
  ref = _hf_logits(model, enc, dec)
  assert np.abs(out - ref).max() <= 1e-4, np.abs(out - ref).max()


def _rewrite(src, dst, edit_state=None, edit_config=None):
  shutil.copytree(src, dst)
  if edit_state:
    sd = load_file(str(dst / "model.safetensors"))
    edit_state(sd)
    save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
  if edit_config:
    cfg = json.loads((dst / "config.json").read_text())
    edit_config(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
  return dst


def test_bad_checkpoints_name_offending_tensors(hf_t5, tmp_path):
  path, _ = hf_t5
  name = "encoder.block.1.layer.1.DenseReluDense.wi_0.weight"
  bad = _rewrite(path, tmp_path / "missing", edit_state=lambda sd: sd.pop(name))
  with pytest.raises(CheckpointError, match=r"missing tensors: encoder/layers_1/mlp/wi_0/kernel"):
    t5_loaders.load_t5(bad)
  bad = _rewrite(
    path, tmp_path / "extra", edit_state=lambda sd: sd.update({"encoder.block.0.extra.weight": torch.zeros(3)})
  )
  with pytest.raises(CheckpointError, match=r"unexpected tensors: .*encoder\.block\.0\.extra\.weight"):
    t5_loaders.load_t5(bad)
  bad = _rewrite(
    path, tmp_path / "shape", edit_state=lambda sd: sd.update({"decoder.final_layer_norm.weight": torch.ones(17)})
  )
  with pytest.raises(
    CheckpointError,
    match=r"mis-shaped tensors: decoder/decoder_norm/scale: expected \(16,\), "
    r"got \(17,\)",
  ):
    t5_loaders.load_t5(bad)
  bad = _rewrite(
    path, tmp_path / "arch", edit_config=lambda c: c.update(model_type="bart", architectures=["BartModel"])
  )
  with pytest.raises(CheckpointError, match=r"unknown architecture model_type='bart'"):
    t5_loaders.load_t5(bad)
  with pytest.raises(FileNotFoundError, match="does_not_exist"):
    t5_loaders.load_t5(tmp_path / "does_not_exist")
  junk = tmp_path / "junk.msgpack"
  junk.write_bytes(b"\x00not a checkpoint")
  with pytest.raises(CheckpointError, match="junk.msgpack"):
    t5_loaders.load_t5(junk)


def test_config_rejects_unknown_activation():
  with pytest.raises(ValueError, match="gated-swish"):
    T5Config(feed_forward_proj="gated-swish")
  with pytest.raises(ValueError, match="float64"):
    T5Config(dtype="float64")
  with pytest.raises(ValueError, match=r"\[batch, length\]"):
    m = T5(
      T5Config(vocab_size=8, d_model=4, num_heads=2, head_dim=2, d_ff=4, num_encoder_layers=1, num_decoder_layers=1)
    )
    m.init(jax.random.PRNGKey(0), jnp.ones((3,), jnp.int32), jnp.ones((1, 2), jnp.int32))


# ------------------------------------------------------------- output scaling across the T5 family and versions
def _save_family(path, cls_cfg, cls_model, *, seed, separate_head=False, edit_config=None):
  """A random tiny T5-family model written by the installed transformers (5.x), optionally with its own
  ``lm_head.weight`` and a config.json edited into an older layout; returns HF's model reloaded from ``path``."""
  cfg = cls_cfg(
    vocab_size=VOCAB,
    d_model=16,
    d_kv=4,
    d_ff=32,
    num_layers=2,
    num_decoder_layers=1,
    num_heads=4,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=20,
    dropout_rate=0.0,
    decoder_start_token_id=0,
    pad_token_id=0,
    eos_token_id=1,
  )
  model = cls_model(cfg).eval()
  _randomize(model, seed)
  model.save_pretrained(str(path))
  if separate_head:
    sd = load_file(str(path / "model.safetensors"))
    sd["lm_head.weight"] = torch.randn(VOCAB, 16, generator=torch.Generator().manual_seed(seed + 1))
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
  if edit_config:
    cfg_json = json.loads((path / "config.json").read_text())
    edit_config(cfg_json)
    (path / "config.json").write_text(json.dumps(cfg_json))
  reloaded = cls_model.from_pretrained(str(path)).eval()
  if separate_head:
    assert not torch.equal(reloaded.lm_head.weight, reloaded.shared.weight)  # HF really uses the saved head
  return reloaded


def _as_transformers4(cfg_json, tie):
  cfg_json["transformers_version"] = "4.41.2"
  cfg_json.pop("scale_decoder_outputs", None)
  if tie is None:
    cfg_json.pop("tie_word_embeddings", None)
  else:
    cfg_json["tie_word_embeddings"] = tie


T5_FAMILY_CASES = {
  # name: (config class, model class, separate lm_head, config edit, expected (tied, scaled))
  "mt5_transformers5": ("MT5Config", "MT5ForConditionalGeneration", False, None, (True, False)),
  "mt5_transformers4_layout": (
    "MT5Config",
    "MT5ForConditionalGeneration",
    True,
    lambda c: _as_transformers4(c, False),
    (False, False),
  ),
  "t5v10_transformers4_layout_no_tie_field": (
    "T5Config",
    "T5ForConditionalGeneration",
    False,
    lambda c: _as_transformers4(c, None),
    (True, True),
  ),
  "t5v11_transformers4_layout": (
    "T5Config",
    "T5ForConditionalGeneration",
    True,
    lambda c: _as_transformers4(c, False),
    (False, False),
  ),
}


@pytest.mark.parametrize("case", sorted(T5_FAMILY_CASES))
def test_t5_family_output_scaling_matches_hf(case, tmp_path):
  cfg_cls, model_cls, separate, edit, (tied, scaled) = T5_FAMILY_CASES[case]
  model = _save_family(
    tmp_path,
    getattr(transformers, cfg_cls),
    getattr(transformers, model_cls),
    seed=11,
    separate_head=separate,
    edit_config=edit,
  )
  loaded = t5_loaders.load_t5(tmp_path)
  assert (loaded.config.tie_word_embeddings, loaded.config.scales_decoder_outputs) == (tied, scaled)
  enc, dec = _batch(6, enc_len=11, dec_len=7)
  ref = _hf_logits(model, enc, dec)
  out = np.asarray(loaded.module.apply({"params": loaded.params}, enc, dec))
  assert np.abs(out - ref).max() <= 1e-4, np.abs(out - ref).max()


def test_output_scaling_decision_table():
  decide = t5_loaders.hf_scales_decoder_outputs
  # transformers 5 mT5: tie forced true, no scale field -> never scaled (the silent d_model**-0.5 bug)
  assert not decide(
    {"model_type": "mt5", "tie_word_embeddings": True, "transformers_version": "5.0.0"}, separate_lm_head=False
  )
  # transformers 4 mT5 that said tie_word_embeddings: true was tied and scaled; its default (absent) was untied
  assert decide(
    {"model_type": "mt5", "tie_word_embeddings": True, "transformers_version": "4.30.0"}, separate_lm_head=False
  )
  assert not decide({"model_type": "mt5", "transformers_version": "4.30.0"}, separate_lm_head=True)
  # T5: transformers 5 records the choice; older configs tie iff scale; no field -> what the weights say
  assert not decide(
    {"model_type": "t5", "tie_word_embeddings": True, "scale_decoder_outputs": False}, separate_lm_head=True
  )
  assert decide({"model_type": "t5", "tie_word_embeddings": True}, separate_lm_head=False)
  assert not decide({"model_type": "t5", "tie_word_embeddings": False}, separate_lm_head=True)
  assert decide({"model_type": "t5"}, separate_lm_head=False)
  assert not decide({"model_type": "t5"}, separate_lm_head=True)


def test_umt5_is_refused_naming_the_model_type(tmp_path):
  cfg = transformers.UMT5Config(vocab_size=VOCAB, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
  transformers.UMT5ForConditionalGeneration(cfg).save_pretrained(str(tmp_path))
  with pytest.raises(CheckpointError, match=r"model_type='umt5'.*relative-position table in every layer"):
    t5_loaders.load_t5(tmp_path)
