"""Rho-1 reference losses for encoder-decoder targets (span corruption), offline, and their seqio task.

The decoder-only job (``reference_losses``) scores a document's tokens once; for an encoder-decoder the targets
only exist after the (random) corruption, so the job stores the corrupted examples themselves: it reads a
span-corruption task with a fixed seed and no shuffling (deterministic), scores every target token with a
reference T5, and writes records ``{id, inputs, targets, ref_losses}`` (``{split}:{position}`` ids, one loss per
target token, EOS included) with ``tokensift.core.jobs.run_sharded`` (sharded, resumable). SLM training then reads
those exact examples (``register_encdec_reference_loss_task``): each epoch sees the same corruption, the price
of computing reference losses offline (DESIGN §6), and packs them with
``feature_converters.SelectiveEncDecFeatureConverter``.

L_ref(y_i) = -log P_ref(y_i | inputs, y_<i) with decoder inputs = targets shifted right with 0 (t5x's
EncDecFeatureConverter), so a training example's ``decoder_ref_losses`` align with its ``decoder_target_tokens``.
``encdec_selective_loss`` is the pure SLM loss of a tokensift T5 on such a batch (the math of
``t5x_models.SelectiveEncoderDecoderModel.loss_fn`` without t5x).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tokensift.core import docs, jobs

JOB_PREFIX = "encdec_ref_losses"
SEED = 0


def job_name(split: str) -> str:
  return f"{JOB_PREFIX}_{split}"


def shift_right(targets: np.ndarray) -> np.ndarray:
  """``int[b, l]`` -> decoder inputs ``[0, t0, ..., t_{l-2}]`` per row."""
  out = np.zeros_like(targets)
  out[:, 1:] = targets[:, :-1]
  return out


@dataclasses.dataclass
class EncDecReferenceScorer:
  """A reference encoder-decoder (``models.t5.T5`` + params) mapping (inputs, targets) pairs to per-target-token
  losses. Pairs are padded to ``inputs_length`` / ``targets_length`` and run ``batch_size`` at a time (one
  compiled program)."""

  module: Any
  params: Any
  inputs_length: int
  targets_length: int
  batch_size: int = 16

  def __post_init__(self):
    import jax
    from tokensift.rho1.selective_loss import token_cross_entropy

    def losses(params, enc, dec_in, dec_tgt):
      logits = self.module.apply({"params": params}, enc, dec_in, dec_tgt)
      return token_cross_entropy(logits, dec_tgt)[0]

    self._fn = jax.jit(losses)

  def __call__(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[np.ndarray]:
    out = []
    for start in range(0, len(pairs), self.batch_size):
      chunk = pairs[start : start + self.batch_size]
      enc = np.zeros((self.batch_size, self.inputs_length), np.int32)
      tgt = np.zeros((self.batch_size, self.targets_length), np.int32)
      for r, (i, t) in enumerate(chunk):
        if len(i) > self.inputs_length or len(t) > self.targets_length:
          raise ValueError(
            f"example of {len(i)} inputs / {len(t)} targets exceeds the scorer's lengths "
            f"{self.inputs_length} / {self.targets_length}"
          )
        enc[r, : len(i)], tgt[r, : len(t)] = i, t
      ce = np.asarray(self._fn(self.params, enc, shift_right(tgt), tgt))
      out.extend(ce[r, : len(t)].astype(np.float32) for r, (_, t) in enumerate(chunk))
    return out


def task_examples(task_name: str, split: str, feature_lengths: Mapping[str, int], max_examples: int | None):
  """Rows for the job, a callable ``shard -> rows``: the shard's own part of the task (seqio ``shard_info``) as
  (inputs, targets) in a fixed order (no shuffle, seed ``SEED``); ids ``{split}:{position}`` (one shard) or
  ``{split}:{i}-of-{n}:{position}``."""
  import seqio
  import tokensift.tasks

  tokensift.tasks.register_all()

  def rows(shard):
    task = seqio.get_mixture_or_task(task_name)
    info = None if shard.count == 1 else seqio.ShardInfo(shard.index, shard.count)
    ds = task.get_dataset(
      dict(feature_lengths), split=split, shuffle=False, seed=SEED, use_cached=False, shard_info=info
    )
    for pos, ex in enumerate(ds.as_numpy_iterator()):
      if max_examples is not None and pos >= max_examples:
        return
      doc_id = f"{split}:{pos}" if info is None else f"{split}:{shard.index}-of-{shard.count}:{pos}"
      inputs, targets = ex["inputs"].astype(np.int32), ex["targets"].astype(np.int32)
      if targets.size == 0 or inputs.size == 0:
        yield docs.Skip("empty inputs or targets", doc_id)
      else:
        yield docs.Document(doc_id, "", {"inputs": inputs.tolist(), "targets": targets.tolist()})

  return rows


def compute_encdec_reference_losses(
  *,
  task: str,
  out_dir: str | Path,
  scorer: EncDecReferenceScorer,
  feature_lengths: Mapping[str, int],
  splits: Sequence[str] = ("train", "validation"),
  shard: jobs.ShardSpec = jobs.ShardSpec(),
  max_examples: int | None = None,
  piece_size: int = 64,
  progress: bool = False,
) -> dict[str, jobs.ShardResult]:
  """Runs shard ``shard`` of the job for each split; returns {split: ShardResult}."""

  def process(batch):
    losses = scorer([(d.meta["inputs"], d.meta["targets"]) for d in batch])
    return [
      {"id": d.id, "inputs": d.meta["inputs"], "targets": d.meta["targets"], "ref_losses": [float(x) for x in loss]}
      for d, loss in zip(batch, losses)
    ]

  config = {"task": task, "feature_lengths": dict(feature_lengths), "max_examples": max_examples, "seed": SEED}
  return {
    split: jobs.run_sharded(
      name=job_name(split),
      out_dir=out_dir,
      rows=task_examples(task, split, feature_lengths, max_examples),
      process=process,
      shard=shard,
      piece_size=piece_size,
      fmt="parquet",
      config=dict(config, split=split),
      progress=progress,
    )
    for split in splits
  }


def register_encdec_reference_loss_task(
  base_task: str = "c4_en_raw_span_corruption",
  ref_dir: str = "",
  name: str | None = None,
  splits: Sequence[str] = ("train", "validation"),
) -> str:
  """Registers (again) ``name`` (default ``{base_task}_ref``) over the job's files in ``ref_dir``: features
  ``inputs``, ``targets`` (the base task's vocabularies) and ``ref_losses``; returns its name (gin:
  ``MIXTURE_OR_TASK_NAME = @encdec_reference_losses.register_encdec_reference_loss_task()``)."""
  from tokensift.rho1.reference_losses import register_ref_task
  from tokensift.tasks.sources import RecordFilesSource

  def source(out_dir: str):
    return RecordFilesSource(
      splits,
      lambda split: jobs.shard_files(out_dir, job_name(split)),
      {"inputs": np.int32, "targets": np.int32, "ref_losses": np.float32},
      name=f"encoder-decoder reference losses in {out_dir!r}",
      missing=lambda split: (
        f"no finished {job_name(split)} shards in {out_dir!r}: run "
        "encdec_reference_losses.compute_encdec_reference_losses first"
      ),
    )

  return register_ref_task(
    caller="register_encdec_reference_loss_task",
    base_task=base_task,
    ref_dir=ref_dir,
    name=name,
    token_features=("inputs", "targets"),
    source=source,
    hint="the job's out_dir",
    postprocess=True,
  )


def encdec_selective_loss(
  module: Any, params: Any, batch: Mapping[str, Any], ratio: float, scope: str = "batch"
) -> tuple[Any, dict[str, Any]]:
  """Rho-1 SLM loss of ``module`` (a T5) on a ``SelectiveEncDecFeatureConverter`` batch: ``encoder_input_tokens
  [b, k]``, ``decoder_input_tokens / decoder_target_tokens / decoder_loss_weights / decoder_ref_losses [b, l]``
  (+ segment ids when packed). Returns ``selective_cross_entropy``'s (loss, metrics)."""
  from tokensift.rho1.selective_loss import selective_cross_entropy

  logits = module.apply(
    {"params": params},
    batch["encoder_input_tokens"],
    batch["decoder_input_tokens"],
    batch["decoder_target_tokens"],
    encoder_segment_ids=batch.get("encoder_segment_ids"),
    decoder_segment_ids=batch.get("decoder_segment_ids"),
  )
  return selective_cross_entropy(
    logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"], batch["decoder_ref_losses"], ratio, scope
  )
