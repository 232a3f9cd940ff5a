"""GGUF loading: tiny GGUF files written by the test (llama.cpp tensor names and Q/K row order), bad GGUF
files, and the real SmolLM2-135M-Instruct GGUF against HF transformers loading the same file."""

import gzip
import json

import numpy as np
import pytest

from tokensift.core import paths
from tokensift.models.checkpoint_check import CheckpointError
from tokensift.models.generate import greedy_generate
from tokensift.models.llama_loaders import load_llama, unpermute_rope_rows

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from test_llama import HF_TINY, c4_token_rows, hf_logits, jitted_apply, save_hf_tiny  # noqa: E402


def llama_cpp_permute(w, n_heads):
  """What llama.cpp's convert script does to Q/K rows (written here independently of the loader's inverse)."""
  head_dim = w.shape[0] // n_heads
  out = np.empty_like(w)
  for h in range(n_heads):
    block = w[h * head_dim : (h + 1) * head_dim]
    half = head_dim // 2
    out[h * head_dim : (h + 1) * head_dim][0::2] = block[:half]
    out[h * head_dim : (h + 1) * head_dim][1::2] = block[half:]
  return out


def write_gguf(path, model, arch="llama", drop=()):
  """Writes an HF LlamaForCausalLM as an F32 GGUF file in llama.cpp's layout."""
  cfg = model.config
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(cfg.num_hidden_layers)
  w.add_context_length(cfg.max_position_embeddings)
  w.add_embedding_length(cfg.hidden_size)
  w.add_feed_forward_length(cfg.intermediate_size)
  w.add_head_count(cfg.num_attention_heads)
  w.add_head_count_kv(cfg.num_key_value_heads)
  w.add_rope_freq_base(HF_TINY["rope_theta"])
  w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
  names = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
  }
  parts = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
  }
  for name, tensor in model.state_dict().items():
    if name == "lm_head.weight" and cfg.tie_word_embeddings:
      continue
    if name.startswith("model.layers."):
      i, rest = name[len("model.layers.") :].split(".", 1)
      gname = f"blk.{i}.{parts[rest.rsplit('.', 1)[0]]}.weight"
    else:
      gname = names[name]
    arr = tensor.detach().numpy().astype(np.float32)
    if gname.endswith("attn_q.weight"):
      arr = llama_cpp_permute(arr, cfg.num_attention_heads)
    elif gname.endswith("attn_k.weight"):
      arr = llama_cpp_permute(arr, cfg.num_key_value_heads)
    if gname not in drop:
      w.add_tensor(gname, arr)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


@pytest.fixture(scope="module")
def hf_untied(tmp_path_factory):
  return save_hf_tiny(tmp_path_factory.mktemp("hf_for_gguf"), tie=False)


def test_unpermute_inverts_llama_cpp_permutation():
  w = np.arange(3 * 8 * 5, dtype=np.float32).reshape(24, 5)
  np.testing.assert_array_equal(unpermute_rope_rows(llama_cpp_permute(w, 3), 3), w)


def test_tiny_gguf_matches_hf(hf_untied, tmp_path, data_dir):
  path = write_gguf(tmp_path / "tiny.gguf", hf_untied)
  loaded = load_llama(path)
  cfg = loaded.config
  assert (cfg.num_heads, cfg.num_kv_heads, cfg.num_layers, cfg.vocab_size) == (4, 2, 2, HF_TINY["vocab_size"])
  assert cfg.rope_theta == HF_TINY["rope_theta"] and not cfg.tie_word_embeddings and loaded.tokenizer is None
  tokens = c4_token_rows(data_dir, 2, 20)
  np.testing.assert_allclose(
    np.asarray(jitted_apply(loaded.module)(loaded.params, tokens)), hf_logits(hf_untied, tokens), atol=1e-4, rtol=0
  )


def test_bad_gguf_files_are_named(hf_untied, tmp_path):
  with pytest.raises(CheckpointError, match=r"unknown architecture general.architecture='gpt2'"):
    load_llama(write_gguf(tmp_path / "gpt2.gguf", hf_untied, arch="gpt2"))
  with pytest.raises(CheckpointError, match=r"missing tensors: blk\.1\.ffn_up\.weight"):
    load_llama(write_gguf(tmp_path / "missing.gguf", hf_untied, drop=("blk.1.ffn_up.weight",)))
  junk = tmp_path / "junk.gguf"
  junk.write_bytes(b"not a gguf file at all" * 10)
  with pytest.raises(CheckpointError, match="not a readable GGUF file"):
    load_llama(junk)


# ------------------------------------------------------------------------------- real SmolLM2-135M-Instruct


@pytest.fixture(scope="module")
def smollm2():
  path = paths.smollm2_gguf()
  ours = load_llama(path)
  hf = transformers.AutoModelForCausalLM.from_pretrained(
    str(path.parent), gguf_file=path.name, dtype=torch.float32
  ).eval()
  from tokenizers import Tokenizer

  return ours, hf, Tokenizer.from_file(str(ours.tokenizer.tokenizer_json))


def c4_texts(data_dir, n, offset=0):
  with gzip.open(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
    lines = [json.loads(line)["text"] for _, line in zip(range(offset + n), f)]
  return lines[offset:]


def test_smollm2_gguf_logits_match_transformers(smollm2, data_dir):
  ours, hf, tok = smollm2
  cfg = ours.config
  assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size) == (30, 576, 9, 3, 49152)
  assert cfg.tie_word_embeddings and cfg.rope_theta == 100000.0 and ours.tokenizer.eos_id == 2
  ids = [tok.encode(t).ids[:40] for t in c4_texts(data_dir, 3)]
  lengths = np.array([len(i) for i in ids])
  tokens = np.zeros((3, 40), np.int32)
  for row, i in enumerate(ids):
    tokens[row, : len(i)] = i
  mask = (np.arange(40)[None] < lengths[:, None]).astype(np.int64)
  ref = hf_logits(hf, tokens, mask)
  got = np.asarray(jitted_apply(ours.module)(ours.params, tokens))
  for row, n in enumerate(lengths):
    np.testing.assert_allclose(got[row, :n], ref[row, :n], atol=1e-3, rtol=0)


def test_smollm2_greedy_generation_matches_transformers(smollm2, data_dir):
  ours, hf, tok = smollm2
  from tokensift.core.hf_tokenizer import render_chat

  texts = c4_texts(data_dir, 2, offset=3)
  prompts = [
    tok.encode(render_chat(ours.tokenizer, "Summarize in one sentence: " + " ".join(t.split()[:40]))).ids for t in texts
  ]
  assert len(prompts[0]) != len(prompts[1])  # one batch with different prompt lengths
  eos = ours.tokenizer.eos_id
  got = greedy_generate(ours.module, ours.params, prompts, max_new_tokens=20, eos_id=eos)
  for prompt, out in zip(prompts, got):
    with torch.no_grad():
      ref = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, eos_token_id=eos, pad_token_id=eos)[
        0, len(prompt) :
      ].tolist()
    ref = ref[: ref.index(eos)] if eos in ref else ref
    assert out == ref
    assert len(out) > 5, tok.decode(out)
