"""Step time of the Rho-1 selective loss vs plain cross-entropy in the embedded trainer (DESIGN §8: <= 1.05x).

Same Llama network, optimizer (AdamW), mesh and batch for both: real OpenWebMath documents in SmolLM2 tokens,
packed by the SLM feature converter, with reference losses that a (random, tiny) reference Llama computed
for exactly these documents. The SLM step adds the excess loss, the global-batch top-k selection (a sort of
batch * length values) and its metrics; everything else is shared. Compilation is excluded; the two steps are
timed alternately (``--repeats`` rounds), median and best-of ratios reported, plus XLA's cost model (flops,
bytes accessed) of both compiled steps, which does not depend on the machine's load.

Run: ``python benchmarks/bench_slm_step.py [--hidden 128 --layers 2 --batch 4 --length 256 --repeats 10]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from results import add_results_flag, record_results  # benchmarks/results.py (--results)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def real_batch(batch: int, length: int):
  """One packed batch of OpenWebMath documents with reference losses (tiny random reference Llama)."""
  import flax.linen as nn
  import jax
  import numpy as np
  import seqio
  import tokensift.all_tasks  # noqa: F401  (registers the seqio tasks, owm_raw_smollm2 among them)
  from tokensift.rho1 import feature_converters, reference_losses as rl
  from tokensift.models.llama import Llama, LlamaConfig

  ref = Llama(
    LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1)
  )
  shapes = jax.eval_shape(lambda: ref.init(jax.random.PRNGKey(0), np.ones((1, 8), np.int32))["params"])
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.3).astype(np.float32), nn.unbox(shapes))
  out = tempfile.mkdtemp(prefix="bench_slm_ref_")
  rl.compute_reference_losses(
    task="owm_raw_smollm2",
    out_dir=out,
    splits=("train",),
    max_docs=2 * batch,
    max_length=length,
    progress=False,
    scorer=rl.ReferenceScorer(ref, params, batch_tokens=4 * length, max_length=length),
  )
  name = rl.register_reference_loss_task("owm_raw_smollm2", out, name="owm_bench_slm_step")
  lengths = {"targets": length, "ref_losses": length}
  ds = seqio.get_mixture_or_task(name).get_dataset(sequence_length=lengths, split="train", shuffle=False)
  ds = feature_converters.SelectiveLMFeatureConverter(pack=True)(ds, lengths).batch(batch, drop_remainder=True)
  return next(ds.as_numpy_iterator())


def step_runners(network, batch: dict, slm_ratio: float, *, cost: bool = True) -> dict[str, list]:
  """The embedded trainer's CLM and SLM train steps (``trainer.steps.Steps``: same network, AdamW, mesh of the
  local devices) on one host ``batch`` (model features, ``[batch, length]``), each compiled by one first step:
  ``{kind: [steps, state, device_batch, compile seconds, XLA cost model dict (empty unless cost)]}``."""
  import jax
  from tokensift.models import partitioning
  from tokensift.trainer import optim
  from tokensift.trainer.config import LossConfig, OptimizerConfig
  from tokensift.trainer.steps import Steps

  size, length = batch["decoder_target_tokens"].shape
  mesh = partitioning.make_mesh(partitioning.MeshConfig())
  runners = {}
  for kind in ("clm", "slm"):
    tx, schedule = optim.make_optimizer(OptimizerConfig(learning_rate=1e-3), 1000)
    steps = Steps(network, LossConfig(kind=kind, slm_ratio=slm_ratio), tx, schedule, mesh)
    state = steps.init_state(size, {"targets": length})
    device_batch = steps.put_batch(batch)
    t0 = time.perf_counter()
    state, metrics = steps.train_step(state, device_batch)  # compile
    jax.block_until_ready(metrics)
    runners[kind] = [
      steps,
      state,
      device_batch,
      time.perf_counter() - t0,
      steps.train_step_cost(state, device_batch) if cost else {},
    ]
  return runners


def time_alternately(runners: dict[str, list], repeats: int, budget_s: float = float("inf")) -> dict[str, list[float]]:
  """Seconds of each train step, the kinds taking turns (so load changes hit both alike): ``repeats`` rounds,
  fewer once the steps took ``budget_s`` in all (at least one round)."""
  import jax

  times: dict[str, list[float]] = {kind: [] for kind in runners}
  for _ in range(repeats):
    for kind, runner in runners.items():
      steps, state, device_batch = runner[:3]
      t0 = time.perf_counter()
      state, metrics = steps.train_step(state, device_batch)
      jax.block_until_ready((state, metrics))
      times[kind].append(time.perf_counter() - t0)
      runner[1] = state
    if sum(map(sum, times.values())) >= budget_s:
      break
  return times


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--hidden", type=int, default=128)
  ap.add_argument("--layers", type=int, default=2)
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--length", type=int, default=256)
  ap.add_argument("--slm_ratio", type=float, default=0.6)
  ap.add_argument("--repeats", type=int, default=10)
  add_results_flag(ap)
  args = ap.parse_args()

  import jax
  from tokensift.models.llama import Llama, LlamaConfig

  batch = real_batch(args.batch, args.length)
  heads = max(1, args.hidden // 64)
  network = Llama(
    LlamaConfig(
      vocab_size=49152,
      hidden_size=args.hidden,
      intermediate_size=4 * args.hidden,
      num_layers=args.layers,
      num_heads=heads,
      num_kv_heads=max(1, heads // 2),
    )
  )
  runners = step_runners(network, batch, args.slm_ratio)
  times = time_alternately(runners, args.repeats)
  clm, slm = statistics.median(times["clm"]), statistics.median(times["slm"])
  tokens = args.batch * args.length
  print(
    f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; Llama hidden {args.hidden}, {args.layers} "
    f"layers, vocab 49152; batch {args.batch} x {args.length} = {tokens} tokens (packed OpenWebMath)"
  )
  print(f"compile: clm {runners['clm'][3]:.1f} s, slm {runners['slm'][3]:.1f} s")
  print(f"plain CE step  : {clm * 1e3:8.1f} ms  ({tokens / clm:,.0f} tokens/s)  [min {min(times['clm']) * 1e3:.1f}]")
  print(
    f"SLM step (k={args.slm_ratio:g}): {slm * 1e3:8.1f} ms  ({tokens / slm:,.0f} tokens/s)  "
    f"[min {min(times['slm']) * 1e3:.1f}]"
  )
  print(
    f"ratio SLM / CE step time: {slm / clm:.3f} median, {min(times['slm']) / min(times['clm']):.3f} "
    f"best-of-{args.repeats}  (target <= 1.05)"
  )
  cost = {k: runners[k][4] for k in ("clm", "slm")}
  for key in ("flops", "bytes accessed"):
    if cost["clm"].get(key):
      print(
        f"XLA cost model, {key}: CE {cost['clm'][key]:.4g}, SLM {cost['slm'][key]:.4g}, ratio "
        f"{cost['slm'][key] / cost['clm'][key]:.4f}"
      )


if __name__ == "__main__":
  main()
  record_results("bench_slm_step")
