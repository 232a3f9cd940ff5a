"""The accelerator benchmark's code path (benchmarks/device/run.sh) runs on the CPU with tiny shapes (``--smoke``),
without TensorFlow or seqio (the GPU image has neither), and prints every row of its table with finite numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The numbers each row must carry (the others may be absent).
REQUIRED = {
  "matmul": ("ours",),
  "kernel_sums": ("ours", "peer", "ratio"),
  "askllm_llama": ("ours", "peer", "ratio", "fraction"),
  "askllm_t5": ("ours", "peer", "ratio", "fraction"),
  "embed": ("ours",),
  "slm_step": ("ours", "peer", "ratio"),
  "trainer": ("ours", "fraction"),
}

# Imported first by the child's interpreter: TensorFlow and seqio cannot be imported there, as on the GPU.
BLOCK_TF = "import sys\nfor _name in ('tensorflow', 'seqio'):\n  sys.modules[_name] = None\n"


def test_device_bench_smoke_runs_without_tensorflow(tmp_path, data_dir):
  (tmp_path / "sitecustomize.py").write_text(BLOCK_TF)
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTHONPATH")}
  env.update(PYTHON=sys.executable, PYTHONPATH=str(tmp_path), TOKENSIFT_DATA_DIR=str(data_dir))
  out = tmp_path / "table.json"
  proc = subprocess.run(
    ["bash", str(REPO / "benchmarks/device/run.sh"), "--smoke", "--json", str(out)],
    env=env,
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  result = json.loads(out.read_text())
  assert result["profile"] == "smoke"
  assert result["tensorflow_imported"] is False and result["seqio_imported"] is False
  rows = {r["key"]: r for r in result["rows"]}
  assert sorted(rows) == sorted(REQUIRED), rows.keys()
  for key, fields in REQUIRED.items():
    for field in fields:
      value = rows[key][field]
      assert value is not None and math.isfinite(value) and value > 0, (key, field, rows[key])
  # the printed table has a line per row, with the row's own figure in it
  lines = proc.stdout.splitlines()
  for key, row in rows.items():
    assert any(line.startswith(key + " ") and f"{row['ours']:.3g}" in line for line in lines), (key, proc.stdout)
  # the rows measure what they say: the ASK-LLM scorers agree with HF on the same weights (both in bf16, whose
  # rounding moves log P(yes) by ~1e-2 here; a wrong weight mapping moves it by ~1)
  for key in ("askllm_llama", "askllm_t5"):
    assert rows[key]["agreement"] < 0.1, rows[key]


def _xla_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def test_model_flops_agree_with_xla_cost_model():
  """The FLOP counts behind the roofline fractions and MFU (benchmarks/device/flops.py) against XLA's count of
  the compiled scorers and train step (XLA adds the elementwise work: a few percent at these widths)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np

  from tokensift.models import llama, partitioning, t5
  from tokensift.selection import askllm_scorer as sc
  from tokensift.trainer import optim
  from tokensift.trainer.config import LossConfig, OptimizerConfig
  from tokensift.trainer.steps import Steps

  sys.path.insert(0, str(REPO / "benchmarks" / "device"))
  import flops

  length = 128
  tokens = jax.ShapeDtypeStruct((1, length), jnp.int32)
  cfg = llama.LlamaConfig(
    vocab_size=1024, hidden_size=256, intermediate_size=1024, num_layers=2, num_heads=4, num_kv_heads=2
  )
  module = llama.Llama(cfg)
  params = nn.unbox(jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32))["params"]))
  score = jax.jit(lambda p, t, n: sc.decoder_only_logits(module, p, t, n))
  xla = _xla_flops(score.lower(params, tokens, jax.ShapeDtypeStruct((1,), jnp.int32)).compile())
  assert flops.llama_score_flops(cfg, length) == pytest.approx(xla, rel=0.05)

  tcfg = t5.T5Config(
    vocab_size=1024, d_model=256, num_heads=4, head_dim=64, d_ff=1024, num_encoder_layers=2, num_decoder_layers=3
  )
  tmod = t5.T5(tcfg)
  ones = jnp.ones((1, 8), jnp.int32)
  tparams = nn.unbox(jax.eval_shape(lambda: tmod.init(jax.random.PRNGKey(0), ones, ones)["params"]))
  tscore = jax.jit(lambda p, t: sc.encoder_decoder_logits(tmod, p, t))
  assert flops.t5_score_flops(tcfg, length) == pytest.approx(
    _xla_flops(tscore.lower(tparams, tokens).compile()), rel=0.05
  )

  tx, schedule = optim.make_optimizer(OptimizerConfig(learning_rate=1e-3), 10)
  steps = Steps(
    module, LossConfig(kind="clm"), tx, schedule, partitioning.make_mesh(partitioning.MeshConfig(), jax.devices()[:1])
  )
  state = steps.init_state(2, {"targets": length})
  batch = steps.put_batch(
    {
      "decoder_input_tokens": np.ones((2, length), np.int32),
      "decoder_target_tokens": np.ones((2, length), np.int32),
      "decoder_loss_weights": np.ones((2, length), np.float32),
    }
  )
  xla = steps.train_step_cost(state, batch)["flops"]
  assert 2 * length * flops.llama_train_flops_per_token(cfg, length) == pytest.approx(xla, rel=0.05)
