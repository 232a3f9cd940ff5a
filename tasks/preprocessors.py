"""Language-modelling preprocessors for raw-text tasks (tf.data, pure functions of an example)."""

from __future__ import annotations

import seqio
import tensorflow as tf


def text_to_targets(ds: tf.data.Dataset, text_key: str = "text") -> tf.data.Dataset:
  """Copies ``text`` into ``targets`` (kept alongside ``id``/``text``) for decoder-only LM tasks."""

  def fn(ex):
    ex = dict(ex)
    ex["targets"] = ex[text_key]
    return ex

  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def drop_empty_targets(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Drops examples whose tokenized ``targets`` are empty (e.g. a document refined to nothing)."""
  return ds.filter(lambda ex: tf.size(ex["targets"]) > 0)


LM_PREPROCESSORS = (
  text_to_targets,
  seqio.preprocessors.tokenize,
  drop_empty_targets,
  seqio.preprocessors.append_eos,
)
