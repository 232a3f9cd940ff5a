"""Forward throughput (tokens/s) per decoder family: tokensift (jax.jit) vs HF transformers PyTorch, same weights.

For each of Llama, Mistral, Qwen2, Gemma and Gemma 2 a small random model of one shared size (``--hidden``,
``--layers``, ...; family specifics: Mistral and Gemma 2 with a sliding window of ``--window`` shorter than the
sequence, Qwen2 with q/k/v biases, Gemma/Gemma 2 with head_dim 2 * hidden/heads as the released models have) is
built by transformers, written with ``save_pretrained`` and loaded back with ``load_llama``, so both sides run
identical weights. Batch: ``--batch`` real C4 validation documents (UTF-8 bytes folded into the vocabulary),
``--length`` tokens each, the last rows right-padded (HF gets the attention mask). Full logits in ``--dtype``.
HF runs its default attention (sdpa) except Gemma 2, whose soft-capping needs ``eager``.

  python benchmarks/bench_decoder_families.py [--families llama,gemma2] [--batch 8] [--length 256] [--repeats 3]

Prints, per family: max |logit diff| on real tokens, tokens/s for both, and the ratio.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import tempfile

from timing import timed  # benchmarks/timing.py (scripts run from this folder)
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FAMILIES = ("llama", "mistral", "qwen2", "gemma", "gemma2")


def c4_rows(batch: int, length: int, vocab: int):
  import numpy as np

  from tokensift.core import paths

  tokens = np.zeros((batch, length), np.int32)
  mask = np.zeros((batch, length), np.int64)
  with gzip.open(paths.data_path("c4", "jsonl", "c4-validation-sample-1000.json.gz"), "rt") as f:
    for i, line in zip(range(batch), f):
      ids = [1 + b % (vocab - 1) for b in json.loads(line)["text"].encode()][:length]
      n = len(ids) if i < batch - 2 else min(len(ids), length * 2 // 3)  # two padded rows
      tokens[i, :n], mask[i, :n] = ids[:n], 1
  return tokens, mask


def hf_model(family: str, args):
  import torch
  import transformers

  heads = args.heads
  common = dict(
    vocab_size=args.vocab,
    hidden_size=args.hidden,
    intermediate_size=args.intermediate,
    num_hidden_layers=args.layers,
    num_attention_heads=heads,
    num_key_value_heads=heads // 2,
    max_position_embeddings=max(2048, args.length),
    pad_token_id=0,
  )
  gemma_head = 2 * args.hidden // heads
  extra = {
    "llama": {},
    "mistral": dict(sliding_window=args.window),
    "qwen2": {},
    "gemma": dict(head_dim=gemma_head),
    "gemma2": dict(head_dim=gemma_head, sliding_window=args.window, query_pre_attn_scalar=gemma_head),
  }[family]
  names = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "gemma": "Gemma", "gemma2": "Gemma2"}[family]
  cfg = getattr(transformers, f"{names}Config")(**common, **extra)
  if family == "gemma2":
    cfg._attn_implementation = "eager"
  torch.manual_seed(0)
  return getattr(transformers, f"{names}ForCausalLM")(cfg).eval()


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--families", default=",".join(FAMILIES))
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--length", type=int, default=256)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  ap.add_argument("--hidden", type=int, default=256)
  ap.add_argument("--intermediate", type=int, default=704)
  ap.add_argument("--layers", type=int, default=4)
  ap.add_argument("--heads", type=int, default=8)
  ap.add_argument("--vocab", type=int, default=8192)
  ap.add_argument("--window", type=int, default=64)
  add_results_flag(ap)
  args = ap.parse_args(argv)

  import jax
  import numpy as np
  import torch

  from tokensift.models.llama_loaders import load_llama

  tokens, mask = c4_rows(args.batch, args.length, args.vocab)
  real = int(mask.sum())
  tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
  t_tokens, t_mask = torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(mask)
  print(
    f"batch {args.batch} x {args.length} ({real} real C4 tokens), hidden {args.hidden}, {args.layers} layers, "
    f"{args.heads} heads / {args.heads // 2} kv, vocab {args.vocab}, dtype {args.dtype}; jax "
    f"{jax.devices()[0].platform} x{jax.device_count()}, torch threads {torch.get_num_threads()}"
  )
  for family in args.families.split(","):
    hf = hf_model(family, args)
    with tempfile.TemporaryDirectory() as tmp:
      hf.save_pretrained(tmp)
      lm = load_llama(tmp, dtype=args.dtype)
    hf = hf.to(tdtype)
    params = jax.device_put(lm.params)
    forward = jax.jit(lambda p, t, m=lm.module: m.apply({"params": p}, t))
    jt = jax.device_put(tokens)

    def run_hf():
      with torch.inference_mode():
        return hf(t_tokens, attention_mask=t_mask).logits

    valid = mask.astype(bool)
    diff = float(np.abs(np.asarray(forward(params, jt))[valid] - run_hf().float().numpy()[valid]).max())
    ours = real / statistics.median(timed(lambda: forward(params, jt).block_until_ready(), args.repeats))
    theirs = real / statistics.median(timed(run_hf, args.repeats))
    print(
      f"{family:8s} max|diff| {diff:.1e}   tokensift {ours:9.0f} tok/s   HF {theirs:9.0f} tok/s   "
      f"ratio {ours / theirs:.2f}x",
      flush=True,
    )


if __name__ == "__main__":
  main()
  record_results("bench_decoder_families")
