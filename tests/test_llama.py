"""Llama network, HF loader, KV cache, generation and sharding on tiny random checkpoints written by HF.

The reference is HF transformers' ``LlamaForCausalLM`` (PyTorch, test-only) on a random tiny config with
grouped-query attention, saved with ``save_pretrained`` and loaded back by ``load_llama``. Token ids come from
real C4 text (its UTF-8 bytes folded into the tiny vocabulary).
"""

import gzip
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tokensift.models import partitioning
from tokensift.models.checkpoint_check import CheckpointError
from tokensift.models.generate import greedy_generate, last_token_logits
from tokensift.models.llama import Llama, LlamaConfig
from tokensift.models.llama_loaders import hf_config_dict, hf_state_dict, load_llama, params_from_hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 96
HF_TINY = dict(
  vocab_size=VOCAB,
  hidden_size=32,
  intermediate_size=48,
  num_hidden_layers=2,
  num_attention_heads=4,
  num_key_value_heads=2,
  rope_theta=5000.0,
  initializer_range=0.2,
  rms_norm_eps=1e-6,
  max_position_embeddings=256,
)


def c4_token_rows(data_dir, n, length, vocab=VOCAB, offset=0):
  """``n`` rows of ``length`` ids from real C4 documents (UTF-8 bytes mod vocab, avoiding id 0)."""
  rows = []
  with gzip.open(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
    for i, line in enumerate(f):
      if i < offset:
        continue
      ids = [1 + b % (vocab - 1) for b in json.loads(line)["text"].encode()][:length]
      if len(ids) == length:
        rows.append(ids)
      if len(rows) == n:
        break
  return np.asarray(rows, np.int32)


def save_hf_tiny(directory, tie):
  torch.manual_seed(0 if tie else 1)
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(tie_word_embeddings=tie, **HF_TINY)).eval()
  with torch.no_grad():  # non-trivial norm scales, so a swapped norm mapping cannot pass
    for name, p in model.named_parameters():
      if "norm" in name:
        p.uniform_(0.5, 1.5)
  model.save_pretrained(directory)
  return model


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def hf_tiny(request, tmp_path_factory):
  directory = tmp_path_factory.mktemp("llama_tied" if request.param else "llama_untied")
  return save_hf_tiny(directory, request.param), directory


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """One loaded tiny GQA model (untied) for the cache / generation / sharding tests."""
  directory = tmp_path_factory.mktemp("llama_tiny")
  hf = save_hf_tiny(directory, tie=False)
  return hf, load_llama(directory)


def jitted_apply(module):
  """``module.apply`` under jit (eager op-by-op apply is many times slower, even for tiny configs)."""
  return jax.jit(lambda params, *args, **kwargs: module.apply({"params": params}, *args, **kwargs))


def hf_logits(model, tokens, mask=None):
  with torch.no_grad():
    kwargs = {} if mask is None else {"attention_mask": torch.tensor(mask)}
    return model(torch.tensor(np.asarray(tokens), dtype=torch.long), **kwargs).logits.float().numpy()


def test_hf_parity_fp32(hf_tiny, data_dir):
  model, directory = hf_tiny
  loaded = load_llama(directory)
  assert loaded.architecture == "llama" and loaded.config.num_kv_heads == 2 and loaded.config.num_heads == 4
  assert loaded.config.tie_word_embeddings == model.config.tie_word_embeddings
  assert ("lm_head" in loaded.params) != loaded.config.tie_word_embeddings
  tokens = c4_token_rows(data_dir, 3, 24)
  lengths = np.array([24, 17, 9])
  mask = (np.arange(24)[None] < lengths[:, None]).astype(np.int64)
  tokens = tokens * mask  # right padding with 0
  ref = hf_logits(model, tokens, mask)
  ours = np.asarray(jitted_apply(loaded.module)(loaded.params, tokens))
  assert ours.dtype == np.float32 and ours.shape == (3, 24, VOCAB)
  for row, n in enumerate(lengths):
    np.testing.assert_allclose(ours[row, :n], ref[row, :n], atol=1e-4, rtol=0)
  assert np.abs(ref).max() > 1.0  # the comparison is not between near-zero logits
  last = np.asarray(last_token_logits(loaded.module, loaded.params, tokens, lengths))
  np.testing.assert_allclose(last, ref[np.arange(3), lengths - 1], atol=1e-4, rtol=0)


def test_hf_export_round_trips(tiny):
  hf, lm = tiny
  exported = hf_state_dict(lm.config, lm.params)
  reference = {k: v.numpy() for k, v in hf.state_dict().items()}
  assert exported.keys() == reference.keys()
  for name, value in exported.items():
    np.testing.assert_array_equal(value, reference[name], err_msg=name)
  again = params_from_hf(lm.config, exported, source="export")
  jax.tree.map(np.testing.assert_array_equal, again, lm.params)
  cfg = hf_config_dict(lm.config)
  assert {k: cfg[k] for k in ("num_key_value_heads", "head_dim", "tie_word_embeddings")} == {
    "num_key_value_heads": 2,
    "head_dim": 8,
    "tie_word_embeddings": False,
  }


def test_bfloat16_compute_tracks_fp32(tiny, data_dir):
  _, fp32 = tiny
  bf16 = load_llama(fp32.source, dtype="bfloat16")
  assert bf16.config.dtype == "bfloat16"
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(bf16.params))
  tokens = c4_token_rows(data_dir, 2, 16)
  a = np.asarray(jitted_apply(fp32.module)(fp32.params, tokens))
  b = np.asarray(jitted_apply(bf16.module)(bf16.params, tokens))
  assert b.dtype == np.float32
  assert np.abs(a - b).max() < 0.05 * np.abs(a).max()
  assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.9


def test_packed_segments_equal_separate_rows(tiny, data_dir):
  _, lm = tiny
  a, b = c4_token_rows(data_dir, 2, 10)
  packed = np.concatenate([a, b[:7], np.zeros(3, np.int32)])[None]
  segments = np.array([[1] * 10 + [2] * 7 + [0] * 3])
  positions = np.array([list(range(10)) + list(range(7)) + [0] * 3])
  targets = packed  # t5x: target 0 marks padding
  apply = jitted_apply(lm.module)
  out = np.asarray(apply(lm.params, packed, targets, decoder_segment_ids=segments, decoder_positions=positions))
  sep = np.asarray(apply(lm.params, np.stack([a, np.concatenate([b[:7], np.zeros(3, np.int32)])])))
  sep_a, sep_b = sep[:1], sep[1:, :7]
  np.testing.assert_allclose(out[0, :10], sep_a[0], atol=1e-5)
  np.testing.assert_allclose(out[0, 10:17], sep_b[0], atol=1e-5)


def test_prefix_lm_attention_is_bidirectional_inside_the_prefix(tiny, data_dir):
  _, lm = tiny
  tokens = c4_token_rows(data_dir, 1, 12)
  changed = tokens.copy()
  changed[0, 4] = changed[0, 4] % (VOCAB - 1) + 1
  prefix = (np.arange(12) < 6).astype(np.int32)[None]

  apply = jitted_apply(lm.module)

  def run(t, causal):
    return np.asarray(apply(lm.params, t, decoder_causal_attention=causal))

  # Causal: positions before 4 cannot see the change; prefix-LM: they can (4 is inside the 6-token prefix).
  np.testing.assert_allclose(run(tokens, None)[0, :4], run(changed, None)[0, :4], atol=1e-6)
  assert np.abs(run(tokens, prefix)[0, :4] - run(changed, prefix)[0, :4]).max() > 1e-3
  # Past the prefix, attention stays causal: position 7 does not depend on position 8.
  later = tokens.copy()
  later[0, 8] = later[0, 8] % (VOCAB - 1) + 1
  np.testing.assert_allclose(run(tokens, prefix)[0, :8], run(later, prefix)[0, :8], atol=1e-6)


def test_kv_cache_decoding_equals_full_forward(tiny, data_dir):
  """The t5x protocol: a decode=True init call sizes the cache, prefill writes prompts of different lengths,
  then one token per call; every step's logits equal the full forward's at that position."""
  _, lm = tiny
  module, params = lm.module, lm.params
  seqs = c4_token_rows(data_dir, 2, 14, offset=5)
  full = np.asarray(jitted_apply(module)(params, seqs))
  prompt_lengths = np.array([3, 6])
  prompts = seqs * (np.arange(14)[None] < prompt_lengths[:, None])
  _, init_vars = jax.jit(lambda p, t: module.apply({"params": p}, t, t, decode=True, mutable=["cache"]))(
    params, jnp.ones_like(seqs)
  )
  cache = init_vars["cache"]
  assert cache["layers_0"]["attention"]["cached_key"].shape == (2, 14, 2, 8)
  logits, state = jax.jit(
    lambda p, c, t, n: module.apply({"params": p, "cache": c}, t, prefill=True, prefill_lengths=n, mutable=["cache"])
  )(params, cache, prompts, prompt_lengths)
  cache = state["cache"]
  np.testing.assert_array_equal(cache["layers_1"]["attention"]["cache_index"], prompt_lengths)
  for row, n in enumerate(prompt_lengths):
    np.testing.assert_allclose(np.asarray(logits)[row, :n], full[row, :n], atol=1e-5)
  step = jax.jit(lambda p, c, t: module.apply({"params": p, "cache": c}, t, decode=True, mutable=["cache"]))
  for k in range(6):
    pos = prompt_lengths + k
    token = seqs[np.arange(2), pos][:, None]
    logits, state = step(params, cache, token)
    cache = state["cache"]
    np.testing.assert_allclose(np.asarray(logits)[:, 0], full[np.arange(2), pos], atol=1e-5)


def naive_greedy(module, params, prompt, steps, width=32):
  """Reference: recompute the whole prefix every step (no cache) and take the argmax."""
  seq = list(prompt)
  for _ in range(steps):
    tokens = np.zeros((1, width), np.int32)
    tokens[0, : len(seq)] = seq
    seq.append(int(np.argmax(last_token_logits(module, params, tokens, np.array([len(seq)]))[0])))
  return seq[len(prompt) :]


def test_greedy_generate_equals_recomputed_argmax_and_stops_at_eos(tiny, data_dir):
  _, lm = tiny
  rows = c4_token_rows(data_dir, 3, 9, offset=20)
  prompts = [rows[0, :2].tolist(), rows[1, :9].tolist(), rows[2, :5].tolist()]
  expected = [naive_greedy(lm.module, lm.params, p, 8) for p in prompts]
  got = greedy_generate(lm.module, lm.params, prompts, max_new_tokens=8, eos_id=None)
  assert got == expected
  # eos: the row whose continuation holds a token stops right before its first occurrence; eos not returned.
  eos = expected[1][3]
  got = greedy_generate(lm.module, lm.params, prompts, max_new_tokens=8, eos_id=eos)
  for exp, out in zip(expected, got):
    assert out == (exp[: exp.index(eos)] if eos in exp else exp)
  with pytest.raises(ValueError, match=r"prompts \[1\] are empty"):
    greedy_generate(lm.module, lm.params, [[1], []], max_new_tokens=2, eos_id=None)


def test_sharded_on_mesh_data4_model2_matches_single_device(tiny, data_dir):
  assert jax.device_count() == 8
  _, lm = tiny
  mesh = partitioning.make_mesh(partitioning.MeshConfig(data=4, model=2))
  tokens = c4_token_rows(data_dir, 8, 16, offset=40)
  shardings = partitioning.param_shardings(lm.module, mesh, tokens)
  params = partitioning.place_params(lm.params, shardings)
  attn = params["layers_0"]["attention"]
  assert attn["query"].sharding.spec == P(None, "model", None)  # heads over 'model'
  assert attn["query"].addressable_shards[0].data.shape == (32, 2, 8)
  assert attn["key"].sharding.spec == P(None, None, None)  # kv_heads replicated by the rules
  assert attn["out"].sharding.spec == P("model", None, None)
  assert params["layers_1"]["mlp"]["gate"].sharding.spec == P(None, "model")
  assert params["layers_1"]["mlp"]["down"].sharding.spec == P("model", None)
  assert params["layers_1"]["mlp"]["down"].addressable_shards[0].data.shape == (24, 32)
  assert params["token_embed"]["embedding"].sharding.spec == P("model", None)
  assert params["lm_head"]["kernel"].sharding.spec == P(None, "model")
  fsdp = partitioning.param_shardings(lm.module, mesh, tokens, rules="fsdp")
  assert fsdp["layers_0"]["attention"]["query"].spec == P("data", "model", None)

  apply = partitioning.jit_apply(lm.module, mesh, shardings)
  sharded = apply(params, jax.device_put(tokens, partitioning.batch_sharding(mesh)))
  assert sharded.sharding.spec[0] == "data"
  single = jitted_apply(lm.module)(lm.params, tokens)
  np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), atol=1e-5)

  lengths = np.array([16, 3, 9, 12, 1, 7, 16, 5])
  np.testing.assert_allclose(
    np.asarray(last_token_logits(lm.module, params, tokens, lengths, mesh=mesh)),
    np.asarray(last_token_logits(lm.module, lm.params, tokens, lengths)),
    atol=1e-5,
  )
  prompts = [tokens[i, :n].tolist() for i, n in enumerate([4, 9, 2])]  # batch padded to the data axis
  assert greedy_generate(lm.module, params, prompts, max_new_tokens=5, eos_id=None, mesh=mesh) == greedy_generate(
    lm.module, lm.params, prompts, max_new_tokens=5, eos_id=None
  )


# ------------------------------------------------------------------------------------------ bad checkpoints


def _rewrite(src, dst, edit_tensors=None, edit_config=None):
  from safetensors.numpy import load_file, save_file

  shutil.copytree(src, dst)
  if edit_tensors:
    tensors = load_file(str(src / "model.safetensors"))
    edit_tensors(tensors)
    save_file(tensors, str(dst / "model.safetensors"))
  if edit_config:
    cfg = json.loads((src / "config.json").read_text())
    edit_config(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
  return dst


@pytest.fixture(scope="module")
def tiny_dir(tiny):
  from pathlib import Path

  return Path(tiny[1].source)


def test_missing_extra_and_misshaped_tensors_are_named(tiny_dir, tmp_path):
  def edit(t):
    del t["model.layers.1.mlp.up_proj.weight"]
    t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((8, 32), np.float32)
    t["model.layers.2.mlp.up_proj.weight"] = np.zeros((48, 32), np.float32)

  bad = _rewrite(tiny_dir, tmp_path / "bad", edit_tensors=edit)
  with pytest.raises(CheckpointError) as err:
    load_llama(bad)
  msg = str(err.value)
  assert "missing tensors: model.layers.1.mlp.up_proj.weight" in msg
  assert "unexpected tensors: model.layers.2.mlp.up_proj.weight" in msg
  assert "model.layers.0.self_attn.k_proj.weight: expected (16, 32), got (8, 32)" in msg
  assert str(bad) in msg


def test_config_mismatch_and_unknown_architecture(tiny_dir, tmp_path):
  fewer_heads = _rewrite(tiny_dir, tmp_path / "kv", edit_config=lambda c: c.update(num_key_value_heads=1))
  with pytest.raises(CheckpointError, match=r"model\.layers\.0\.self_attn\.k_proj\.weight: expected \(8, 32\)"):
    load_llama(fewer_heads)
  gpt2 = _rewrite(
    tiny_dir, tmp_path / "gpt2", edit_config=lambda c: c.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
  )
  with pytest.raises(CheckpointError, match=r"unknown architecture model_type='gpt2'.*GPT2LMHeadModel"):
    load_llama(gpt2)
  scaled = _rewrite(
    tiny_dir,
    tmp_path / "yarn",
    edit_config=lambda c: c.update(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4}),
  )
  with pytest.raises(CheckpointError, match="unsupported llama features: rope_parameters.rope_type='yarn'"):
    load_llama(scaled)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    load_llama(tmp_path / "nowhere")


def test_llama_config_validates():
  with pytest.raises(ValueError, match="num_heads=6 is not a multiple of num_kv_heads=4"):
    LlamaConfig(vocab_size=8, hidden_size=24, intermediate_size=8, num_layers=1, num_heads=6, num_kv_heads=4)
  with pytest.raises(ValueError, match="dtype='float64'"):
    LlamaConfig(
      vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=1, num_heads=2, num_kv_heads=1, dtype="float64"
    )
  cfg = LlamaConfig(vocab_size=8, hidden_size=8, intermediate_size=8, num_layers=1, num_heads=2, num_kv_heads=1)
  with pytest.raises(Exception):
    cfg.num_layers = 2  # frozen
  assert Llama(cfg) == Llama(cfg)  # hashable/comparable: the jitted helpers cache per module


def test_remat_gives_the_same_loss_and_gradients(tiny, data_dir):
  import dataclasses

  _, lm = tiny
  tokens = c4_token_rows(data_dir, 2, 12, offset=60)

  def loss(module):
    def fn(params):
      logits = module.apply({"params": params}, tokens[:, :-1])
      logp = jax.nn.log_softmax(logits)
      return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()

    return jax.jit(jax.value_and_grad(fn))(lm.params)

  plain = loss(lm.module)
  remat = loss(Llama(dataclasses.replace(lm.config, remat=True)))
  np.testing.assert_allclose(remat[0], plain[0], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), remat[1], plain[1])
  assert float(jnp.abs(plain[1]["layers_0"]["attention"]["query"]).max()) > 0


def test_sharded_bfloat16_safetensors_checkpoint(tiny, tmp_path):
  """``save_pretrained`` with small shards writes model.safetensors.index.json; bf16 tensors load exactly."""
  import copy

  hf, lm = tiny
  copy.deepcopy(hf).to(torch.bfloat16).save_pretrained(tmp_path, max_shard_size="20KB")
  assert (tmp_path / "model.safetensors.index.json").exists() and len(list(tmp_path.glob("*.safetensors"))) > 1
  loaded = load_llama(tmp_path)
  rounded = jax.tree.map(lambda x: np.asarray(jnp.asarray(x, jnp.bfloat16).astype(jnp.float32)), lm.params)
  jax.tree.map(np.testing.assert_array_equal, loaded.params, rounded)
