"""GGUF files of the Qwen2, Gemma and Gemma 2 architectures, written by the test with the ``gguf`` package the way
llama.cpp's convert script lays them out (``{arch}.*`` metadata, ``blk.N.*`` tensor names, Q/K rows not permuted
for these architectures, Gemma RMSNorm weights stored as ``1 + w``, no output tensor for tied embeddings),
against HF transformers running the same random tiny model."""

import numpy as np
import pytest

from tokensift.models.llama_loaders import load_llama

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from test_decoder_families import _padded_batch, save_hf_family  # noqa: E402
from test_llama import hf_logits, jitted_apply  # noqa: E402

# HF layer tensor -> llama.cpp name (Gemma 2's post_attention_layernorm is the attention output's norm)
_LAYER = {
  "input_layernorm": "attn_norm",
  "post_attention_layernorm": "ffn_norm",
  "pre_feedforward_layernorm": "ffn_norm",
  "post_feedforward_layernorm": "post_ffw_norm",
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
}


def write_family_gguf(path, model, arch):
  cfg = model.config
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(cfg.num_hidden_layers)
  w.add_context_length(cfg.max_position_embeddings)
  w.add_embedding_length(cfg.hidden_size)
  w.add_feed_forward_length(cfg.intermediate_size)
  w.add_head_count(cfg.num_attention_heads)
  w.add_head_count_kv(cfg.num_key_value_heads)
  w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
  if arch == "qwen2":
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
  else:  # gemma / gemma2: explicit head_dim, rope base left at llama.cpp's default 10000
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
  if arch == "gemma2":
    w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
    w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    w.add_sliding_window(cfg.sliding_window)
  for name, tensor in model.state_dict().items():
    if name == "lm_head.weight" and (cfg.tie_word_embeddings or arch.startswith("gemma")):
      continue
    arr = tensor.detach().numpy().astype(np.float32)
    if name.startswith("model.layers."):
      i, rest = name[len("model.layers.") :].split(".", 1)
      module, kind = rest.rsplit(".", 1)
      target = "post_attention_norm" if arch == "gemma2" and module == "post_attention_layernorm" else _LAYER[module]
      gname = f"blk.{i}.{target}.{kind}"
    else:
      gname = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
      }[name]
    if arch.startswith("gemma") and name.endswith("norm.weight"):
      arr = arr + 1.0
    w.add_tensor(gname, arr)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


@pytest.mark.parametrize("arch", ["qwen2", "gemma", "gemma2"])
def test_family_gguf_matches_hf(arch, tmp_path, data_dir):
  # llama.cpp keeps no query_pre_attn_scalar (Gemma 2 models other than 27B have it equal to head_dim) and no
  # sliding window for qwen2 (every released Qwen2/2.5 has use_sliding_window=false).
  overrides = {"gemma2": {"query_pre_attn_scalar": 16}, "qwen2": {"use_sliding_window": False}}.get(arch)
  model = save_hf_family(arch, tmp_path / "hf", seed=3, overrides=overrides)
  path = write_family_gguf(tmp_path / f"tiny-{arch}.gguf", model, arch)
  loaded = load_llama(path)
  cfg = loaded.config
  assert cfg.family == arch and cfg.attention_bias == (arch == "qwen2")
  if arch == "gemma2":
    assert (cfg.attn_logit_softcapping, cfg.final_logit_softcapping, cfg.sliding_window) == (2.0, 3.0, 5)
    assert [cfg.is_sliding(i) for i in range(2)] == [True, False]
  tokens, mask, lengths = _padded_batch(data_dir)
  ref = hf_logits(model, tokens, mask)
  ours = np.asarray(jitted_apply(loaded.module)(loaded.params, tokens))
  for row, n in enumerate(lengths):
    np.testing.assert_allclose(ours[row, :n], ref[row, :n], atol=1e-4, rtol=0, err_msg=arch)
