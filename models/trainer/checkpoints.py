"""Orbax checkpoints of the embedded trainer: the train state plus JSON metadata (step, data fingerprint).

A run that finds checkpoints in ``{model_dir}/checkpoints`` resumes from the latest one; orbax commits each
step atomically (a temporary directory renamed when complete), so a run killed mid-save resumes from the
previous complete step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


def _type_handlers() -> Any:
  """orbax's default leaf handlers, with replica-parallel array saving off: on one host it only slices every
  replicated array into per-device pieces (one small compile each); orbax already turns it off on GPU."""
  th = ocp.type_handlers
  return th.create_type_handler_registry(
      (int, th.ScalarHandler()), (float, th.ScalarHandler()), (bytes, th.ScalarHandler()),
      (np.number, th.ScalarHandler()), (np.ndarray, th.NumpyHandler()),
      (jax.Array, th.ArrayHandler(use_replica_parallel=False)), (str, th.StringHandler()))


class Checkpointer:
  """``save(step, state, meta)`` / ``latest_step()`` / ``restore(step, abstract_state) -> (state, meta)``."""

  def __init__(self, model_dir: str | Path, keep: int = 3):
    self.directory = Path(model_dir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    handlers = {"state": ocp.PyTreeCheckpointHandler(type_handler_registry=_type_handlers()),
                "meta": ocp.JsonCheckpointHandler()}
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.PyTreeSave(state),
                                                     meta=ocp.args.JsonSave(meta)))

  def read_meta(self, step: int) -> dict[str, Any]:
    """The JSON metadata of ``step`` alone (no arrays read)."""
    out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(out["meta"])

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(item=abstract_state, restore_args=restore_args),
        meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
