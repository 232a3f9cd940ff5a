"""Llama forward throughput (tokens/s): tokensift (jax.jit) vs HF transformers PyTorch, same weights, same batch.

Weights: SmolLM2-135M-Instruct from its GGUF (``paths.smollm2_gguf()``), dequantized by ``load_llama``; the HF
model is built from the very same tensors (``hf_state_dict``), so both run identical weights (``--hf-gguf``
loads the GGUF with transformers' own loader instead; slower to start). Batch: the first ``--batch`` real C4
validation documents, tokenized with the GGUF's tokenizer, truncated to ``--length`` tokens, right-padded to
the longest (HF gets the attention mask). Both compute full logits [batch, length, vocab] in ``--dtype``.

  python benchmarks/bench_llama_forward.py [--batch 8] [--length 256] [--repeats 3] [--dtype float32]

Prints tokens/s (real, non-padding tokens per second of forward time) for both and the ratio.
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


def c4_batch(tokenizer_json: str, batch: int, length: int):
  import numpy as np
  from tokenizers import Tokenizer

  from tokensift.core import paths

  tok = Tokenizer.from_file(tokenizer_json)
  rows = []
  with gzip.open(paths.data_path("c4", "jsonl", "c4-validation-sample-1000.json.gz"), "rt") as f:
    for line in f:
      rows.append(tok.encode(json.loads(line)["text"]).ids[:length])
      if len(rows) == batch:
        break
  width = max(len(r) for r in rows)
  tokens = np.zeros((batch, width), np.int32)
  mask = np.zeros((batch, width), np.int64)
  for i, r in enumerate(rows):
    tokens[i, : len(r)] = r
    mask[i, : len(r)] = 1
  return tokens, mask


def hf_llama(config, params, dtype, device: str = "cpu"):
  """An HF ``LlamaForCausalLM`` (eval mode, ``dtype`` on ``device``) holding the very same weights as tokensift's
  ``params`` for ``config`` (``llama_loaders.hf_state_dict``: the loader's mapping, inverted)."""
  import torch
  import transformers

  from tokensift.models.llama_loaders import hf_config_dict, hf_state_dict

  with torch.device(device):  # random init where the model will run (fast on a GPU), then overwritten
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_config_dict(config)))
  hf.load_state_dict(
    {k: torch.from_numpy(v) for k, v in hf_state_dict(config, params).items()}, strict=not config.tie_word_embeddings
  )
  return hf.to(device=device, dtype=dtype).eval()


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--length", type=int, default=256)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  ap.add_argument("--hf-gguf", action="store_true", help="load the HF model with transformers' GGUF loader")
  add_results_flag(ap)
  args = ap.parse_args(argv)

  import jax
  import numpy as np
  import torch
  import transformers

  from tokensift.core import paths
  from tokensift.models.llama_loaders import load_llama

  gguf_path = paths.smollm2_gguf()
  lm = load_llama(gguf_path, dtype=args.dtype)
  tokens, mask = c4_batch(str(lm.tokenizer.tokenizer_json), args.batch, args.length)
  real_tokens = int(mask.sum())
  tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
  if args.hf_gguf:
    hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(gguf_path.parent), gguf_file=gguf_path.name, dtype=tdtype
    )
  else:
    hf = hf_llama(lm.config, lm.params, tdtype)
  hf.eval()

  params = jax.device_put(lm.params)
  forward = jax.jit(lambda p, t: lm.module.apply({"params": p}, t))
  jt = jax.device_put(tokens)
  ours_logits = np.asarray(forward(params, jt))

  t_tokens, t_mask = torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(mask)

  def run_hf():
    with torch.inference_mode():
      return hf(t_tokens, attention_mask=t_mask).logits

  hf_logits = run_hf().float().numpy()
  valid = mask.astype(bool)
  diff = float(np.abs(ours_logits[valid] - hf_logits[valid]).max())

  ours_t = timed(lambda: forward(params, jt).block_until_ready(), args.repeats)
  hf_t = timed(run_hf, args.repeats)
  ours_tps = real_tokens / statistics.median(ours_t)
  hf_tps = real_tokens / statistics.median(hf_t)
  print(
    f"model: SmolLM2-135M-Instruct ({gguf_path.name}), dtype {args.dtype}, batch {tokens.shape[0]} x "
    f"{tokens.shape[1]} (padded to longest), {real_tokens} real C4 tokens; devices: jax {jax.devices()[0].platform}"
    f" x{jax.device_count()}, torch threads {torch.get_num_threads()}"
  )
  print(f"max |logit diff| on real tokens: {diff:.2e}")
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
  record_results("bench_llama_forward")
