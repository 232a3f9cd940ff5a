"""The training core: a train state, a step function passed in, a deterministic batch stream, orbax checkpoints
and metrics through clu; in the shape of t5x's ``trainer.py`` (``Trainer.train(batch_iter, num_steps)`` over a
TrainState) and the flax examples (``train_step(state, batch) -> (state, metrics)``).

Three loops run on it: the embedded trainer (``loop.train``: seqio batches, sharded steps), the ProX refiner's SFT
(``refine.refiner_training``) and the seeded ablations (``pipeline.ablations``, whose step is ``over_seeds`` of a
one-seed step). Each gets the same guarantees:

- **resume**: ``Trainer.restore`` takes the latest checkpoint in ``{model_dir}/checkpoints`` (orbax: the state, the
  JSON metadata, and the input iterator when the batches can checkpoint one) and puts the batches where that step
  left them, so a run killed at any point and restarted logs exactly the losses of an uninterrupted one;
- **one identity per directory**: ``data`` (what fixes the data order and the model) is stored with every
  checkpoint; a directory holding a run with other ``data`` is refused rather than resumed;
- **metrics**: every ``log_every`` steps and at the last, the step's metrics go to clu writers (TensorBoard,
  logs, ``metrics.jsonl``: ``metric_writers.MetricsLog``); ``eval_fn`` runs every ``eval_every`` steps and at the last.

State: any pytree; ``new_state`` / ``make_step`` give the usual ``{"step", "params", "opt_state"}`` and its
optax step. Batches (``Batches``): ``next(batches)`` gives the host batch of the next step, ``replay(n)``
positions a fresh stream after ``n`` batches; a stream with ``checkpointable`` true also has ``checkpoint`` (a
``tf.train.Checkpoint`` of its iterator, restored in constant time instead of a replay).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import jax
import jax.numpy as jnp
import optax

from tokensift.trainer.metrics import host_metrics

State = Any  # a pytree; by convention {"step": int32[], "params": tree, "opt_state": tree} (new_state)
StepFn = Callable[[State, Any], tuple[State, Mapping[str, jax.Array]]]
LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]


# ------------------------------------------------------------------------------------------- state and step


def new_state(params: Any, optimizer: optax.GradientTransformation) -> dict[str, Any]:
  """The train state at step 0: ``{"step": int32[], "params": params, "opt_state": optimizer.init(params)}``."""
  return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}


def make_step(
  loss_fn: LossFn, optimizer: optax.GradientTransformation, schedule: optax.Schedule | None = None, rng_seed: int = 0
) -> StepFn:
  """The optax train step (not jitted): ``loss_fn(params, batch, rng) -> (loss, metrics)`` differentiated at
  ``state["params"]``, the optimizer's update applied, ``step`` + 1; other entries of the state pass through.
  ``rng``: ``fold_in(PRNGKey(rng_seed), step)`` (dropout; a loss without randomness ignores it). Metrics: the
  loss's, plus ``loss``, ``grad_norm`` and (with ``schedule``) ``learning_rate`` at this step."""

  def step(state: State, batch: Any) -> tuple[State, dict[str, jax.Array]]:
    rng = jax.random.fold_in(jax.random.PRNGKey(rng_seed), state["step"])
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch, rng)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    new = dict(state, step=state["step"] + 1, params=optax.apply_updates(state["params"], updates), opt_state=opt_state)
    metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
    if schedule is not None:
      metrics["learning_rate"] = jnp.asarray(schedule(state["step"]), jnp.float32)
    return new, metrics

  return step


def over_seeds(step_fn: StepFn) -> StepFn:
  """``step_fn`` over a leading seed axis of the state, the batch and the metrics (``jax.vmap``): every seed of
  a run in one compiled program. Its metrics are ``[seeds]`` vectors, written as ``{name}/seed{k}``."""
  return jax.vmap(step_fn)


# ------------------------------------------------------------------------------------------------ batches


class Batches(Protocol):
  """A deterministic stream of host batches (see the module docstring)."""

  def __next__(self) -> Any: ...

  def replay(self, n: int, /) -> None: ...


class ReplayBatches:
  """Batches ``make(key)`` over a deterministic stream of keys (e.g. the pair indices of a batch, or the rows each
  seed draws): ``replay(n)`` restarts the keys from ``keys()`` and skips ``n`` of them, building no batch. The
  keys must be cheap to replay; their stream must be a pure function of the run's settings."""

  checkpointable = False
  why_not = "a Python stream of batch keys (replayed on resume)"

  def __init__(self, keys: Callable[[], Iterator[Any]], make: Callable[[Any], Any]):
    self._keys, self._make = keys, make
    self._it = keys()

  def __iter__(self) -> ReplayBatches:
    return self

  def __next__(self) -> Any:
    return self._make(next(self._it))

  def replay(self, n: int) -> None:
    self._it = self._keys()
    for _ in range(n):
      next(self._it)


# ------------------------------------------------------------------------------------------------ trainer


@dataclasses.dataclass(frozen=True)
class LoopSettings:
  """How the core runs a step function: ``num_steps`` in all (a resumed run trains the rest), a checkpoint every
  ``checkpoint_every`` steps and at the last (``keep_checkpoints`` kept), train metrics every ``log_every`` steps
  and at the last, ``eval_fn`` every ``eval_every`` steps (0: only at the last). ``desc``: the progress bar's."""

  num_steps: int
  checkpoint_every: int
  log_every: int
  eval_every: int = 0
  keep_checkpoints: int = 3
  progress: bool = True
  desc: str = "train"
  # False for runs in threads of one process: each checkpoint is written before training goes on, one at a time
  # across the process (checkpoints.Checkpointer)
  async_checkpoints: bool = True

  def __post_init__(self):
    for name in ("num_steps", "checkpoint_every", "log_every", "keep_checkpoints"):
      if getattr(self, name) < 1:
        raise ValueError(f"LoopSettings.{name}={getattr(self, name)} must be >= 1")
    if self.eval_every < 0:
      raise ValueError(f"LoopSettings.eval_every={self.eval_every} must be >= 0")


@dataclasses.dataclass
class TrainResult:
  state: Any = dataclasses.field(repr=False)
  step: int  # steps trained in total (including earlier runs)
  resumed_from: int | None
  last_train: dict[str, float]
  last_eval: dict[str, float]
  steps_per_second: float  # this run's steady-state steps (after the first, compiling, step)
  # how this run found its input position: None (fresh run), "restored" (iterator checkpoint, constant time)
  # or "replayed" (the earlier batches read again: an input tf.data cannot checkpoint, or an older checkpoint)
  input_resume: str | None = None
  steps_this_run: int = 0
  tokens_per_second: float = 0.0  # set by a caller that knows its tokens per step (loop.train)


class Trainer:
  """Runs ``step_fn`` (jitted by the caller, e.g. with shardings and donation) over ``batches`` with checkpoints
  and metrics in ``model_dir``. ``data``: JSON-able settings that fix the data order and the model (stored with
  each checkpoint; a resume with others is refused). ``put_batch``: host batch -> device batch (default: as
  is). ``eval_fn(state) -> {name: value}``: evaluation, logged under 'eval'.

  Use: ``state = trainer.restore(init_state, batches)`` then ``trainer.train(state, batches)``; or ``run``."""

  def __init__(
    self,
    step_fn: StepFn,
    model_dir: str | Path,
    settings: LoopSettings,
    *,
    data: Mapping[str, Any],
    put_batch: Callable[[Any], Any] | None = None,
    eval_fn: Callable[[State], Mapping[str, Any]] | None = None,
  ):
    self.step_fn, self.settings, self.data = step_fn, settings, dict(data)
    self.model_dir = Path(model_dir)
    self.model_dir.mkdir(parents=True, exist_ok=True)
    self.put_batch = put_batch or (lambda b: b)
    self.eval_fn = eval_fn
    from tokensift.trainer.checkpoints import Checkpointer  # orbax, imported when a run starts

    self.checkpointer = Checkpointer(
      self.model_dir, keep=settings.keep_checkpoints, asynchronous=settings.async_checkpoints
    )
    self._closed = False
    self.start = 0
    self.resumed_from: int | None = None
    self.input_resume: str | None = None

  def check_directory(self) -> int | None:
    """The latest checkpoint's step (None: a fresh directory); raises if it belongs to a run with other ``data``
    (reads only its metadata: call it before anything expensive)."""
    step = self.checkpointer.latest_step()
    if step is not None:
      stored = self.checkpointer.read_meta(step).get("data")
      if stored != _json(self.data):
        self.close()
        raise ValueError(
          f"{self.model_dir} holds a run with settings {stored}, not {_json(self.data)}: resuming "
          "would change the data order or the model; use another directory (or delete this one)"
        )
    return step

  def restore(self, state: State, batches: Batches) -> State:
    """The latest checkpoint's state (``state``, a fresh one, gives the structure, dtypes and shardings), with
    ``batches`` put at its position; ``state`` itself when there is no checkpoint."""
    step = self.check_directory()
    self.start, self.resumed_from, self.input_resume = 0, step, None
    if step is None:
      return state
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    state, meta = self.checkpointer.restore(step, abstract)
    self.input_resume = self._restore_input(step, meta, batches)
    self.start = step
    return state

  def _restore_input(self, step: int, meta: dict[str, Any], batches: Batches) -> str:
    """Puts ``batches`` at its position after ``step`` batches: the saved iterator state when there is one and
    this run's input can take it, else a replay of the ``step`` batches. Returns "restored" or "replayed"."""
    if meta.get("input") == "iterator" and getattr(batches, "checkpointable", False):
      try:
        self.checkpointer.restore_input(step, getattr(batches, "checkpoint"))
        return "restored"
      except Exception as e:  # noqa: BLE001  (orbax wraps tf errors; a replay gives the same batches)
        # e.g. a checkpoint of a run with another cache_examples setting (same batches, another pipeline)
        logging.warning(
          "input position of step %d not restored (%s: %s); replaying %d batches",
          step,
          type(e).__name__,
          str(e)[:300],
          step,
        )
    batches.replay(step)  # a fresh stream: nothing of a restore that failed part-way is kept
    return "replayed"

  def save(self, step: int, state: State, batches: Batches) -> None:
    iterator = getattr(batches, "checkpointable", False)
    meta = {"step": step, "data": _json(self.data), "input": "iterator" if iterator else "replay"}
    self.checkpointer.save(step, state, meta, getattr(batches, "checkpoint") if iterator else None)

  def train(self, state: State, batches: Batches, *, stop_at: int | None = None) -> TrainResult:
    """Steps ``self.start`` .. ``num_steps`` (see ``LoopSettings``); closes the checkpointer and writers.
    ``stop_at``: end after that step without a final checkpoint or eval, as a preempted job would (the
    schedule still spans ``num_steps``); a later run resumes from the last checkpoint."""
    from tqdm.auto import tqdm

    from tokensift.trainer.metric_writers import MetricsLog  # clu (and TensorFlow), imported when a run starts

    s = self.settings
    log = MetricsLog(self.model_dir, self.start)
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    timed_steps, timed_seconds = 0, 0.0
    done = self.start
    bar = tqdm(
      total=s.num_steps,
      initial=self.start,
      desc=s.desc,
      unit="step",
      dynamic_ncols=True,
      disable=not s.progress,
      mininterval=0.5,
    )
    try:
      for step in range(self.start, s.num_steps):
        if stop_at is not None and step >= stop_at:
          break
        t0 = time.perf_counter()  # wall time of a step: input + train step (+ metrics fetch)
        state, metrics = self.step_fn(state, self.put_batch(next(batches)))
        done = step + 1
        if done % s.log_every == 0 or done == s.num_steps:
          last_train = host_metrics(metrics)
          log.write("train", done, last_train)
          if "loss" in last_train:
            bar.set_postfix(loss=f"{last_train['loss']:.4f}")
        else:
          jax.block_until_ready(metrics)
        if step > self.start:  # the first step of a run compiles
          timed_steps += 1
          timed_seconds += time.perf_counter() - t0
        bar.update(1)
        if done % s.checkpoint_every == 0 or done == s.num_steps:
          self.save(done, state, batches)
        if self.eval_fn is not None and ((s.eval_every and done % s.eval_every == 0) or done == s.num_steps):
          last_eval = host_metrics(self.eval_fn(state))
          log.write("eval", done, last_eval)
    finally:
      bar.close()
      log.close()
      self.close()
    return TrainResult(
      state=state,
      step=done,
      resumed_from=self.resumed_from,
      last_train=last_train,
      last_eval=last_eval,
      steps_per_second=timed_steps / timed_seconds if timed_seconds else 0.0,
      input_resume=self.input_resume,
      steps_this_run=done - self.start,
    )

  def close(self) -> None:
    """Waits for the last checkpoint to be written and closes the checkpointer (once)."""
    if not self._closed:
      self._closed = True
      self.checkpointer.close()


def run(
  step_fn: StepFn,
  state: State,
  batches: Batches,
  model_dir: str | Path,
  settings: LoopSettings,
  *,
  data: Mapping[str, Any],
  stop_at: int | None = None,
  **kw,
) -> TrainResult:
  """``Trainer(step_fn, model_dir, settings, data=data, **kw)``: restore (or start from ``state``), then train."""
  trainer = Trainer(step_fn, model_dir, settings, data=data, **kw)
  try:
    state = trainer.restore(state, batches)
  except BaseException:
    trainer.close()
    raise
  return trainer.train(state, batches, stop_at=stop_at)


def _json(value: Any) -> Any:
  """``value`` as it reads back from the checkpoint's JSON metadata (tuples as lists, keys as strings)."""
  import json

  return json.loads(json.dumps(value, default=str))
