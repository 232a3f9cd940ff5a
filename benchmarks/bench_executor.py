"""ProX executor throughput (docs/s on one core) on the C4 sample, and what the rule programmer removes.

The rule programmer runs once over the C4 train sample (1000 documents, TFDS) to write doc- and chunk-level
programs; then ``executor.execute(text, doc_program, chunk_program)`` alone is timed, single process, single
thread (a Python loop: one core). Target (DESIGN §8): >= 5,000 docs/s per core; printed as a ratio to it.
Also timed: the same with the parse cache cleared before every call (every program parsed from scratch), and
the rule programmer itself. Then the sample summary: documents dropped, words/tokens kept and rules fired for
C4 train 1000 (web profile) and OpenWebMath 878 (math profile).

  python benchmarks/bench_executor.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

TARGET_DOCS_PER_S = 5000


def c4_train_texts() -> list[str]:
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  from tokensift.tasks import sources
  ds = sources.c4_source().get_dataset("train", shuffle=False)
  return [ex["text"].decode("utf-8") for ex in ds.as_numpy_iterator()]


def owm_texts() -> list[str]:
  from tokensift import docs
  from tokensift.tasks import sources
  report = docs.ReadReport()
  return [d.text for d in docs.documents_only(docs.file_rows(sources.owm_files(), id_field="url"), report)]


def best_rate(fn, n_docs: int, repeats: int) -> tuple[float, float]:
  """(docs per CPU-second of this process: best run, docs per wall-second: median run). CPU time is the
  per-core figure; it stays meaningful when other processes share the cores."""
  cpu, wall = [], []
  for _ in range(repeats):
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - t0)
  return n_docs / min(cpu), n_docs / statistics.median(wall)


def summary(name: str, texts: list[str], cfg, count_tokens) -> None:
  from tokensift.refine import executor, rules
  kept = 0
  words = [0, 0]
  tokens = [0, 0]
  lines = [0, 0]
  reasons: collections.Counter = collections.Counter()
  fired: collections.Counter = collections.Counter()
  for text in texts:
    rp = rules.write_program(text, cfg)
    r = executor.execute(text, rp.doc_program, rp.chunk_program)
    kept += r.kept
    if not r.kept:
      reasons[r.stats["drop_reason"] + (f":{rp.rules[0]}" if rp.doc_program == "drop_doc()" else "")] += 1
    fired.update(rp.rules)
    words[0] += r.stats["words_before"]
    words[1] += r.stats["words_after"]
    lines[0] += r.stats["lines_before"]
    lines[1] += r.stats["lines_removed"] if r.kept else 0
    tb, ta = count_tokens([text, r.text])
    tokens[0] += tb
    tokens[1] += ta
  n = len(texts)
  print(f"  {name} ({cfg.profile} profile): {n} docs, dropped {n - kept} ({100 * (n - kept) / n:.1f}%): "
        f"{dict(reasons.most_common())}")
  print(f"    words kept {words[1]}/{words[0]} ({100 * words[1] / words[0]:.1f}%), smollm2 tokens kept "
        f"{tokens[1]}/{tokens[0]} ({100 * tokens[1] / tokens[0]:.1f}%), lines removed from kept docs {lines[1]}")
  print(f"    rules fired (documents): {dict(fired.most_common())}")


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--repeats", type=int, default=5)
  args = ap.parse_args()
  from tokensift.refine import executor, program, rules

  texts = c4_train_texts()
  progs = [rules.write_program(t) for t in texts]
  pairs = [(t, p.doc_program, p.chunk_program) for t, p in zip(texts, progs)]
  n = len(pairs)
  n_calls = sum(len(program.parse(c).calls) for _, _, c in pairs)
  print(f"C4 train sample: {n} documents, {sum(len(t) for t in texts) / n:.0f} chars/doc; rule programs: "
        f"{sum(p.chunk_program != 'keep_chunk()' and p.doc_program != 'drop_doc()' for p in progs)} with "
        f"line/string calls, {sum(p.doc_program == 'drop_doc()' for p in progs)} drop_doc(), {n_calls} chunk calls")

  def run_cached():
    for t, d, c in pairs:
      executor.execute(t, d, c)

  def run_uncached():
    for t, d, c in pairs:
      program._parse_cached.cache_clear()
      executor.execute(t, d, c)

  def run_rules():
    for t in texts:
      rules.write_program(t)

  best, med = best_rate(run_cached, n, args.repeats)
  best_u, med_u = best_rate(run_uncached, n, args.repeats)
  best_r, med_r = best_rate(run_rules, n, max(1, args.repeats // 2))
  print(f"executor.execute (doc + chunk stage), one core: {best:,.0f} docs per CPU-second "
        f"({med:,.0f} docs per wall-second, median) -> {best / TARGET_DOCS_PER_S:.2f}x the "
        f"{TARGET_DOCS_PER_S:,} docs/s target")
  print(f"  every program parsed from scratch (parse cache cleared per doc): {best_u:,.0f} docs per CPU-second "
        f"({med_u:,.0f} wall) -> {best_u / TARGET_DOCS_PER_S:.2f}x target")
  print(f"rule programmer (write_program), one core: {best_r:,.0f} docs per CPU-second ({med_r:,.0f} wall)")

  from tokensift.refine.chunks import vocab_counter
  from tokensift.tasks import vocabularies
  count = vocab_counter(vocabularies.smollm2())
  print("Sample summary (rule programmer + executor):")
  summary("C4 train", texts, rules.RuleConfig.web(), count)
  summary("OpenWebMath", owm_texts(), rules.RuleConfig.math(), count)


if __name__ == "__main__":
  main()
