"""Differential run: tokensift's executor against GAIR-NLP/ProX's own on random well-formed programs.

Random chunk programs in ProX's own syntax (one call per line, keyword arguments, double quotes) run on real
documents (the C4 validation sample and OpenWebMath, from the sample data's JSON lines): ``remove_lines`` ranges
inside the document, ending past it, starting past it, overlapping and touching (``line_start <= line_end``,
never negative), now and then ``remove_lines(all=True)``; ``normalize`` of words and phrases of the document,
of absent text, of a lone space, of double spaces and tabs, repeats of an earlier call, empty sources;
``keep_chunk()`` and comment lines; the doc program is ``keep_doc()`` or, now and then, ``drop_doc()``. Strings
hold no ``,`` ``)`` ``=`` (ProX splits arguments there); some start or end with ``"``, which ProX strips
(``.strip('"')``) and tokensift reads literally (DESIGN §3, a documented difference).

Each program runs through ``executor.execute`` and through ProX's ``execute_meta_operations`` (both stages, as
``bench_executor.prox_executor`` chains them); the error counts are compared too (tokensift's ``chunk_errors``
against ProX's ``execute_operations`` count). A differing program is put down to the first documented
difference that explains it (the fewest rewrites that suffice), in this order:

- ``quote_strip``: a string that starts or ends with ``"``: tokensift, run on the program with its strings
  stripped as ProX strips them, gives ProX's output and error count;
- ``empty_source``: a ``normalize`` with an empty source (an error in tokensift, skipped silently by ProX):
  tokensift, run on the program without those calls, gives ProX's output and error count (or both rewrites:
  ``quote_strip+empty_source``);
- ``growth_bound``: tokensift refused a program that would grow the document past its bound;
- ``ignored_program_word_rule``: 2 or more errors on both sides, and ProX applied its 10-word rule to the
  program it then discarded (tokensift looks at the unchanged document);
- ``unexplained``: none of these (a bug on one side or the other; printed).

The rule programmer's programs (web profile on C4, math on OpenWebMath) are compared too: all identical.

Measured (seeds 0 and 1, 9,390 programs each): outputs differ in 793 and 808 programs, error counts in 402 and
453, every one explained (quote_strip 518/471, empty_source 200/262, both 35/34, ignored_program_word_rule
34/33, with quote_strip 5/7, with empty_source 1/1); 0 unexplained; 1,878/1,878 rule programs identical.

  python benchmarks/diff_executor_prox.py --prox /tmp/prox [--programs 5] [--seed 0]

``--prox DIR`` holds ProX's ``utils/chunk_utils.py`` and ``utils/doc_utils.py`` (read from its public repository
into a directory outside this project; see ``bench_executor.py``).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_UNSAFE = frozenset(',)=\n"')  # ProX splits at , ) = ; quotes only where put on purpose


def sample_texts(data_dir: str) -> tuple[list[str], int]:
  """(the C4 validation sample's texts then OpenWebMath's, how many are C4's)."""
  with gzip.open(os.path.join(data_dir, "c4", "jsonl", "c4-validation-sample-1000.json.gz"), "rt") as f:
    c4 = [json.loads(line)["text"] for line in f]
  with open(os.path.join(data_dir, "openwebmath", "owm-sample-878.jsonl")) as f:
    owm = [json.loads(line)["text"] for line in f]
  return c4 + owm, len(c4)


def _quoted_edge(s: str, rng: random.Random) -> str:
  return rng.choice(['"' + s, s + '"', '"' + s + '"'])


def random_program(text: str, rng: random.Random, quotes: bool) -> str:
  """A random well-formed chunk program for ``text`` (see the module docstring)."""
  lines = text.split("\n")
  n = len(lines)
  words = [w for w in dict.fromkeys(text.split()) if not _UNSAFE.intersection(w)]
  phrases = [
    ln[i : i + rng.randint(3, 15)] for ln in rng.sample(lines, min(5, n)) if ln for i in [rng.randrange(len(ln))]
  ]
  phrases = [p for p in phrases if p and not _UNSAFE.intersection(p)]
  calls: list[str] = []
  sources: list[tuple[str, str]] = []
  for _ in range(rng.randint(1, 8)):
    kind = rng.choices(["lines", "all", "normalize", "repeat", "keep", "comment"], [30, 1, 40, 8, 5, 3])[0]
    if kind == "lines":
      a = rng.choice([rng.randrange(n), rng.randrange(n), n - 1, n, n + rng.randint(0, 3)])
      b = a + rng.choice([0, 0, 1, 2, rng.randint(0, 10)])
      names = rng.choice([("line_start", "line_end"), ("line_start", "line_end"), ("start", "end")])
      calls.append(f"remove_lines({names[0]}={a}, {names[1]}={b})")
    elif kind == "all":
      calls.append("remove_lines(all=True)")
    elif kind == "keep":
      calls.append(rng.choice(["keep_chunk()", "skip_chunk()"]))
    elif kind == "comment":
      calls.append("# " + rng.choice(["Analysis: navigation lines", "boilerplate below", "fix the entities"]))
    elif kind == "repeat" and sources:
      s, t = rng.choice(sources)
      calls.append(f'normalize(source_str="{s}", target_str="{t}")')
    else:
      pick = rng.choices(["word", "phrase", "absent", "space", "double", "tab", "empty"], [40, 15, 15, 5, 5, 2, 2])[0]
      s = {
        "word": lambda: rng.choice(words) if words else "zq",
        "phrase": lambda: rng.choice(phrases) if phrases else "zq",
        "absent": lambda: rng.choice(["zqxj", "not in this document", "\\frac{1}{2}", "&amp;"]),
        "space": lambda: " ",
        "double": lambda: "  ",
        "tab": lambda: "\t",
        "empty": lambda: "",
      }[pick]()
      t = rng.choice(["", "", s.upper(), s + "s", " ", "X"]) if pick not in ("space", "double", "tab") else " "
      if quotes and rng.random() < 0.1:
        s = _quoted_edge(s, rng)
      if quotes and rng.random() < 0.05:
        t = _quoted_edge(t, rng)
      sources.append((s, t))
      calls.append(f'normalize(source_str="{s}", target_str="{t}")')
  return "\n".join(calls)


def _strings(program: str) -> list[str]:
  from tokensift.refine import program as prog

  return [v for c in prog.parse(program).calls for _, v in c.args if isinstance(v, str)]


def as_prox_reads(program: str, strip_quotes: bool, skip_empty: bool) -> str:
  """``program`` rewritten the way ProX reads it: every string stripped of its leading and trailing ``"``, and/or
  the ``normalize`` calls with an empty source left out (ProX skips them)."""
  from tokensift.refine import program as prog

  out = []
  for c in prog.parse(program).calls:
    if c.name != "normalize":
      out.append(program[c.pos : program.index(")", c.pos) + 1])  # (no string: the first ')' ends the call)
      continue
    s, t = c.arg("source_str"), c.arg("target_str")
    if strip_quotes:
      s, t = s.strip('"'), t.strip('"')
    if skip_empty and not s:
      continue
    out.append(f'normalize(source_str="{s}", target_str="{t}")')
  return "\n".join(out)


def classify(text: str, doc: str, program: str, ours, prox_text: str, prox_errors: int, prox_processed: str) -> str:
  """The documented differences that explain a differing program, joined by ``+``: tokensift, run on the program
  as ProX reads it (quotes stripped, empty sources left out: the fewest rewrites that suffice), gives ProX's
  output and error count; or, with both rewrites, the one difference left is a growth bound or the word rule."""
  from tokensift.refine import executor

  def agrees(r) -> bool:
    return r.text == prox_text and (doc == "drop_doc()" or r.stats["chunk_errors"] == prox_errors)

  again = ours
  for kind, strip_quotes, skip_empty in (
    ("quote_strip", True, False),
    ("empty_source", False, True),
    ("quote_strip+empty_source", True, True),
  ):
    rewritten = as_prox_reads(program, strip_quotes, skip_empty)
    if rewritten == as_prox_reads(program, False, False):
      continue  # (nothing to rewrite)
    again = executor.execute(text, doc, rewritten)
    if agrees(again):
      return kind
  rewrites = [
    k
    for k, q, e in (("quote_strip", True, False), ("empty_source", False, True))
    if as_prox_reads(program, q, e) != as_prox_reads(program, False, False)
  ]
  if any("past the bound" in e or "UTF-8 bytes" in e for e in again.errors):
    return "+".join(rewrites + ["growth_bound"])
  if (
    prox_errors >= 2
    and again.stats["program_ignored"]
    and prox_text == ""
    and again.text == text
    and len(prox_processed.split()) <= 10 < len(text.split())
    and again.stats["chunk_errors"] == prox_errors
  ):
    return "+".join(rewrites + ["ignored_program_word_rule"])
  return "unexplained"


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument(
    "--prox",
    default=os.environ.get("TOKENSIFT_PROX_DIR", ""),
    required=False,
    help="directory with GAIR-NLP/ProX's utils/chunk_utils.py and doc_utils.py (outside the project)",
  )
  ap.add_argument("--data_dir", default=os.environ.get("TOKENSIFT_DATA_DIR", ""))
  ap.add_argument("--programs", type=int, default=5, help="random programs per document")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--show", type=int, default=3, help="unexplained differences printed")
  args = ap.parse_args()
  if not args.prox:
    ap.error("--prox DIR is required (GAIR-NLP/ProX's utils/chunk_utils.py and doc_utils.py)")
  from bench_executor import prox_modules

  from tokensift.core import paths
  from tokensift.refine import executor

  doc_utils, chunk_utils = prox_modules(args.prox)
  texts, n_c4 = sample_texts(args.data_dir or str(paths.data_dir()))
  rng = random.Random(args.seed)
  runs = total_quoted = 0
  differ: collections.Counter = collections.Counter()
  errors_differ: collections.Counter = collections.Counter()
  shown = 0
  for text in texts:
    for k in range(args.programs):
      quotes = k % 2 == 1  # half the programs may hold quote-edged strings
      chunk = random_program(text, rng, quotes)
      doc = "drop_doc()" if rng.random() < 0.05 else "keep_doc()"
      ours = executor.execute(text, doc, chunk)
      if doc_utils.execute_meta_operations(text, doc) == "":
        prox_text, prox_errors, processed = "", 0, ""
      else:
        prox_text = chunk_utils.execute_meta_operations(text, chunk)
        processed, *_, prox_errors = chunk_utils.execute_operations(text, chunk.strip(" ").split("\n"))
      runs += 1
      total_quoted += any(s[:1] == '"' or s[-1:] == '"' for s in _strings(chunk))
      if doc == "drop_doc()":
        errors_same = True
      else:
        errors_same = ours.stats["chunk_errors"] == prox_errors
      if ours.text != prox_text or not errors_same:
        kind = classify(text, doc, chunk, ours, prox_text, prox_errors, processed)
        if ours.text != prox_text:
          differ[kind] += 1
        if not errors_same:
          errors_differ[kind] += 1
        if kind == "unexplained" and shown < args.show:
          shown += 1
          print(
            f"--- unexplained: errors ours {ours.errors} vs ProX {prox_errors}; outputs "
            f"{'same' if ours.text == prox_text else 'differ'}\n{chunk}\n"
          )
  from tokensift.refine import rules

  rule_same = rule_runs = 0
  for text, cfg in [(t, rules.RuleConfig.web()) for t in texts[:n_c4]] + [
    (t, rules.RuleConfig.math()) for t in texts[n_c4:]
  ]:
    rp = rules.write_program(text, cfg)
    ours = executor.execute(text, rp.doc_program, rp.chunk_program)
    prox_text = (
      ""
      if doc_utils.execute_meta_operations(text, rp.doc_program) == ""
      else chunk_utils.execute_meta_operations(text, rp.chunk_program or "keep_chunk()")
    )
    rule_runs += 1
    rule_same += ours.text == prox_text and (
      rp.doc_program == "drop_doc()"
      or ours.stats["chunk_errors"] == (chunk_utils.execute_operations(text, rp.chunk_program.split("\n"))[-1])
    )
  print(
    f"differential against GAIR-NLP/ProX's executor ({args.prox}): {runs} random well-formed programs on "
    f"{len(texts)} documents (C4 validation + OpenWebMath), {total_quoted} of them with a quote-edged string, "
    f"seed {args.seed}"
  )
  print(f"  outputs differ: {sum(differ.values())} programs {dict(differ.most_common())}")
  print(f"  error counts differ: {sum(errors_differ.values())} programs {dict(errors_differ.most_common())}")
  print(
    f"  rule programs (web profile on C4, math on OpenWebMath): {rule_same}/{rule_runs} identical in output "
    "and error count"
  )


if __name__ == "__main__":
  main()
