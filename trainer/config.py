"""Frozen dataclass configs of the embedded trainer, bound from gin (``gin_configs/local/*.gin``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from tokensift.models.partitioning import MeshConfig
from tokensift.rho1.selective_loss import DEFAULT_SLM_RATIO, check_scope, check_slm_ratio

OPTIMIZERS = ("adamw", "adafactor")
SCHEDULES = ("constant", "cosine", "linear", "rsqrt")
LOSSES = ("slm", "clm")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """optax optimizer + learning-rate schedule (linear warmup, then ``schedule`` down to
  ``learning_rate * end_fraction`` at the last step; 'rsqrt' decays as 1/sqrt(step) after warmup)."""

  name: str = "adamw"
  learning_rate: float = 1e-3
  schedule: str = "cosine"
  warmup_steps: int = 0
  end_fraction: float = 0.1
  weight_decay: float = 0.0
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  clip_norm: float | None = 1.0

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise ValueError(f"OptimizerConfig.name={self.name!r}; use one of {OPTIMIZERS}")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"OptimizerConfig.schedule={self.schedule!r}; use one of {SCHEDULES}")
    if self.learning_rate <= 0 or self.warmup_steps < 0:
      raise ValueError(f"learning_rate={self.learning_rate} must be > 0 and warmup_steps={self.warmup_steps} >= 0")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """'slm' = Rho-1 selective LM over the top ``slm_ratio`` tokens by excess loss (``scope`` 'batch' or 'sequence');
  'clm' = plain causal LM over every token (the baseline)."""

  kind: str = "slm"
  slm_ratio: float = DEFAULT_SLM_RATIO
  scope: str = "batch"
  z_loss: float = 0.0

  def __post_init__(self):
    if self.kind not in LOSSES:
      raise ValueError(f"LossConfig.kind={self.kind!r}; use one of {LOSSES}")
    check_scope(self.scope, "LossConfig.scope")
    check_slm_ratio(self.slm_ratio, "LossConfig.slm_ratio")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """What to train on and for how long. ``feature_lengths`` are seqio task feature lengths, e.g.
  ``{'targets': 128, 'ref_losses': 128}`` (+ ``'inputs'`` for an encoder-decoder)."""

  model_dir: str
  task: str
  feature_lengths: Mapping[str, int]
  batch_size: int = 8
  train_steps: int = 100
  train_split: str = "train"
  eval_split: str | None = "validation"
  eval_every: int = 0  # 0: evaluate once, at the end
  eval_batches: int = 2
  checkpoint_every: int = 50
  keep_checkpoints: int = 3
  log_every: int = 10
  seed: int = 0
  pack: bool = True
  shuffle_buffer: int = 1024
  # write one epoch of tokenized examples once to {model_dir}/train_examples and train from it: a checkpointable
  # input, so a resume restores its position in constant time (inputs.py); False streams the task's pipeline
  cache_examples: bool = True
  loss: LossConfig = LossConfig()
  optimizer: OptimizerConfig = OptimizerConfig()
  mesh: MeshConfig = MeshConfig()
  progress: bool = True
  # JAX persistent compilation cache for this run (a resumed or repeated run then skips recompiling): a
  # directory, e.g. ~/.cache/tokensift/xla; None leaves JAX's settings alone.
  compilation_cache_dir: str | None = None

  def __post_init__(self):
    if not self.model_dir:
      raise ValueError("TrainConfig.model_dir is empty; pass --model_dir or bind MODEL_DIR in gin")
    for name in ("batch_size", "train_steps", "checkpoint_every", "log_every", "keep_checkpoints"):
      if getattr(self, name) < 1:
        raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be >= 1")
    if "targets" not in self.feature_lengths:
      raise ValueError(f"TrainConfig.feature_lengths={dict(self.feature_lengths)} needs a 'targets' length")

  def data_fingerprint(self) -> dict[str, Any]:
    """The settings that fix the data order; a resumed run must use the same ones."""
    return {
      "task": self.task,
      "feature_lengths": dict(sorted(self.feature_lengths.items())),
      "batch_size": self.batch_size,
      "train_split": self.train_split,
      "seed": self.seed,
      "pack": self.pack,
      "shuffle_buffer": self.shuffle_buffer,
    }

  def to_json(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["feature_lengths"] = dict(self.feature_lengths)
    return out
