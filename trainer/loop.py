"""The embedded trainer's loop: ``train(config, network)``, bound from gin by ``tokensift train``.

Per run: build the mesh and steps, restore the latest checkpoint in ``{model_dir}/checkpoints`` (or init) with
the training input's position (a checkpointed tf.data iterator: constant time, see ``inputs``), train to
``config.train_steps`` with a tqdm progress bar, log metrics through ``clu.metric_writers`` (process 0) to
TensorBoard (``{model_dir}/train``, ``{model_dir}/eval``) and to ``{model_dir}/metrics.jsonl`` (one JSON object
per logged step; a resumed run first drops the records after its checkpoint, so the file always holds one loss
curve), checkpoint every ``checkpoint_every`` steps and at the end, and evaluate on the eval split.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from tokensift.core.compilation_cache import persistent_compilation_cache
from tokensift.models import partitioning
from tokensift.trainer import inputs, optim
from tokensift.trainer.checkpoints import Checkpointer
from tokensift.trainer.config import TrainConfig
from tokensift.trainer.steps import Steps, is_encoder_decoder


@dataclasses.dataclass
class TrainResult:
  step: int  # steps trained in total (including earlier runs)
  resumed_from: int | None
  last_train: dict[str, float]
  last_eval: dict[str, float]
  steps_per_second: float  # this run's steady-state steps (after the first, compiling, step)
  tokens_per_second: float
  # how this run found its input position: None (fresh run), "restored" (iterator checkpoint, constant time)
  # or "replayed" (the earlier batches read again: an input tf.data cannot checkpoint, or an older checkpoint)
  input_resume: str | None = None


def truncate_metrics(path: Path, resume_step: int) -> None:
  """Drops the records of a JSON-lines metrics file written after ``resume_step`` (a resumed run logs them again)."""
  if path.exists():
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= resume_step]
    path.write_text("".join(k + "\n" for k in kept))


class MetricsLog:
  """Metrics through ``clu.metric_writers`` (as t5x writes them): per split one default writer, TensorBoard
  events in ``{model_dir}/{split}`` plus absl log lines, on process 0 only (other processes log nothing to
  disk); and a JSON-lines file that a resumed run truncates back to its checkpoint (``read_metrics``)."""

  def __init__(self, model_dir: Path, resume_step: int):
    from clu import metric_writers
    self.path = model_dir / "metrics.jsonl"
    self._lead = jax.process_index() == 0
    if self._lead:
      truncate_metrics(self.path, resume_step)
    # collection=split: TensorBoard events in {model_dir}/{split}, log lines prefixed with the split
    self._writers = {split: metric_writers.create_default_writer(
        str(model_dir), just_logging=not self._lead, collection=split) for split in ("train", "eval")}

  def write(self, split: str, step: int, values: dict[str, float]) -> None:
    self._writers[split].write_scalars(step, values)
    if self._lead:
      with open(self.path, "a") as f:
        f.write(json.dumps({"split": split, "step": step, **values}) + "\n")

  def close(self) -> None:
    for w in self._writers.values():
      w.flush()
      w.close()


def read_metrics(model_dir: str | Path, split: str = "train") -> list[dict[str, Any]]:
  """The records of ``metrics.jsonl`` for ``split``, in step order."""
  path = Path(model_dir) / "metrics.jsonl"
  records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return sorted((r for r in records if r["split"] == split), key=lambda r: r["step"])


def _host(metrics: dict[str, Any]) -> dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def evaluate(steps: Steps, params: Any, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
  """Token-weighted means of the eval metrics over ``batches``."""
  totals: dict[str, float] = {}
  weight = 0.0
  for batch in batches:
    m = _host(steps.eval_step(params, steps.put_batch(batch)))
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
  from tqdm.auto import tqdm

  model_dir = Path(config.model_dir)
  model_dir.mkdir(parents=True, exist_ok=True)
  encdec = is_encoder_decoder(network)
  inputs.get_task(config.task)  # an unknown task fails before anything is compiled
  mesh = partitioning.make_mesh(config.mesh)
  if config.batch_size % mesh.shape["data"]:
    raise ValueError(f"batch_size={config.batch_size} is not divisible by the mesh's data axis "
                     f"({mesh.shape['data']} devices); change batch_size or MeshConfig")
  tx, schedule = optim.make_optimizer(config.optimizer, config.train_steps)
  ckpt = Checkpointer(model_dir, keep=config.keep_checkpoints)
  resumed = ckpt.latest_step()
  if resumed is not None:
    meta = ckpt.read_meta(resumed)
    if meta.get("data") != config.data_fingerprint():
      ckpt.close()
      raise ValueError(f"{model_dir} holds a run with data settings {meta.get('data')}, not "
                       f"{config.data_fingerprint()}: resuming would change the data order; use another "
                       "model_dir")
  steps = Steps(network, config.loss, tx, schedule, mesh, config.mesh.rules, config.seed)
  state = steps.init_state(config.batch_size, config.feature_lengths)
  batches = inputs.TrainInput(config, encdec)
  if not batches.checkpointable:
    logging.warning("the training input of %r cannot be checkpointed (%s): a resumed run will replay its earlier "
                    "batches; set TrainConfig.cache_examples=True for a constant-time resume", config.task,
                    batches.why_not)
  input_resume = None
  if resumed is not None:
    state, meta = ckpt.restore(resumed, steps.abstract_state(state))
    input_resume = _restore_input(ckpt, resumed, meta, batches)
  start = int(jax.device_get(state["step"]))
  (model_dir / "config.json").write_text(json.dumps(config.to_json(), indent=1, default=str))
  log = MetricsLog(model_dir, start)
  eval_data = inputs.eval_batches(config, encdec) if config.eval_split else []

  def save(step: int) -> None:
    meta = {"step": step, "data": config.data_fingerprint(),
            "input": "iterator" if batches.checkpointable else "replay"}
    ckpt.save(step, state, meta, batches.checkpoint if batches.checkpointable else None)

  last_train: dict[str, float] = {}
  last_eval: dict[str, float] = {}
  eval_step = -1
  timed_steps, timed_seconds, timed_tokens = 0, 0.0, 0.0
  bar = tqdm(total=config.train_steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
             disable=not config.progress)
  try:
    for step in range(start, config.train_steps):
      if stop_at is not None and step >= stop_at:
        break
      t0 = time.perf_counter()  # wall time of a step: input pipeline + train step (+ metrics fetch)
      batch = steps.put_batch(next(batches))
      state, metrics = steps.train_step(state, batch)
      done = step + 1
      if done % config.log_every == 0 or done == config.train_steps:
        last_train = _host(metrics)
        log.write("train", done, last_train)
        bar.set_postfix(loss=f"{last_train['loss']:.4f}")
      else:
        jax.block_until_ready(metrics)
      if step > start:  # the first step of a run compiles
        timed_steps += 1
        timed_seconds += time.perf_counter() - t0
        timed_tokens += float(batch["decoder_target_tokens"].size)
      bar.update(1)
      if done % config.checkpoint_every == 0 or done == config.train_steps:
        save(done)
      if eval_data and config.eval_every and done % config.eval_every == 0:
        last_eval, eval_step = evaluate(steps, state["params"], eval_data), done
        log.write("eval", done, last_eval)
    finished = stop_at is None or stop_at >= config.train_steps
    if finished and eval_data and start < config.train_steps and eval_step != config.train_steps:
      last_eval = evaluate(steps, state["params"], eval_data)
      log.write("eval", config.train_steps, last_eval)
  finally:
    bar.close()
    ckpt.close()
    log.close()
  return TrainResult(step=int(jax.device_get(state["step"])), resumed_from=resumed, last_train=last_train,
                     last_eval=last_eval,
                     steps_per_second=timed_steps / timed_seconds if timed_seconds else 0.0,
                     tokens_per_second=timed_tokens / timed_seconds if timed_seconds else 0.0,
                     input_resume=input_resume)


def _restore_input(ckpt: Checkpointer, step: int, meta: dict[str, Any], batches: inputs.TrainInput) -> str:
  """Puts ``batches`` at its position after ``step`` batches: the saved iterator state when there is one and
  this run's input can take it, else a replay of the ``step`` batches. Returns "restored" or "replayed"."""
  if meta.get("input") == "iterator" and batches.checkpointable:
    try:
      ckpt.restore_input(step, batches.checkpoint)
      return "restored"
    except Exception as e:  # noqa: BLE001  (orbax wraps tf errors; a replay gives the same batches)
      # e.g. a checkpoint of a run with another cache_examples setting (same batches, another pipeline)
      logging.warning("input position of step %d not restored (%s: %s); replaying %d batches", step,
                      type(e).__name__, str(e)[:300], step)
  batches.replay(step)  # a fresh pipeline: nothing of a restore that failed part-way is kept
  return "replayed"
