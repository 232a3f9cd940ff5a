"""Refine docs/s: the local Beam runner (FnApiRunner) at 1 and 2 workers against the single-process job, on the
same generated corpus (DESIGN §8 target: >= 1.5x docs/s at 2 workers). Beam runs use ``--shards`` shards (>= the
workers: with the rule programmer each shard is read and refined in one worker, see ``refine.beam_refine``), so
their output is several shard files: the records are compared with the single process's as a multiset.

The corpus: the C4 validation sample's documents cut to their first ``--chars`` characters, repeated with
distinct ids until ``--docs`` documents, as JSON lines. Each run writes into a fresh directory; the outputs of
the three runs are checked to be byte-identical. Wall time and CPU time (this process + waited-for children, so
the Beam worker processes are counted) are printed, since on a shared machine wall time alone misleads.

    python benchmarks/bench_beam.py [--docs 200000 --chars 2000 --shards 4]
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TOKENSIFT_DATA_DIR", REPO.parent / "shared" / "data"))


def make_corpus(path: Path, n: int, chars: int) -> None:
  with gzip.open(DATA / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
    texts = [json.loads(line)["text"][:chars] for line in f]
  with open(path, "w") as out:
    for k in range(n):
      out.write(json.dumps({"id": f"doc{k:07d}", "text": texts[k % len(texts)]}) + "\n")


def _cpu() -> float:
  s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--docs", type=int, default=200000)
  ap.add_argument("--chars", type=int, default=500, help="characters kept of each C4 document")
  ap.add_argument("--piece_size", type=int, default=1000)
  ap.add_argument("--workers", default="1,2", help="Beam worker counts to run")
  ap.add_argument("--shards", type=int, default=4, help="shards of the Beam runs")
  add_results_flag(ap)
  args = ap.parse_args()

  from tokensift.core import docs
  from tokensift.refine import beam_refine, job, rules

  tmp = Path(tempfile.mkdtemp(prefix="bench_beam_"))
  corpus = tmp / "corpus.jsonl"
  make_corpus(corpus, args.docs, args.chars)
  inp = docs.DocumentInput(files=(str(corpus),))
  config = {"input": inp.describe(), "profile": "web", "vocab": None}
  rule_cfg = rules.RuleConfig.named("web")
  print(
    f"corpus: {args.docs} documents, {corpus.stat().st_size / 1e6:.1f} MB, cpus {os.cpu_count()}, "
    f"load average {os.getloadavg()[0]:.2f}"
  )

  def timed(label, fn):
    t, c = time.perf_counter(), _cpu()
    fn()
    wall, cpu = time.perf_counter() - t, _cpu() - c
    print(
      f"{label:<22} {wall:8.1f} s wall {args.docs / wall:9.0f} docs/s   cpu {cpu:8.1f} s "
      f"({args.docs / cpu:7.0f} docs per cpu-s)",
      flush=True,
    )
    return wall

  base = timed(
    "single process",
    lambda: job.run_refine(
      rows=inp,
      out_dir=tmp / "one",
      programmer=job.RuleProgrammer(rule_cfg),
      piece_size=args.piece_size,
      config=config,
      progress=False,
    ),
  )

  def records(d: Path) -> list[bytes]:
    return sorted(line for f in sorted(d.glob("refine-*-of-*.jsonl")) for line in f.read_bytes().splitlines())

  ref = records(tmp / "one")
  for w in (int(x) for x in args.workers.split(",")):
    out = tmp / f"beam{w}"
    wall = timed(
      f"beam local {w} worker(s)",
      lambda: beam_refine.run_refine_beam(
        inp=inp,
        out_dir=str(out),
        programmer_factory=functools.partial(job.RuleProgrammer, rule_cfg),
        programmer_name=f"rules:{rule_cfg.profile}",
        piece_size=args.piece_size,
        config=config,
        workers=w,
        shards=args.shards,
        spread_pieces=False,
      ),
    )
    same = records(out) == ref
    print(f"  speed-up vs single process: {base / wall:.2f}x; same records: {same}", flush=True)


if __name__ == "__main__":
  main()
  record_results("bench_beam")
