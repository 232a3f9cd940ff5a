"""T5 encoder pass + one decoder step (the ASK-LLM FLAN-T5 scoring shape): tokens/s, tokensift vs HF PyTorch.

Weights: random, FLAN-T5-Small's shape (d_model 512, 8 encoder + 8 decoder layers, 6 heads x 64, d_ff 1024,
gated-GELU, vocab 32128, untied lm_head). The HF ``T5ForConditionalGeneration`` is built first; tokensift gets
the very same tensors through its HF loader mapping (``t5_loaders.params_from_hf``). Batch: the first
``--batch`` real C4 validation documents tokenized with the C4 SentencePiece model (``c4-32768.model``; ids
clamped to the vocab), EOS appended, truncated to ``--length``, right-padded with 0 to the longest. Both run the
encoder over the batch and one decoder step from the start token, producing logits ``[batch, 1, vocab]``.

  python benchmarks/bench_t5_forward.py [--batch 16] [--length 256] [--repeats 5] [--dtype float32]

Prints tokens/s (real, non-padding encoder tokens per second) for both and the ratio.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics

from timing import timed  # benchmarks/timing.py (scripts run from this folder)
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLAN_T5_SMALL = dict(
  vocab_size=32128,
  d_model=512,
  d_kv=64,
  d_ff=1024,
  num_layers=8,
  num_decoder_layers=8,
  num_heads=6,
  feed_forward_proj="gated-gelu",
  relative_attention_num_buckets=32,
  relative_attention_max_distance=128,
  dropout_rate=0.0,
  decoder_start_token_id=0,
  pad_token_id=0,
  eos_token_id=1,
)
# google/flan-t5-large's config.json (783M parameters)
FLAN_T5_LARGE = dict(FLAN_T5_SMALL, d_model=1024, d_ff=2816, num_layers=24, num_decoder_layers=24, num_heads=16)


def random_flan_t5(shape: dict, dtype: str = "float32", seed: int = 0, device: str = "cpu"):
  """A randomly initialised HF ``T5ForConditionalGeneration`` of FLAN-T5's layout (``shape``: T5Config fields,
  e.g. ``FLAN_T5_SMALL``; untied ``lm_head``, no output scaling) and the very same weights in tokensift through
  its HF loader mapping: ``(hf float32 on device, T5Config, params, module)``, tokensift computing in ``dtype``."""
  import torch
  import transformers

  from tokensift.models import t5_loaders

  torch.manual_seed(seed)
  with torch.device(device):  # random init where the model will run (fast on a GPU)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**shape, tie_word_embeddings=False))
    # FLAN-T5 has its own lm_head and no d_model**-0.5 output scaling (transformers>=5 ties at construction)
    vocab, d = shape["vocab_size"], shape["d_model"]
    hf.lm_head.weight = torch.nn.Parameter(torch.randn(vocab, d) * d**-0.5)
  hf.config.scale_decoder_outputs = False
  hf.eval()
  state = {k: v.detach().cpu().numpy() for k, v in hf.state_dict().items()}
  config = t5_loaders.config_from_hf(
    {**hf.config.to_dict(), "model_type": "t5", "tie_word_embeddings": False}, dtype=dtype, tied=False
  )
  params = t5_loaders.params_from_hf(state, config)
  return hf, config, params, t5_loaders.build_module(config)


def c4_batch(batch: int, length: int, vocab_size: int):
  """``(tokens int32[b, l], mask int64[b, l])``: C4 docs, C4 SentencePiece ids clamped to ``vocab_size``."""
  import numpy as np
  import sentencepiece as spm

  from tokensift.core import paths

  sp = spm.SentencePieceProcessor(model_file=str(paths.data_path("tokenizers", "c4-32768.model")))
  rows = []
  with gzip.open(paths.data_path("c4", "jsonl", "c4-validation-sample-1000.json.gz"), "rt") as f:
    for line in f:
      ids = [min(i, vocab_size - 1) for i in sp.encode(json.loads(line)["text"])][: length - 1] + [1]  # + EOS
      rows.append([max(i, 2) for i in ids[:-1]] + [1])  # keep 0 for padding only
      if len(rows) == batch:
        break
  width = max(len(r) for r in rows)
  tokens = np.zeros((batch, width), np.int32)
  mask = np.zeros((batch, width), np.int64)
  for i, r in enumerate(rows):
    tokens[i, : len(r)] = r
    mask[i, : len(r)] = 1
  return tokens, mask


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--length", type=int, default=256)
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  add_results_flag(ap)
  args = ap.parse_args(argv)

  import jax
  import numpy as np
  import torch

  hf, config, params, module = random_flan_t5(FLAN_T5_SMALL, args.dtype)
  tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
  hf = hf.to(tdtype)

  tokens, mask = c4_batch(args.batch, args.length, config.vocab_size)
  real_tokens = int(mask.sum())
  start = np.zeros((tokens.shape[0], 1), np.int32)

  jparams = jax.device_put(params)
  score = jax.jit(lambda p, enc, dec: module.apply({"params": p}, enc, dec))
  jt, js = jax.device_put(tokens), jax.device_put(start)
  ours_logits = np.asarray(score(jparams, jt, js))

  t_tokens, t_mask = torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(mask)
  t_start = torch.from_numpy(start.astype(np.int64))

  def run_hf():
    with torch.inference_mode():
      return hf(input_ids=t_tokens, attention_mask=t_mask, decoder_input_ids=t_start).logits

  hf_logits = run_hf().float().numpy()
  diff = float(np.abs(ours_logits - hf_logits).max())

  ours_t = timed(lambda: score(jparams, jt, js).block_until_ready(), args.repeats)
  hf_t = timed(run_hf, args.repeats)
  ours_tps = real_tokens / statistics.median(ours_t)
  hf_tps = real_tokens / statistics.median(hf_t)
  print(
    f"model: random FLAN-T5-Small shape (d_model 512, 8+8 layers, 6 heads, d_ff 1024, vocab 32128), dtype "
    f"{args.dtype}; batch {tokens.shape[0]} x {tokens.shape[1]} (padded to longest), {real_tokens} real C4 "
    f"tokens; encoder pass + 1 decoder step; jax {jax.devices()[0].platform} x{jax.device_count()}, "
    f"torch threads {torch.get_num_threads()}"
  )
  print(f"max |logit diff| tokensift vs HF: {diff:.2e}")
  print(
    f"tokensift (jax.jit): {ours_tps:10.1f} tokens/s  (median of {args.repeats}: "
    f"{statistics.median(ours_t) * 1e3:.0f} ms)"
  )
  print(
    f"HF transformers    : {hf_tps:10.1f} tokens/s  (median of {args.repeats}: {statistics.median(hf_t) * 1e3:.0f} ms)"
  )
  print(f"ratio tokensift / HF: {ours_tps / hf_tps:.2f}x")


if __name__ == "__main__":
  main()
  record_results("bench_t5_forward")
