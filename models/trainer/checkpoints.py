"""Orbax checkpoints of the embedded trainer: the train state plus JSON metadata (step, data fingerprint).

A run that finds checkpoints in ``{model_dir}/checkpoints`` resumes from the latest one; orbax commits each
step atomically (a temporary directory renamed when complete), so a run killed mid-save resumes from the
previous complete step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp


class Checkpointer:
  """``save(step, state, meta)`` / ``latest_step()`` / ``restore(step, abstract_state) -> (state, meta)``."""

  def __init__(self, model_dir: str | Path, keep: int = 3):
    self.directory = Path(model_dir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)))

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
    out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                              meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
