"""ProX executor throughput (docs/s on one core) on the C4 sample against GAIR-NLP/ProX's own executor,
parsing time, and what the rule programmer removes.

The rule programmer runs once over the C4 train sample (1000 documents, TFDS) to write doc- and chunk-level
programs; ``editing_programs`` writes programs that really edit (1-3 ``remove_lines``, 2-4 ``normalize`` of
words in the document, a double-space collapse where there is one, and one normalization repeated as a later
chunk's program repeats it), in ProX's own syntax; ``line_editing_program`` writes line-heavy ones (2-4
``remove_lines``, one word deletion, repeated). Then ``executor.execute(text, doc_program, chunk_program)``
alone is timed, single process, single thread (one core), every program parsed once per run (the parse caches
are cleared before each run). Target (DESIGN §8): >= 5,000 docs/s per core; printed as a ratio to it.

With ``--prox DIR`` (default: ``$TOKENSIFT_PROX_DIR``), ProX's executor is timed in the same run on the same
documents and programs: ``DIR`` holds GAIR-NLP/ProX's ``utils/chunk_utils.py`` and ``utils/doc_utils.py``
(read from its public repository into a directory outside this project, as ``chunk_utils.py``/``doc_utils.py``
or ``prox_chunk_utils.py``/``prox_doc_utils.py``; never part of tokensift). It runs both stages as ProX's
data-gen tasks chain them (the doc program, then the chunk program unless the document was dropped). The two
executors alternate batch by batch (100 documents), each batch's best CPU time over ``--repeats`` runs is kept
and summed, so a busy shared machine slows both alike; the line prints tokensift's docs/s over ProX's.
It prints which word counter the executor uses: the compiled one (``refine/_words.c``) when the package was
built with it; ``TOKENSIFT_PURE_PYTHON_WORDS=1`` times the pure-Python fallback.
Then parse seconds for 10k, 100k and 1M characters of call-free text (linear), the rule programmer's speed,
and the sample summary: documents dropped, words/tokens kept and rules fired for C4 train 1000 (web profile)
and OpenWebMath 878 (math profile).

  python benchmarks/bench_executor.py [--repeats 9] [--no-summary] [--prox /tmp/prox_executor]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

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
  from tokensift.core import docs
  from tokensift.tasks import sources

  report = docs.ReadReport()
  return [d.text for d in docs.documents_only(docs.file_rows(sources.owm_files(), id_field="url"), report)]


_PROX_UNSAFE = frozenset(",)=\"\\'#")  # characters ProX's executor splits or strips strings on (and quotes)


def editing_program(text: str, rng) -> str:
  """A chunk program that really edits, in ProX's own syntax (keyword arguments, double quotes, one call per
  line; strings ProX reads the same way): 1-3 ``remove_lines`` and 2-4 ``normalize`` of words (or the double
  space) that occur in ``text``, one of them repeated as a later chunk's program would repeat it."""
  lines = text.split("\n")
  words = [w for w in dict.fromkeys(text.split()) if not _PROX_UNSAFE.intersection(w)]
  calls = []
  for _ in range(rng.randint(1, 3)):
    a = rng.randrange(len(lines))
    b = min(len(lines) - 1, a + rng.randint(0, 2))
    calls.append(f"remove_lines(line_start={a}, line_end={b})")
  norms = []
  for _ in range(rng.randint(2, 4) if words else 0):
    w = rng.choice(words)
    norms.append(f'normalize(source_str="{w}", target_str="{rng.choice(["", w.upper(), w + "s"])}")')
  if "  " in text:
    norms.append('normalize(source_str="  ", target_str=" ")')
  if norms:
    norms.append(norms[0])  # a later chunk's program repeats a fix: a no-op
  return "\n".join(calls + norms)


def line_editing_program(text: str, rng) -> str:
  """A line-heavy editing program: 2-4 ``remove_lines`` and one ``normalize`` deleting a word, repeated."""
  lines = text.split("\n")
  calls = []
  for _ in range(rng.randint(2, 4)):
    a = rng.randrange(len(lines))
    calls.append(f"remove_lines(line_start={a}, line_end={min(len(lines) - 1, a + rng.randint(0, 2))})")
  words = [w for w in dict.fromkeys(text.split()) if not _PROX_UNSAFE.intersection(w)]
  if words:
    calls += [f'normalize(source_str="{rng.choice(words)}", target_str="")'] * 2
  return "\n".join(calls)


def editing_programs(texts: list[str], seed: int = 0, lines: bool = False) -> list[str]:
  import random

  rng = random.Random(seed)
  return [(line_editing_program if lines else editing_program)(t, rng) for t in texts]


def prox_modules(directory: str):
  """GAIR-NLP/ProX's ``(doc_utils, chunk_utils)`` modules, imported from ``directory`` (see the module docstring)."""
  import importlib.util

  def load(name: str):
    for stem in (name, "prox_" + name):
      path = os.path.join(directory, stem + ".py")
      if os.path.exists(path):
        spec = importlib.util.spec_from_file_location("prox_" + name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    raise FileNotFoundError(f"--prox {directory!r}: no {name}.py or prox_{name}.py (GAIR-NLP/ProX utils/{name}.py)")

  return load("doc_utils"), load("chunk_utils")


def prox_executor(directory: str):
  """GAIR-NLP/ProX's two stages as ``(text, doc_program, chunk_program) -> text``, imported from ``directory``
  (see the module docstring); None when ``directory`` is empty."""
  if not directory:
    return None
  doc_utils, chunk_utils = prox_modules(directory)

  def run(text: str, doc_program: str | None, chunk_program: str | None) -> str:
    if doc_program is not None and doc_utils.execute_meta_operations(text, doc_program) == "":
      return ""
    return chunk_utils.execute_meta_operations(text, chunk_program or "keep_chunk()")

  return run


def interleaved_rates(fns, runs, repeats: int, clear, batch: int = 100) -> list[float]:
  """Docs per CPU-second for each ``fn(text, doc_program, chunk_program)`` over ``runs``: the executors take
  turns batch by batch (the order alternating between repeats); each batch's best CPU time is kept and summed."""
  batches = [runs[i : i + batch] for i in range(0, len(runs), batch)]
  best = [[float("inf")] * len(batches) for _ in fns]
  for r in range(repeats):
    clear()
    order = list(range(len(fns))) if r % 2 == 0 else list(reversed(range(len(fns))))
    for k, b in enumerate(batches):
      for j in order:
        fn = fns[j]
        c0 = time.process_time()
        for t, d, c in b:
          fn(t, d, c)
        best[j][k] = min(best[j][k], time.process_time() - c0)
  return [len(runs) / sum(b) for b in best]


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
  print(
    f"  {name} ({cfg.profile} profile): {n} docs, dropped {n - kept} ({100 * (n - kept) / n:.1f}%): "
    f"{dict(reasons.most_common())}"
  )
  print(
    f"    words kept {words[1]}/{words[0]} ({100 * words[1] / words[0]:.1f}%), smollm2 tokens kept "
    f"{tokens[1]}/{tokens[0]} ({100 * tokens[1] / tokens[0]:.1f}%), lines removed from kept docs {lines[1]}"
  )
  print(f"    rules fired (documents): {dict(fired.most_common())}")


def parse_seconds(n_chars: int, repeats: int = 3) -> float:
  """Best time to parse ``n_chars`` characters of call-free text (words and punctuation, no ``name(``)."""
  from tokensift.refine import program

  text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit; sed do eiusmod tempor. " * (n_chars // 80 + 1)
  text = text[:n_chars]
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    program.parse(text)
    best = min(best, time.perf_counter() - t0)
  return best


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--repeats", type=int, default=9)
  ap.add_argument(
    "--prox",
    default=os.environ.get("TOKENSIFT_PROX_DIR", ""),
    help="directory with GAIR-NLP/ProX's utils/chunk_utils.py and doc_utils.py (outside the project)",
  )
  ap.add_argument("--no-summary", action="store_true", help="skip the sample summary (it loads a tokenizer)")
  add_results_flag(ap)
  args = ap.parse_args()
  from tokensift.refine import executor, program, program_ops, rules, word_count

  texts = c4_train_texts()
  progs = [rules.write_program(t) for t in texts]
  rule_runs = [(t, p.doc_program, p.chunk_program) for t, p in zip(texts, progs)]
  edit_runs = [(t, "keep_doc()", c) for t, c in zip(texts, editing_programs(texts))]
  line_runs = [(t, "keep_doc()", c) for t, c in zip(texts, editing_programs(texts, lines=True))]
  n = len(texts)
  calls = lambda runs: sum(len(program.parse(c).calls) for _, _, c in runs)
  print(f"C4 train sample: {n} documents, {sum(len(t) for t in texts) / n:.0f} chars/doc")
  print(
    f"  rule programs: {sum(p.chunk_program != 'keep_chunk()' and p.doc_program != 'drop_doc()' for p in progs)}"
    f" with line/string calls, {sum(p.doc_program == 'drop_doc()' for p in progs)} drop_doc(), "
    f"{calls(rule_runs)} chunk calls"
  )
  print(
    f"  editing programs: {calls(edit_runs)} chunk calls "
    f"({sum(c.count('normalize(') for _, _, c in edit_runs)} normalize)"
  )

  def clear():  # every program parsed once per run, as in a real job
    program._parse_cached.cache_clear()
    program_ops.cache_clear()

  def runner(runs):
    def run():
      clear()
      for t, d, c in runs:
        executor.execute(t, d, c)

    return run

  prox = prox_executor(args.prox)
  mixes = (
    ("rule programs", rule_runs),
    ("editing programs (string-heavy)", edit_runs),
    ("editing programs (line-heavy)", line_runs),
  )
  print(
    "word counter: "
    + (
      "compiled (tokensift.refine._words)"
      if word_count.COMPILED
      else "pure Python (tokensift.refine.word_count; TOKENSIFT_PURE_PYTHON_WORDS=1 or built without the C extension)"
    )
  )
  print("executor.execute (doc + chunk stage, parsing included), one core:")
  for name, runs in mixes:
    best, med = best_rate(runner(runs), n, args.repeats)
    print(
      f"  {name}: {best:,.0f} docs per CPU-second ({med:,.0f} docs per wall-second, median) -> "
      f"{best / TARGET_DOCS_PER_S:.2f}x the {TARGET_DOCS_PER_S:,} docs/s target"
    )
  if prox is None:
    print("GAIR-NLP/ProX's executor not timed (pass --prox DIR: see the module docstring)")
  else:
    print(
      f"against GAIR-NLP/ProX's executor ({args.prox}), same documents and programs, batches alternating, "
      f"best CPU time per batch of {args.repeats} runs, one core:"
    )
    for name, runs in mixes:
      same = sum(executor.execute(t, d, c).text == prox(t, d, c) for t, d, c in runs)
      ours, theirs = interleaved_rates([lambda t, d, c: executor.execute(t, d, c), prox], runs, args.repeats, clear)
      print(
        f"  {name}: tokensift {ours:,.0f} vs ProX {theirs:,.0f} docs per CPU-second -> {ours / theirs:.2f}x "
        f"(identical outputs {same}/{len(runs)})"
      )

  sizes = (10_000, 100_000, 1_000_000)
  secs = [parse_seconds(k) for k in sizes]
  print(
    "program.parse of call-free text: "
    + ", ".join(f"{k:,} chars {s:.4f} s" for k, s in zip(sizes, secs))
    + f" (1M/100k time ratio {secs[2] / secs[1]:.1f}; linear is 10)"
  )

  def run_rules():
    for t in texts:
      rules.write_program(t)

  best_r, med_r = best_rate(run_rules, n, max(1, args.repeats // 2))
  print(f"rule programmer (write_program), one core: {best_r:,.0f} docs per CPU-second ({med_r:,.0f} wall)")
  if args.no_summary:
    return

  from tokensift.refine.chunks import vocab_counter
  from tokensift.tasks import vocabularies

  count = vocab_counter(vocabularies.smollm2())
  print("Sample summary (rule programmer + executor):")
  summary("C4 train", texts, rules.RuleConfig.web(), count)
  summary("OpenWebMath", owm_texts(), rules.RuleConfig.math(), count)


if __name__ == "__main__":
  main()
  record_results("bench_executor")
