"""Deterministic, resumable input batches from a seqio task for the embedded trainer.

Training order: the task's examples in source order (``shuffle=False``), optionally cached, repeated forever,
shuffled with a fixed seed through a ``shuffle_buffer``, converted (packed) by the feature converter and batched
with ``drop_remainder``. Every step is a pure function of the config: batch ``k`` is always the same batch, so a
resumed run restarts the pipeline and skips the ``k`` batches it already trained on (tf.data ``skip`` replays
them without any model work). No iterator state needs checkpointing (the OpenWebMath source is a Python
generator, which tf.data cannot checkpoint).

Eval order: one pass of the eval split in source order, in batches padded with empty rows (loss weight 0) to
``batch_size``.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from tokensift.models.trainer.config import TrainConfig

Batch = dict[str, np.ndarray]


def get_task(name: str):
  import seqio
  import tokensift.tasks
  if name not in seqio.TaskRegistry.names() and name not in seqio.MixtureRegistry.names():
    tokensift.tasks.register_all()
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError:
    raise ValueError(f"unknown seqio task or mixture {name!r}; `tokensift tasks` lists the registered ones (a "
                     "reference-loss variant is registered by register_reference_loss_task in the gin file)") from None


def make_converter(task, encoder_decoder: bool, pack: bool):
  from tokensift.models import feature_converters
  return feature_converters.converter_for(task, encoder_decoder=encoder_decoder, pack=pack)


def _options(ds):
  import tensorflow as tf
  opts = tf.data.Options()
  opts.deterministic = True
  return ds.with_options(opts)


def _check_lengths(task, lengths) -> None:
  missing = [k for k, f in task.output_features.items() if getattr(f, "required", True) and k not in lengths]
  if missing:
    raise ValueError(f"feature_lengths={dict(lengths)} lacks {missing} for task {task.name!r} (its features: "
                     f"{sorted(task.output_features)})")


def train_batches(config: TrainConfig, encoder_decoder: bool, start_batch: int = 0) -> Iterator[Batch]:
  """Infinite iterator over training batches ``{feature: [batch_size, length]}``, starting at ``start_batch``."""
  task = get_task(config.task)
  lengths = dict(config.feature_lengths)
  _check_lengths(task, lengths)
  ds = task.get_dataset(sequence_length=lengths, split=config.train_split, shuffle=False, num_epochs=1,
                        use_cached=False)
  if config.cache_examples:
    ds = ds.cache()
  ds = ds.repeat()
  if config.shuffle_buffer > 1:
    ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=False)
  ds = make_converter(task, encoder_decoder, config.pack)(ds, lengths)
  ds = ds.batch(config.batch_size, drop_remainder=True)
  if start_batch:
    ds = ds.skip(start_batch)
  ds = _options(ds.prefetch(2))
  for batch in ds.as_numpy_iterator():
    yield batch


def _pad_rows(batch: Batch, rows: int) -> Batch:
  n = next(iter(batch.values())).shape[0]
  if n == rows:
    return batch
  return {k: np.concatenate([v, np.zeros((rows - n, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}


def eval_batches(config: TrainConfig, encoder_decoder: bool) -> list[Batch]:
  """The first ``config.eval_batches`` batches of the eval split (fixed order; last one padded)."""
  if not config.eval_split:
    return []
  task = get_task(config.task)
  if config.eval_split not in task.splits:
    raise ValueError(f"task {config.task!r} has no split {config.eval_split!r} for eval; it has "
                     f"{list(task.splits)} (set TrainConfig.eval_split = None to skip eval)")
  lengths = dict(config.feature_lengths)
  ds = task.get_dataset(sequence_length=lengths, split=config.eval_split, shuffle=False, num_epochs=1,
                        use_cached=False)
  ds = make_converter(task, encoder_decoder, config.pack)(ds, lengths)
  ds = _options(ds.batch(config.batch_size, drop_remainder=False).take(config.eval_batches))
  return [_pad_rows(b, config.batch_size) for b in ds.as_numpy_iterator()]
