"""Orbax checkpoints of the embedded trainer: the train state, JSON metadata (step, data fingerprint, how the
input position is kept) and the tf.data iterator state of the training input.

A run that finds checkpoints in ``{model_dir}/checkpoints`` resumes from the latest one; orbax commits each
step atomically (a temporary directory renamed when complete), so a run killed mid-save resumes from the
previous complete step, and the input position always belongs to the same step as the train state.

Runs in threads of one process (the ablations train several side by side) use ``asynchronous=False``: orbax
keeps process-wide state for its saves, and managers saving concurrently from threads failed (seen in the
ablation tests: a save writing into an item folder not yet created), so those managers take turns under one lock
and each save completes before the next starts.

The input item (as t5x's dataset checkpoints): ``tf.train.Checkpoint(iterator=...).write`` into the step's
``input`` folder, done synchronously inside ``save`` (the iterator must not advance while it is written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

INPUT_ITEM = "input"
_TURNS = threading.Lock()  # the synchronous managers of a process take turns (see the module docstring)


class IteratorHandler(ocp.CheckpointHandler):
  """Saves / restores a ``tf.train.Checkpoint`` (tracking a tf.data iterator) in an orbax item directory."""

  def save(self, directory, args: "IteratorSave") -> None:
    args.checkpoint.write(str(Path(directory) / "iterator"))

  def restore(self, directory, args: "IteratorRestore") -> Any:
    args.checkpoint.read(str(Path(directory) / "iterator")).assert_consumed()
    return args.checkpoint

  def metadata(self, directory) -> None:
    return None

  def finalize(self, directory) -> None:
    pass

  def close(self) -> None:
    pass


@ocp.args.register_with_handler(IteratorHandler, for_save=True)
@dataclasses.dataclass
class IteratorSave(ocp.args.CheckpointArgs):
  checkpoint: Any  # tf.train.Checkpoint


@ocp.args.register_with_handler(IteratorHandler, for_restore=True)
@dataclasses.dataclass
class IteratorRestore(ocp.args.CheckpointArgs):
  checkpoint: Any  # tf.train.Checkpoint, restored in place


def _type_handlers() -> Any:
  """orbax's default leaf handlers, with replica-parallel array saving off: on one host it only slices every
  replicated array into per-device pieces (one small compile each); orbax already turns it off on GPU."""
  th = ocp.type_handlers
  return th.create_type_handler_registry(
    (int, th.ScalarHandler()),
    (float, th.ScalarHandler()),
    (bytes, th.ScalarHandler()),
    (np.number, th.ScalarHandler()),
    (np.ndarray, th.NumpyHandler()),
    (jax.Array, th.ArrayHandler(use_replica_parallel=False)),
    (str, th.StringHandler()),
  )


class Checkpointer:
  """``save(step, state, meta, input_checkpoint)`` / ``latest_step()`` / ``restore(step, abstract_state) ->
  (state, meta)`` / ``restore_input(step, input_checkpoint)``. ``asynchronous``: saves are written in the
  background (one run per process); False: each save completes before ``save`` returns, and the managers of a
  process take turns (runs in threads)."""

  def __init__(self, model_dir: str | Path, keep: int = 3, asynchronous: bool = True):
    self.directory = Path(model_dir).absolute() / "checkpoints"
    self.asynchronous = asynchronous
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous)
    handlers = {
      "state": ocp.PyTreeCheckpointHandler(type_handler_registry=_type_handlers()),
      "meta": ocp.JsonCheckpointHandler(),
      INPUT_ITEM: IteratorHandler(),
    }
    with self._turn():
      self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def _turn(self):
    return contextlib.nullcontext() if self.asynchronous else _TURNS

  def latest_step(self) -> int | None:
    with self._turn():
      return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    with self._turn():
      return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any], input_checkpoint: Any = None) -> None:
    """``input_checkpoint``: a ``tf.train.Checkpoint`` of the training input's iterator, saved with the step."""
    items = {"state": ocp.args.PyTreeSave(state), "meta": ocp.args.JsonSave(meta)}
    if input_checkpoint is not None:
      items[INPUT_ITEM] = IteratorSave(input_checkpoint)
    with self._turn():
      self._manager.save(step, args=ocp.args.Composite(**items))
      if not self.asynchronous:
        self._manager.wait_until_finished()

  def read_meta(self, step: int) -> dict[str, Any]:
    """The JSON metadata of ``step`` alone (no arrays read)."""
    with self._turn():
      out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out["meta"])

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
    with self._turn():
      out = self._manager.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(item=abstract_state, restore_args=restore_args), meta=ocp.args.JsonRestore()
        ),
      )
    return out["state"], dict(out["meta"])

  def restore_input(self, step: int, input_checkpoint: Any) -> None:
    """Restores the training input's iterator (in place) to its position at ``step``."""
    with self._turn():
      self._manager.restore(step, args=ocp.args.Composite(**{INPUT_ITEM: IteratorRestore(input_checkpoint)}))

  def wait(self) -> None:
    with self._turn():
      self._manager.wait_until_finished()

  def close(self) -> None:
    with self._turn():
      self._manager.wait_until_finished()
      self._manager.close()
