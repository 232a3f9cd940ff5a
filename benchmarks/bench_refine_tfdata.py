"""Refinement inside tf.data (seqio preprocessors) vs the same work as a plain Python loop.

Input: the C4 train sample (1000 documents) read once into memory and repeated ``--repeat`` times as a
``tf.data.Dataset.from_tensor_slices`` (so reading TFRecords is not timed). Timed, each to the last element:
- ``refine_with_rules`` (rule programmer + executor per document, through ``tf.numpy_function``), in batches of
  ``--batch`` and one example per call;
- ``execute_programs`` (programs carried as features; executor only), batched;
- the peer: the same rule programmer + executor in a Python loop over the same strings (no tf.data).
The tf.data pipelines are drained in batches of 256. Prints documents/s (wall) and CPU-seconds used by this
process, and the ratio tf.data / Python loop (tf.data can exceed 1x: its parallel map overlaps batches).

  python benchmarks/bench_refine_tfdata.py [--repeat 3] [--batch 32]
"""

from __future__ import annotations

import argparse
import os
import time
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def timed(fn):
  c0, t0 = time.process_time(), time.perf_counter()
  n = fn()
  return n, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--repeat", type=int, default=3)
  ap.add_argument("--batch", type=int, default=32)
  add_results_flag(ap)
  args = ap.parse_args()
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")
  from tokensift.refine import executor, rules
  from tokensift.refine import tf_preprocessors as tfp
  from tokensift.tasks import sources

  raw = [ex["text"] for ex in sources.c4_source().get_dataset("train", shuffle=False).as_numpy_iterator()]
  raw = raw * args.repeat
  texts = [t.decode("utf-8") for t in raw]
  progs = [rules.write_program(t) for t in texts]
  base = tf.data.Dataset.from_tensor_slices({"id": [str(i) for i in range(len(raw))], "text": raw})
  with_progs = tf.data.Dataset.from_tensor_slices(
    {
      "id": [str(i) for i in range(len(raw))],
      "text": raw,
      "doc_program": [p.doc_program for p in progs],
      "chunk_program": [p.chunk_program for p in progs],
    }
  )
  n = len(raw)
  print(f"C4 train sample x{args.repeat}: {n} documents")

  def drain(ds):
    """Consumes in batches of 256, as a training input pipeline would (per-element Python iteration costs
    about as much as the executor itself and would hide it)."""
    return sum(len(b["id"]) for b in ds.batch(256).as_numpy_iterator())

  def python_loop():
    kept = 0
    for t in texts:
      rp = rules.write_program(t)
      kept += executor.execute(t, rp.doc_program, rp.chunk_program).kept
    return kept

  def python_exec_only():
    return sum(executor.execute(t, p.doc_program, p.chunk_program).kept for t, p in zip(texts, progs))

  drain(tfp.refine_with_rules(base.take(64), batch_size=args.batch))  # warm up tracing
  runs = [
    ("python loop: rules + executor (peer)", python_loop),
    (
      f"tf.data refine_with_rules, batch {args.batch}",
      lambda: drain(tfp.refine_with_rules(base, batch_size=args.batch)),
    ),
    ("tf.data refine_with_rules, batch 1", lambda: drain(tfp.refine_with_rules(base, batch_size=1))),
    ("python loop: executor only (peer)", python_exec_only),
    (
      f"tf.data execute_programs, batch {args.batch}",
      lambda: drain(tfp.execute_programs(with_progs, batch_size=args.batch)),
    ),
  ]
  results = {}
  kept, wall, cpu = timed(lambda: drain(base))
  print(f"{'tf.data, no refinement (reading cost)':48s} {n / wall:9,.0f} docs/s wall  ({cpu:6.2f} CPU-s)")
  for name, fn in runs:
    kept, wall, cpu = timed(fn)
    results[name] = (kept, wall, cpu)
    print(f"{name:48s} {n / wall:9,.0f} docs/s wall  ({cpu:6.2f} CPU-s, {kept} kept)")
  peer = results[runs[0][0]]
  for name, _ in runs[1:3]:
    print(f"ratio {name} / python loop: {peer[1] / results[name][1]:.2f}x (wall)")
  assert results[runs[1][0]][0] == results[runs[0][0]][0] == results[runs[2][0]][0]
  print(
    f"ratio tf.data execute_programs / python executor loop: "
    f"{results[runs[3][0]][1] / results[runs[4][0]][1]:.2f}x (wall)"
  )


if __name__ == "__main__":
  main()
  record_results("bench_refine_tfdata")
