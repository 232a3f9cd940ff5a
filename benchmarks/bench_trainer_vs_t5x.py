"""Training throughput (target tokens/s) of the embedded trainer vs `python -m t5x.train` on the same tiny
config (DESIGN §8: >= 1.0x). Run it in an environment where t5x is installed (DESIGN §10); without t5x only
the embedded trainer's figure is printed.

Same for both: network gin_configs/models/llama_tiny.gin, Rho-1 SLM (ratio 0.6, global batch) on the
OpenWebMath sample with reference losses (computed here by a tiny random reference Llama, so no large model is
loaded), packed batches of ``--batch`` x ``--seq``, Adafactor, z-loss 1e-4, one CPU/GPU device, no eval,
checkpoints outside the timed steps. Both figures are steady-state wall-clock rates that include the input pipeline:
t5x's own ``timing/target_tokens_per_second`` of its second summary interval (the first one includes
compilation), and the embedded trainer's tokens/s over all steps after its first (compiling) one.

Run: ``python benchmarks/bench_trainer_vs_t5x.py [--steps 40 --batch 8 --seq 128]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_reference_losses(out: Path, seq: int, docs: int) -> None:
  import flax.linen as nn
  import jax
  import numpy as np
  from tokensift.rho1 import reference_losses as rl
  from tokensift.models.llama import Llama, LlamaConfig

  ref = Llama(
    LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
  )
  shapes = jax.eval_shape(lambda: ref.init(jax.random.PRNGKey(0), np.ones((1, 8), np.int32))["params"])
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.3).astype(np.float32), nn.unbox(shapes))
  rl.compute_reference_losses(
    task="owm_raw_smollm2",
    out_dir=out,
    splits=("train", "validation"),
    max_docs=docs,
    max_length=seq,
    progress=False,
    scorer=rl.ReferenceScorer(ref, params, batch_tokens=8 * seq, max_length=seq),
  )


def run_embedded(ref: Path, work: Path, steps: int, batch: int, seq: int) -> dict:
  cmd = [
    sys.executable,
    "-m",
    "tokensift.cli",
    "train",
    "--gin_file",
    "gin_configs/local/owm_slm_tiny.gin",
    "--model_dir",
    str(work / "embedded"),
    "--ref_dir",
    str(ref),
    "--gin",
    f"TRAIN_STEPS = {steps}",
    "--gin",
    f"BATCH_SIZE = {batch}",
    "--gin",
    f"SEQ_LEN = {seq}",
    "--gin",
    "tc.OptimizerConfig.name = 'adafactor'",
    "--gin",
    "tc.OptimizerConfig.schedule = 'rsqrt'",
    "--gin",
    "tc.LossConfig.z_loss = 1e-4",
    "--gin",
    "tc.TrainConfig.eval_split = None",
    "--gin",
    f"tc.TrainConfig.checkpoint_every = {steps}",
    "--gin",
    f"tc.TrainConfig.log_every = {steps}",
    "--gin",
    "tc.TrainConfig.progress = False",
  ]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, XLA_FLAGS=""))
  if out.returncode:
    raise RuntimeError(f"embedded trainer failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def run_t5x(ref: Path, work: Path, steps: int, batch: int, seq: int) -> tuple[float, list[str]]:
  half = steps // 2
  cmd = [
    sys.executable,
    "-m",
    "t5x.train",
    f"--gin_search_paths={REPO}",
    "--gin_file=gin_configs/t5x/owm_slm.gin",
    f"--gin.MODEL_DIR='{work / 't5x'}'",
    f"--gin.REF_DIR='{ref}'",
    f"--gin.TRAIN_STEPS={steps}",
    f"--gin.BATCH_SIZE={batch}",
    f"--gin.SEQ_LEN={seq}",
    "--gin.train.train_eval_dataset_cfg=None",
    # t5x summarizes once per "epoch" = checkpoint period here (eval is off): two timed intervals.
    f"--gin.utils.SaveCheckpointConfig.period={half}",
    "--gin.utils.create_learning_rate_scheduler.warmup_steps=10",
  ]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, XLA_FLAGS=""))
  if out.returncode:
    raise RuntimeError(f"t5x.train failed:\n{out.stderr[-3000:]}")
  rates = re.findall(r"\[(\d+)\] collection=train .*?timing/target_tokens_per_second=([0-9.e+-]+)", out.stderr)
  if len(rates) < 2:
    raise RuntimeError(f"no second t5x summary interval in the log (found {rates})")
  return float(rates[-1][1]), [line for line in out.stderr.splitlines() if "collection=train" in line][-2:]


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=40)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--seq", type=int, default=128)
  ap.add_argument("--docs", type=int, default=96, help="training documents with reference losses")
  add_results_flag(ap)
  args = ap.parse_args()
  work = Path(tempfile.mkdtemp(prefix="bench_trainer_vs_t5x_"))
  ref = work / "ref"
  make_reference_losses(ref, args.seq, args.docs)
  import jax

  print(
    f"device: {jax.devices()[0].device_kind}; llama_tiny (2 layers, width 32, vocab 49152); SLM 0.6; "
    f"batch {args.batch} x {args.seq}; {args.steps} steps"
  )
  embedded = run_embedded(ref, work, args.steps, args.batch, args.seq)
  emb_rate = embedded["tokens_per_second"]
  print(f"embedded trainer: {emb_rate:,.0f} tokens/s (steps 2..{args.steps}; loss {embedded['train']['loss']:.4f})")
  if importlib.util.find_spec("t5x") is None:
    print("t5x is not installed here: no peer figure (see DESIGN §10 to build a t5x environment)")
    return
  t5x_rate, lines = run_t5x(ref, work, args.steps, args.batch, args.seq)
  print(
    f"t5x train       : {t5x_rate:,.0f} tokens/s (timing/target_tokens_per_second, steps "
    f"{args.steps // 2 + 1}..{args.steps})"
  )
  print(f"ratio embedded / t5x: {emb_rate / t5x_rate:.2f}  (target >= 1.0)")


if __name__ == "__main__":
  main()
  record_results("bench_trainer_vs_t5x")
