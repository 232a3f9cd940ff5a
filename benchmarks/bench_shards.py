"""Input splits at scale: bytes read per shard as the shard count grows, documents per second per process, and
peak RSS against shard size (DESIGN §11).

Generates a corpus of small JSON-lines documents (default 1,000,000 in 16 files, in a temporary directory), then
for each shard count ``n`` runs shard 0 of ``n`` of a job (``tokensift.core.jobs.run_sharded`` over a
``docs.DocumentInput``; the job keeps id and length, so reading dominates) in a fresh subprocess and prints what
that process read (``bytes_read``, counted by the document layer), its documents per second and its peak RSS
(``resource.getrusage``). With more shards than files the files are cut into byte ranges. A last pair of rows
uses ``--id_field url`` (ids from a field are checked for repeats with an 8-byte hash each: the one per-document
cost of a shard).

    python benchmarks/bench_shards.py                   # 1M documents, n = 1 2 4 8 16 32 64
    python benchmarks/bench_shards.py --docs 200000 --shards 1,4,16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

CHILD = r"""
import json, resource, sys, time
from tokensift.core import docs, jobs
pattern, out, i, n, id_field = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t0 = time.time()
res = jobs.run_sharded(name="bench", out_dir=out, shard=docs.ShardSpec(i, n), piece_size=4096, progress=False,
                       rows=docs.DocumentInput(files=(pattern,), id_field=id_field),
                       process=lambda batch: [{"id": d.id, "n": len(d.text)} for d in batch])
took = time.time() - t0
print(json.dumps({"docs": res.stats["records"], "bytes_read": res.stats["bytes_read"], "seconds": took,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

WORDS = (
  "data",
  "model",
  "token",
  "shard",
  "corpus",
  "filter",
  "quality",
  "score",
  "sample",
  "kernel",
  "text",
  "line",
  "page",
  "web",
  "math",
  "proof",
  "theorem",
  "value",
  "result",
  "order",
)


def generate(root: str, n_docs: int, n_files: int) -> int:
  """``n_files`` JSON-lines files of ``{"url", "text"}`` rows (~100 bytes each); returns the total bytes."""
  per = -(-n_docs // n_files)
  k = 0
  for f in range(n_files):
    with open(os.path.join(root, f"part-{f:03d}.jsonl"), "w") as out:
      lines = []
      for _ in range(min(per, n_docs - k)):
        text = " ".join(WORDS[(k * 7 + j * 13) % len(WORDS)] for j in range(8 + k % 9))
        lines.append(json.dumps({"url": f"https://example.org/{k}", "text": text}))
        k += 1
      out.write("\n".join(lines) + "\n")
  return sum(os.path.getsize(os.path.join(root, f)) for f in os.listdir(root))


def run_shard(pattern: str, out: str, i: int, n: int, id_field: str = "id") -> dict:
  proc = subprocess.run(
    [sys.executable, "-c", CHILD, pattern, out, str(i), str(n), id_field], check=True, capture_output=True, text=True
  )
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--docs", type=int, default=1_000_000)
  ap.add_argument("--files", type=int, default=16)
  ap.add_argument("--shards", default="1,2,4,8,16,32,64")
  ap.add_argument("--dir", default=None, help="where to generate the corpus (default: a temporary directory)")
  add_results_flag(ap)
  args = ap.parse_args(argv)
  root = args.dir or tempfile.mkdtemp(prefix="tokensift-bench-shards-")
  corpus = os.path.join(root, "corpus")
  os.makedirs(corpus, exist_ok=True)
  t0 = time.time()
  total = generate(corpus, args.docs, args.files)
  print(
    f"corpus: {args.docs:,} documents in {args.files} files, {total / 1e6:.1f} MB ({time.time() - t0:.1f} s to "
    f"generate) in {corpus}"
  )
  pattern = os.path.join(corpus, "part-*.jsonl")
  print(
    f"{'n':>4} {'id':>4} {'shard docs':>11} {'bytes read':>12} {'read/input':>10} {'x n':>6} {'docs/s':>9} "
    f"{'peak RSS MB':>11}"
  )
  rows = [(int(n), "pos") for n in args.shards.split(",")] + [(1, "url"), (16, "url")]
  for n, ids in rows:
    out = os.path.join(root, f"out-{n}-{ids}")
    r = run_shard(pattern, out, 0, n, "url" if ids == "url" else "id")
    frac = r["bytes_read"] / total
    print(
      f"{n:>4} {ids:>4} {r['docs']:>11,} {r['bytes_read']:>12,} {frac:>10.4f} {frac * n:>6.3f} "
      f"{r['docs'] / r['seconds']:>9,.0f} {r['peak_rss_mb']:>11.1f}",
      flush=True,
    )
    shutil.rmtree(out, ignore_errors=True)
  if not args.dir:
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  main()
  record_results("bench_shards")
