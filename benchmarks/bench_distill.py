"""The distilled ASK-LLM scorer (``tokensift.selection.distill``) against its judge, on real C4 documents.

- The judge: SmolLM2-135M-Instruct (the offline GGUF), ASK-LLM prompts cut at ``--max_length`` (512) tokens; its
  scores are computed once by the score job into ``--cache`` (resumable: a rerun reads them back).
- The judge's own ceiling: the Spearman of its target (logit of P(yes)) at 512 against the same documents' at
  ``--ceiling_length`` (256) tokens, on the held-out documents.
- The fidelity curve: heads (ridge, MLP) fitted on the first m of the documents not held out, for m in
  ``--sizes``; Spearman, Kendall and the top-k overlap at the paper's rates on one fixed held-out set (the
  hash split of ``distill.heldout_mask``, ``--holdout`` percent).
- Throughput: the judge's warm scoring rate against embedding (all-MiniLM-L6-v2, 256 tokens) plus the head, on the
  same ``--throughput_docs`` documents in one run (compilation excluded: each side runs once before it is timed);
  and the FLOP ratio per document (2 x non-embedding parameters x tokens, attention's quadratic term left out) for
  this judge and for a 1B judge (Llama-3.2-1B's 0.97 B non-embedding parameters).

Run: ``python benchmarks/bench_distill.py [--n 300] [--sizes 50,100,200] [--results]`` (a 2-core CPU takes minutes
per 100 judged documents at 512 tokens: the judge dominates).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time

from results import add_results_flag, record_results  # benchmarks/results.py (--results)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

LLAMA_1B_NON_EMBEDDING = 0.97e9  # Llama-3.2-1B: 1.24 B parameters, 0.26 B of them the (tied) embedding table


def c4_documents(n: int):
  from tokensift.core import docs, paths

  with gzip.open(paths.data_path("c4", "jsonl", "c4-validation-sample-1000.json.gz")) as f:
    rows = [json.loads(line) for _, line in zip(range(n), f)]
  return [docs.Document(f"c4v-{i:04d}", r["text"]) for i, r in enumerate(rows)]


def non_embedding_params(params, table_size: int) -> int:
  import jax

  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  return total - table_size


def judge_scores(documents, out_dir: str, max_length: int):
  from tokensift.core import jobs
  from tokensift.selection import score_job

  cfg = score_job.ScoreJobConfig(max_length=max_length, variants=False)
  t0 = time.perf_counter()
  res = score_job.run_score_job(cfg, jobs.in_memory_rows(documents), out_dir, progress=False, piece_size=64)
  return res, time.perf_counter() - t0


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--n", type=int, default=300, help="C4 validation documents judged")
  ap.add_argument("--sizes", default="50,100,200", help="training sizes of the fidelity curve (comma-separated)")
  ap.add_argument("--holdout", type=float, default=33.0, help="percent of the documents held out")
  ap.add_argument("--max_length", type=int, default=512)
  ap.add_argument("--ceiling_length", type=int, default=256)
  ap.add_argument("--throughput_docs", type=int, default=64)
  ap.add_argument("--cache", default="/tmp/tokensift-bench-distill")
  add_results_flag(ap)
  a = ap.parse_args()
  from tokensift.core import jobs
  from tokensift.selection import distill, distill_head, embed_job, score_job, topk
  from tokensift.selection.keep import PAPER_RATES

  documents = c4_documents(a.n)
  judged = {}
  for length in (a.max_length, a.ceiling_length):
    res, secs = judge_scores(documents, os.path.join(a.cache, f"judge_{length}"), length)
    judged[length] = res
    print(
      f"judge SmolLM2-135M-Instruct at {length} tokens: {a.n} documents "
      f"({'cached' if res.skipped_done else f'{secs:.0f} s incl. compile'})"
    )
  emb_dir = os.path.join(a.cache, "embed")
  embed_job.run_embed_job(embed_job.EmbedJobConfig(), jobs.in_memory_rows(documents), emb_dir, progress=False)
  e_ids, x = embed_job.load_embeddings(emb_dir)
  targets = {}
  for length in judged:
    ids, y, counts = distill.judge_targets(topk.load_score_records(os.path.join(a.cache, f"judge_{length}")))
    targets[length] = dict(zip(ids, y))
    if counts["nan_scores"]:
      print(f"  {counts['nan_scores']} documents without a finite target at {length} tokens (skipped)")
  common = [i for i in e_ids if all(i in t for t in targets.values())]
  pos = {i: k for k, i in enumerate(e_ids)}
  xs = x[[pos[i] for i in common]]
  y = np.array([targets[a.max_length][i] for i in common])
  held = distill.heldout_mask(common, a.holdout)
  ceiling = distill.fidelity(np.array([targets[a.ceiling_length][i] for i in common])[held], y[held], PAPER_RATES)
  print(f"\nheld-out documents: {int(held.sum())}; training pool: {int((~held).sum())}")
  print(
    f"judge ceiling (its {a.ceiling_length}-token vs {a.max_length}-token target on the held-out documents): "
    f"Spearman {ceiling['spearman']:.3f}, Kendall {ceiling['kendall']:.3f}"
  )
  print(
    "\n| head | judged (train) | Spearman | % of ceiling | Kendall | top-k overlap at "
    + ", ".join(f"{r}%" for r in PAPER_RATES)
    + " | fit s |"
  )
  print("|---|---|---|---|---|---|---|")
  train_idx = np.flatnonzero(~held)
  for kind in distill_head.HEADS:
    for m in [int(s) for s in a.sizes.split(",")]:
      if m > train_idx.size:
        continue
      t0 = time.perf_counter()
      params, _ = distill_head.fit(xs[train_idx[:m]], y[train_idx[:m]], distill_head.HeadConfig(kind=kind))
      fit_s = time.perf_counter() - t0
      f = distill.fidelity(distill_head.predict(params, xs[held]), y[held], PAPER_RATES)
      print(
        f"| {kind} | {m} | {f['spearman']:.3f} | {100 * f['spearman'] / ceiling['spearman']:.0f}% | "
        f"{f['kendall']:.3f} | " + " / ".join(f"{v:.2f}" for v in f["topk_overlap"].values()) + f" | {fit_s:.1f} |"
      )
  # throughput, warm, same documents
  texts = [d.text for d in documents[: a.throughput_docs]]
  scorer = score_job.build_scorer(score_job.ScoreJobConfig(max_length=a.max_length, variants=False))
  scorer.score(texts)
  t0 = time.perf_counter()
  scorer.score(texts)
  judge_s = time.perf_counter() - t0
  embedder = embed_job.Embedder(embed_job.EmbedJobConfig())
  params, _ = distill_head.fit(xs[train_idx], y[train_idx], distill_head.HeadConfig())
  embedder.embed(texts)
  t0 = time.perf_counter()
  emb, ntok, _ = embedder.embed(texts)
  distill_head.predict(params, emb)
  head_s = time.perf_counter() - t0
  judge_tokens = sum(len(p.ids) for p in scorer.prompts(texts)) if hasattr(scorer, "prompts") else None
  jp = non_embedding_params(scorer.params, int(np.prod(_table_shape(scorer.params))))
  ep = non_embedding_params(embedder.params, int(np.prod(_table_shape(embedder.params))))
  print(
    f"\nthroughput on {len(texts)} documents (warm): judge {len(texts) / judge_s:.1f} docs/s, embed + ridge head "
    f"{len(texts) / head_s:.1f} docs/s: {judge_s / head_s:.1f}x"
  )
  print(
    f"non-embedding parameters: judge {jp / 1e6:.1f} M, embedder {ep / 1e6:.1f} M; FLOP ratio per document at "
    f"{a.max_length} judge vs 256 embedding tokens: {jp * a.max_length / (ep * 256):.0f}x; a 1B judge "
    f"(0.97 B non-embedding): {LLAMA_1B_NON_EMBEDDING * a.max_length / (ep * 256):.0f}x"
  )
  if judge_tokens:
    print(f"mean tokens per document: judge {judge_tokens / len(texts):.0f}, embedder {float(np.mean(ntok)):.0f}")


def _table_shape(params):
  """The shape of the largest leaf: the token-embedding table of both models."""
  import jax

  return max((x.shape for x in jax.tree.leaves(params)), key=lambda s: int(np.prod(s)))


if __name__ == "__main__":
  main()
  record_results("bench_distill")
