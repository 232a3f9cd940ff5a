"""The embedded trainer's loop: ``train(config, network)``, bound from gin by ``tokensift train``.

Per run: build the mesh and steps (``steps.Steps``, the core's optax step sharded per the rules table), then
run them on the training core (``core.Trainer``): restore the latest checkpoint in ``{model_dir}/checkpoints``
(or init) with the training input's position (a checkpointed tf.data iterator: constant time, see ``inputs``),
train to ``config.train_steps`` with a tqdm progress bar, log metrics through ``clu.metric_writers`` (process 0)
to TensorBoard (``{model_dir}/train``, ``{model_dir}/eval``) and to ``{model_dir}/metrics.jsonl`` (read back by
``metrics.read_metrics``), checkpoint every ``checkpoint_every`` steps and at the end, and evaluate on the eval
split.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tokensift.core.compilation_cache import persistent_compilation_cache
from tokensift.models import partitioning
from tokensift.trainer import core, inputs, optim
from tokensift.trainer.config import TrainConfig
from tokensift.trainer.core import TrainResult
from tokensift.trainer.metrics import host_metrics
from tokensift.trainer.steps import Steps, is_encoder_decoder


def evaluate(steps: Steps, params: Any, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
  """Token-weighted means of the eval metrics over ``batches``."""
  totals: dict[str, float] = {}
  weight = 0.0
  for batch in batches:
    m = host_metrics(steps.eval_step(params, steps.put_batch(batch)))
    w = m.pop("weight_sum")
    weight += w
    for k, v in m.items():
      totals[k] = totals.get(k, 0.0) + (v if k.startswith("num_") else v * w)
  return {k: (v if k.startswith("num_") else v / max(weight, 1e-9)) for k, v in totals.items()}


def compilation_cache(directory: str | None):
  """JAX's persistent compilation cache in ``directory`` for the duration of the block (settings restored
  after); ``None`` does nothing."""
  return persistent_compilation_cache(directory, min_compile_secs=0.5)


def experiment(config: TrainConfig, network: Any) -> tuple[TrainConfig, Any]:
  """The gin binding point of a run (``loop.experiment.config`` / ``.network``): returns its arguments, which
  ``tokensift train`` passes to ``train`` and ``tokensift token-view`` to the view."""
  return config, network


def train(config: TrainConfig, network: Any, *, stop_at: int | None = None) -> TrainResult:
  """Trains ``network`` (a t5x-signature Flax module) per ``config``; resumes from ``config.model_dir``.

  ``stop_at``: end this run after that step without a final checkpoint or eval, as a preempted job would (the
  schedule still spans ``config.train_steps``); a later call resumes from the last checkpoint.
  """
  with compilation_cache(config.compilation_cache_dir):
    return _train(config, network, stop_at)


def _train(config: TrainConfig, network: Any, stop_at: int | None) -> TrainResult:
  model_dir = Path(config.model_dir)
  model_dir.mkdir(parents=True, exist_ok=True)
  encdec = is_encoder_decoder(network)
  inputs.get_task(config.task)  # an unknown task fails before anything is compiled
  mesh = partitioning.make_mesh(config.mesh)
  if config.batch_size % mesh.shape["data"]:
    raise ValueError(
      f"batch_size={config.batch_size} is not divisible by the mesh's data axis "
      f"({mesh.shape['data']} devices); change batch_size or MeshConfig"
    )
  tx, schedule = optim.make_optimizer(config.optimizer, config.train_steps)
  steps = Steps(network, config.loss, tx, schedule, mesh, config.mesh.rules, config.seed)
  eval_data: list = []
  settings = core.LoopSettings(
    num_steps=config.train_steps,
    checkpoint_every=config.checkpoint_every,
    log_every=config.log_every,
    eval_every=config.eval_every,
    keep_checkpoints=config.keep_checkpoints,
    progress=config.progress,
    desc="train",
  )
  eval_fn = (lambda state: evaluate(steps, state["params"], eval_data)) if config.eval_split else None
  trainer = core.Trainer(
    steps.train_step, model_dir, settings, data=config.data_fingerprint(), put_batch=steps.put_batch, eval_fn=eval_fn
  )
  try:
    trainer.check_directory()  # another run's directory fails before anything is compiled
    state = steps.init_state(config.batch_size, config.feature_lengths)
    batches = inputs.TrainInput(config, encdec)
    if not batches.checkpointable:
      logging.warning(
        "the training input of %r cannot be checkpointed (%s): a resumed run will replay its earlier "
        "batches; set TrainConfig.cache_examples=True for a constant-time resume",
        config.task,
        batches.why_not,
      )
    state = trainer.restore(state, batches)
    (model_dir / "config.json").write_text(json.dumps(config.to_json(), indent=1, default=str))
    eval_data += inputs.eval_batches(config, encdec) if config.eval_split else []
  except BaseException:
    trainer.close()
    raise
  result = trainer.train(state, batches, stop_at=stop_at)
  tokens_per_step = config.batch_size * config.feature_lengths["targets"]  # decoder_target_tokens [batch, targets]
  return dataclasses.replace(result, tokens_per_second=result.steps_per_second * tokens_per_step)
