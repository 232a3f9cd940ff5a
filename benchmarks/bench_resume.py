"""Time to put the embedded trainer's input back at batch k: restoring the checkpointed tf.data iterator
(``TrainInput.checkpoint``, what ``loop.train`` does on resume) against replaying the k earlier batches (what it
did before, and still does for an input tf.data cannot checkpoint). Real OpenWebMath sample, tokenized with the
26-piece test SentencePiece model (``owm_raw_tiny26``), packed to 64 tokens, batches of 8, shuffle buffer 1024.

Run: ``python benchmarks/bench_resume.py [--ks 100,1000,5000]``. Prints one row per k: seconds to replay, seconds
to restore (reading the checkpoint + first batch), checkpoint size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--ks", default="100,1000,5000", help="comma-separated batch positions")
  add_results_flag(parser)
  args = parser.parse_args()
  from tokensift.trainer import inputs
  from tokensift.trainer.config import TrainConfig
  from tokensift.tasks import registry, sources, vocabularies

  name = registry.add_task(
    "owm_raw_tiny26", sources.owm_source(), vocabularies.SentencePieceFileVocabulary(vocabularies.TINY_SPM)
  ).name
  work = Path(tempfile.mkdtemp(prefix="bench_resume-"))
  cfg = TrainConfig(
    model_dir=str(work / "run"),
    task=name,
    feature_lengths={"targets": 64},
    batch_size=8,
    shuffle_buffer=1024,
    progress=False,
  )
  t = time.perf_counter()
  inputs.materialize_examples(cfg, inputs.get_task(name))
  print(f"materialize one epoch: {time.perf_counter() - t:.1f} s (once per model_dir)", file=sys.stderr)
  print("k\treplay_s\trestore_s\tcheckpoint_KB")
  for k in (int(x) for x in args.ks.split(",")):
    run = inputs.TrainInput(cfg, False)
    t = time.perf_counter()
    for _ in range(k):
      next(run)
    replay = time.perf_counter() - t
    path = run.checkpoint.write(str(work / f"k{k}" / "iterator"))
    size = sum(f.stat().st_size for f in (work / f"k{k}").iterdir()) / 1e3
    fresh = inputs.TrainInput(cfg, False)  # built before the clock starts: a resumed run builds it anyway
    t = time.perf_counter()
    fresh.checkpoint.read(path).assert_consumed()
    next(fresh)
    restore = time.perf_counter() - t
    print(f"{k}\t{replay:.2f}\t{restore:.2f}\t{size:.0f}", flush=True)
    del run, fresh


if __name__ == "__main__":
  main()
  record_results("bench_resume")
