"""Model FLOPs of the benchmarked computations (pure functions of the configs), for the fraction of the
matmul roofline and MFU that ``bench.py`` reports.

Convention (PaLM, Chowdhery et al. 2022, appendix B): a matmul of ``[m, k] x [k, n]`` is ``2 m k n`` FLOPs; a
forward pass costs ``2 N`` per token for the ``N`` weights that multiply it, plus ``4 L T H`` per token for
attention over ``T`` keys (``Q K^T`` and ``P V``; ``H`` = heads x head dim, counted over all ``T`` keys even
under a causal mask, as the implementation computes them); training costs three times the forward (``6 N`` +
``12 L T H``). Embedding look-ups, norms, softmaxes and rematerialisation are not counted: these are model FLOPs,
so a recomputing or padding implementation is not credited for its extra work.
"""

from __future__ import annotations


def llama_layer_weights(cfg) -> int:
  """Weights that multiply each token in the decoder layers of a ``models.llama.LlamaConfig`` (all layers)."""
  d, dh = cfg.hidden_size, cfg.resolved_head_dim
  attention = d * cfg.num_heads * dh + 2 * d * cfg.num_kv_heads * dh + cfg.num_heads * dh * d
  return cfg.num_layers * (attention + 3 * d * cfg.intermediate_size)


def llama_score_flops(cfg, length: int) -> float:
  """One ASK-LLM prompt of ``length`` tokens through a decoder-only scorer: the causal forward over every
  position, the vocabulary projection at the read position only (``askllm_scorer.decoder_only_logits``)."""
  attention = 4 * cfg.num_layers * length * cfg.num_heads * cfg.resolved_head_dim
  return float(length * (2 * llama_layer_weights(cfg) + attention) + 2 * cfg.hidden_size * cfg.vocab_size)


def llama_train_flops_per_token(cfg, length: int) -> float:
  """One token of a training step on ``[batch, length]`` rows (logits at every position)."""
  weights = llama_layer_weights(cfg) + cfg.hidden_size * cfg.vocab_size
  return float(6 * weights + 12 * cfg.num_layers * length * cfg.num_heads * cfg.resolved_head_dim)


def t5_score_flops(cfg, length: int) -> float:
  """One ASK-LLM prompt of ``length`` encoder tokens through a ``models.t5.T5Config`` scorer: the encoder pass
  and one decoder step (``askllm_scorer.encoder_decoder_logits``), whose cross-attention projects the keys and
  values of all ``length`` encoder states in every decoder layer."""
  d, inner = cfg.d_model, cfg.num_heads * cfg.head_dim
  mlp = (3 if cfg.feed_forward_proj.startswith("gated-") else 2) * d * cfg.d_ff
  encoder = cfg.num_encoder_layers * length * (2 * (4 * d * inner + mlp) + 4 * length * inner)
  # one decoder position: self-attention (q, k, v, o) on itself, cross-attention q and o, the MLP ...
  step = cfg.num_decoder_layers * 2 * (4 * d * inner + 2 * d * inner + mlp)
  # ... cross-attention keys and values of every encoder state, and its scores and weighted sum over them
  cross = cfg.num_decoder_layers * (2 * 2 * d * inner * length + 4 * length * inner)
  return float(encoder + step + cross + 2 * d * cfg.vocab_size)


def matmul_flops(m: int, k: int, n: int) -> float:
  """``[m, k] x [k, n]``."""
  return 2.0 * m * k * n
