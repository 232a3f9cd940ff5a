"""The distilled ASK-LLM scorer (``tokensift.selection.distill``) against its judge, on real C4 documents.

- Documents: the 1,000 C4 TFDS train documents (task ``c4_en_raw``, split train, through the document layer) and
  the 1,000 of ``c4/jsonl/c4-validation-sample-1000.json.gz`` (all 2,000 distinct); ``--n`` takes the first n/2
  of each. One fixed held-out set: the hash split of ``distill.heldout_mask`` (``--holdout`` percent).
- The judge: SmolLM2-135M-Instruct (the offline GGUF), ASK-LLM prompts cut at ``--max_length`` (512) tokens; its
  scores are computed once by the score job into ``--cache`` (resumable: a rerun reads them back or resumes from
  the finished pieces; the cache's config names the document set, so another ``--n`` is refused, not mixed).
- The judge's own ceiling: the Spearman of its target (logit of P(yes)) at 512 against the same documents' at
  ``--ceiling_length`` (256) tokens, on the held-out documents (the 256-token judge runs on those only).
- The fidelity curve: heads (ridge, MLP) fitted on the first m of the training documents (the documents not held
  out, in one seeded random order, so every m mixes both sources), for m in ``--sizes``; Spearman, Kendall and the
  top-k overlap at the paper's rates on the held-out set.
- The known-answer AUC: ``tokensift.pipeline.known_answer.build_corpus`` makes ``--junk_per_kind`` junk documents
  of each web kind (keyword spam, word salad from the held-out documents' sentences, random characters,
  navigation, lorem ipsum, near-empty); the clean-vs-junk ROC AUC (sklearn) of the judge's score and of the
  heads' scores (fitted on every training document), clean = the held-out documents.
- Throughput: the judge's warm scoring rate against embedding (all-MiniLM-L6-v2, 256 tokens) plus the head, on the
  same ``--throughput_docs`` documents in one run (compilation excluded: each side runs once before it is timed);
  and the FLOP ratio per document (2 x non-embedding parameters x tokens, attention's quadratic term left out) for
  this judge and for a 1B judge (Llama-3.2-1B's 0.97 B non-embedding parameters).

Run: ``python benchmarks/bench_distill.py [--n 2000] [--sizes 100,300,1000,1500] [--results]`` (a 2-core CPU
judges about one document a second at 512 tokens: the full run takes tens of minutes, the judge dominates).
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
  """The first ``n // 2`` C4 TFDS train documents (task c4_en_raw) and the first ``n - n // 2`` of the validation
  sample (ids ``c4v-NNNN``); ValueError when the two share a text (the sets are distinct)."""
  import tokensift.tasks  # noqa: F401  (registers c4_en_raw)
  from tokensift.core import docs, paths

  train = [
    d for _, d in zip(range(n // 2), docs.documents_only(docs.task_rows("c4_en_raw", "train"), docs.ReadReport()))
  ]
  with gzip.open(paths.data_path("c4", "jsonl", "c4-validation-sample-1000.json.gz")) as f:
    rows = [json.loads(line) for _, line in zip(range(n - n // 2), f)]
  out = [docs.Document(d.id, d.text) for d in train] + [
    docs.Document(f"c4v-{i:04d}", r["text"]) for i, r in enumerate(rows)
  ]
  if len({d.text for d in out}) != len(out):
    raise ValueError("the C4 train and validation documents share a text: the benchmark needs distinct documents")
  return out


def junk_documents(clean, per_kind: int):
  """Junk documents of every web kind of the known-answer corpus (``build_corpus`` on ``clean``: no duplicates,
  junk lines or spans, so its other documents are ``clean`` unchanged)."""
  from tokensift.core import docs
  from tokensift.pipeline import known_answer as ka

  cfg = ka.KnownAnswerConfig(junk_per_kind=per_kind, dup_clusters=0, junk_line_fraction=0.0, span_fraction=0.0)
  built, labels = ka.build_corpus([d.text for d in clean], [d.id for d in clean], cfg, profile="web")
  return [docs.Document(d["id"], d["text"]) for d, lab in zip(built, labels) if lab["kind"] == "junk"]


def non_embedding_params(params, table_size: int) -> int:
  import jax

  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  return total - table_size


def judge_scores(documents, out_dir: str, max_length: int, desc: str):
  from tokensift.core import jobs
  from tokensift.selection import score_job

  cfg = score_job.ScoreJobConfig(max_length=max_length, variants=False)
  t0 = time.perf_counter()
  res = score_job.run_score_job(
    cfg, jobs.in_memory_rows(documents), out_dir, progress=False, piece_size=64, input_desc=desc
  )
  return res, time.perf_counter() - t0


def roc_auc(clean: np.ndarray, junk: np.ndarray) -> float:
  """ROC AUC of a score separating clean (positive) from junk documents (sklearn)."""
  from sklearn.metrics import roc_auc_score

  return float(roc_auc_score(np.r_[np.ones(clean.size), np.zeros(junk.size)], np.r_[clean, junk]))


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--n", type=int, default=2000, help="C4 documents judged: n/2 TFDS train + n/2 validation sample")
  ap.add_argument("--sizes", default="100,300,1000,1500", help="training sizes of the fidelity curve (comma-separated)")
  ap.add_argument("--holdout", type=float, default=25.0, help="percent of the documents held out")
  ap.add_argument("--junk_per_kind", type=int, default=10, help="known-answer junk documents of each of the 6 kinds")
  ap.add_argument("--max_length", type=int, default=512)
  ap.add_argument("--ceiling_length", type=int, default=256)
  ap.add_argument("--throughput_docs", type=int, default=64)
  ap.add_argument("--cache", default="/tmp/tokensift-bench-distill-corpus")
  add_results_flag(ap)
  a = ap.parse_args()
  from tokensift.core import jobs
  from tokensift.selection import distill, distill_head, embed_job, topk
  from tokensift.selection.keep import PAPER_RATES

  t_start = time.perf_counter()
  documents = c4_documents(a.n)
  ids = [d.id for d in documents]
  held = distill.heldout_mask(ids, a.holdout)
  held_docs = [d for d, h in zip(documents, held) if h]
  junk = junk_documents(held_docs, a.junk_per_kind)
  desc = f"bench_distill:c4 train+validation n={a.n} holdout={a.holdout:g} junk_per_kind={a.junk_per_kind}"
  print(
    f"documents: {len(documents)} C4 ({a.n // 2} TFDS train + {a.n - a.n // 2} validation sample), "
    f"{int(held.sum())} held out ({a.holdout:g}%), {len(junk)} known-answer junk documents"
  )
  res, secs = judge_scores(documents + junk, os.path.join(a.cache, f"judge_{a.max_length}"), a.max_length, desc)
  print(
    f"judge SmolLM2-135M-Instruct at {a.max_length} tokens: {len(documents) + len(junk)} documents "
    f"({'cached' if res.skipped_done else f'{secs:.0f} s incl. compile'})"
  )
  res, secs = judge_scores(
    held_docs, os.path.join(a.cache, f"judge_{a.ceiling_length}_heldout"), a.ceiling_length, desc
  )
  print(
    f"judge at {a.ceiling_length} tokens: the {len(held_docs)} held-out documents "
    f"({'cached' if res.skipped_done else f'{secs:.0f} s incl. compile'})"
  )
  emb_dir = os.path.join(a.cache, "embed")
  embed_job.run_embed_job(
    embed_job.EmbedJobConfig(), jobs.in_memory_rows(documents + junk), emb_dir, progress=False, input_desc=desc
  )
  e_ids, x = embed_job.load_embeddings(emb_dir)
  pos = {i: k for k, i in enumerate(e_ids)}
  targets = {}
  for name in (f"judge_{a.max_length}", f"judge_{a.ceiling_length}_heldout"):
    t_ids, y, counts = distill.judge_targets(topk.load_score_records(os.path.join(a.cache, name)))
    targets[name] = dict(zip(t_ids, y))
    if counts["nan_scores"]:
      print(f"  {counts['nan_scores']} documents without a finite target in {name} (skipped)")
  full, short = targets[f"judge_{a.max_length}"], targets[f"judge_{a.ceiling_length}_heldout"]
  train_ids = [i for i, h in zip(ids, held) if not h and i in full]
  test_ids = [i for i, h in zip(ids, held) if h and i in full and i in short]
  train_ids = [train_ids[k] for k in np.random.default_rng(0).permutation(len(train_ids))]
  x_tr, y_tr = x[[pos[i] for i in train_ids]], np.array([full[i] for i in train_ids])
  x_te, y_te = x[[pos[i] for i in test_ids]], np.array([full[i] for i in test_ids])
  ceiling = distill.fidelity(np.array([short[i] for i in test_ids]), y_te, PAPER_RATES)
  print(f"\nheld-out documents: {len(test_ids)}; training pool: {len(train_ids)}")
  print(
    f"judge ceiling (its {a.ceiling_length}-token vs {a.max_length}-token target on the held-out documents): "
    f"Spearman {ceiling['spearman']:.3f}, Kendall {ceiling['kendall']:.3f}, top-k overlap "
    + " / ".join(f"{v:.2f}" for v in ceiling["topk_overlap"].values())
  )
  print(
    "\n| head | judged (train) | Spearman | % of ceiling | Kendall | top-k overlap at "
    + ", ".join(f"{r:g}%" for r in PAPER_RATES)
    + " | fit s |"
  )
  print("|---|---|---|---|---|---|---|")
  sizes = [int(s) for s in a.sizes.split(",")]
  sizes = sorted({min(m, len(train_ids)) for m in sizes})
  heads = {}
  for kind in distill_head.HEADS:
    for m in sizes:
      t0 = time.perf_counter()
      params, _ = distill_head.fit(x_tr[:m], y_tr[:m], distill_head.HeadConfig(kind=kind))
      fit_s = time.perf_counter() - t0
      heads[kind] = params  # the last size: every training document
      f = distill.fidelity(distill_head.predict(params, x_te), y_te, PAPER_RATES)
      print(
        f"| {kind} | {m} | {f['spearman']:.3f} | {100 * f['spearman'] / ceiling['spearman']:.0f}% | "
        f"{f['kendall']:.3f} | " + " / ".join(f"{v:.2f}" for v in f["topk_overlap"].values()) + f" | {fit_s:.1f} |"
      )
  # known-answer: clean (held-out) vs junk
  junk_ids = [d.id for d in junk if d.id in full]
  x_junk = x[[pos[i] for i in junk_ids]]
  print(
    f"\nknown-answer clean-vs-junk ROC AUC ({len(test_ids)} held-out clean vs {len(junk_ids)} junk documents; "
    f"heads fitted on the {len(train_ids)} training documents):"
  )
  print("| scorer | AUC |")
  print("|---|---|")
  print(f"| judge (logit P(yes), {a.max_length} tokens) | {roc_auc(y_te, np.array([full[i] for i in junk_ids])):.3f} |")
  for kind, params in heads.items():
    auc = roc_auc(distill_head.predict(params, x_te), distill_head.predict(params, x_junk))
    print(f"| {kind} head | {auc:.3f} |")
  # throughput, warm, same documents
  from tokensift.selection import score_job

  texts = [d.text for d in documents[: a.throughput_docs]]
  scorer = score_job.build_scorer(score_job.ScoreJobConfig(max_length=a.max_length, variants=False))
  scorer.score(texts)
  t0 = time.perf_counter()
  scorer.score(texts)
  judge_s = time.perf_counter() - t0
  embedder = embed_job.Embedder(embed_job.EmbedJobConfig())
  params = heads["ridge"]
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
  print(f"\nbenchmark wall time: {time.perf_counter() - t_start:.0f} s (cached judge scores are not recomputed)")


def _table_shape(params):
  """The shape of the largest leaf: the token-embedding table of both models."""
  import jax

  return max((x.shape for x in jax.tree.leaves(params)), key=lambda s: int(np.prod(s)))


if __name__ == "__main__":
  main()
  record_results("bench_distill")
