"""Deterministic input batches from a seqio task for the embedded trainer, resumable in constant time.

Training order: the task's examples in source order (``shuffle=False``), repeated forever, shuffled with a fixed
seed through a ``shuffle_buffer``, converted (packed) by the feature converter and batched with
``drop_remainder``. Batch ``k`` is a pure function of the config (``TrainConfig.data_fingerprint``).

Resume (``TrainInput``): as in t5x (``checkpoint_dataset=True``), the tf.data iterator itself is checkpointed
with ``tf.train.Checkpoint(iterator=...)``, as one more item of the orbax checkpoint (``checkpoints.py``). Its
state is the read position in the examples, the shuffle buffer and its RNG, the packer's partial row and the
prefetched batches: its size and the restore time depend on ``shuffle_buffer``, not on the step, and no earlier
batch is read again. tf.data cannot checkpoint a Python-generator source (the OpenWebMath and reference-loss
sources are ``from_generator``), so with ``cache_examples`` (the default) one epoch of the task's tokenized
examples is first written once to ``{model_dir}/train_examples/{key}`` (``tf.data.Dataset.save``, one shard,
source order) and training reads it back with ``Dataset.load``, which tf.data checkpoints by file position; a
rerun reuses it. With ``cache_examples=False`` the task's own pipeline is used: a checkpointable one (TFDS, e.g.
C4) is checkpointed the same way; otherwise (a Python generator) a resume replays the ``k`` batches through
tf.data ``skip`` (same batches, time linear in ``k``), with a warning that says so.

Eval order: one pass of the eval split in source order, in batches padded with empty rows (loss weight 0) to
``batch_size``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tokensift.trainer.config import TrainConfig

Batch = dict[str, np.ndarray]
EXAMPLES_DIR = "train_examples"


def get_task(name: str):
  import seqio
  import tokensift.tasks

  if name not in seqio.TaskRegistry.names() and name not in seqio.MixtureRegistry.names():
    tokensift.tasks.register_all()
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError:
    raise ValueError(
      f"unknown seqio task or mixture {name!r}; `tokensift tasks` lists the registered ones (a "
      "reference-loss variant is registered by register_reference_loss_task in the gin file)"
    ) from None


def make_converter(task, encoder_decoder: bool, pack: bool):
  from tokensift.rho1 import feature_converters

  return feature_converters.converter_for(task, encoder_decoder=encoder_decoder, pack=pack)


def _options(ds):
  import tensorflow as tf

  opts = tf.data.Options()
  opts.deterministic = True
  return ds.with_options(opts)


def _check_lengths(task, lengths) -> None:
  missing = [k for k, f in task.output_features.items() if getattr(f, "required", True) and k not in lengths]
  if missing:
    raise ValueError(
      f"feature_lengths={dict(lengths)} lacks {missing} for task {task.name!r} (its features: "
      f"{sorted(task.output_features)})"
    )


def _task_examples(config: TrainConfig, task):
  """One epoch of the task's train split, tokenized and trimmed, in source order, output features only."""
  ds = task.get_dataset(
    sequence_length=dict(config.feature_lengths),
    split=config.train_split,
    shuffle=False,
    num_epochs=1,
    use_cached=False,
  )
  keep = [k for k in task.output_features if k in ds.element_spec]
  return ds.map(lambda ex: {k: ex[k] for k in keep})


def examples_dir(config: TrainConfig) -> Path:
  """Where ``materialize_examples`` keeps one epoch of ``config``'s examples (keyed by task, split, lengths)."""
  key = json.dumps([config.task, config.train_split, sorted(config.feature_lengths.items())])
  return Path(config.model_dir) / EXAMPLES_DIR / hashlib.sha256(key.encode()).hexdigest()[:16]


def materialize_examples(config: TrainConfig, task) -> Path:
  """Writes one epoch of the task's examples once (temp dir + rename) and returns the directory; a later call,
  e.g. a resumed run, finds it and returns at once."""
  import tensorflow as tf

  final = examples_dir(config)
  if (final / "examples.json").is_file():
    return final
  final.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
  try:
    # One shard (shard_func 0): Dataset.load then yields the elements in exactly the order they were written.
    _task_examples(config, task).save(str(tmp / "data"), shard_func=lambda *_: tf.constant(0, tf.int64))
    (tmp / "examples.json").write_text(
      json.dumps({"task": config.task, "split": config.train_split, "feature_lengths": dict(config.feature_lengths)})
    )
    shutil.rmtree(final, ignore_errors=True)  # an incomplete directory a killed run left (no examples.json)
    os.replace(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return final


def train_dataset(config: TrainConfig, encoder_decoder: bool, examples=None):
  """The infinite tf.data pipeline of training batches ``{feature: [batch_size, length]}``.

  ``examples``: the source of task examples (default: the materialized epoch with ``cache_examples``, else the
  task's own pipeline); it is repeated, shuffled, converted and batched here.
  """
  import tensorflow as tf

  task = get_task(config.task)
  lengths = dict(config.feature_lengths)
  _check_lengths(task, lengths)
  if examples is None:
    if config.cache_examples:
      examples = tf.data.Dataset.load(str(materialize_examples(config, task) / "data"))
    else:
      examples = _task_examples(config, task)
  ds = examples.repeat()
  if config.shuffle_buffer > 1:
    ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=False)
  ds = make_converter(task, encoder_decoder, config.pack)(ds, lengths)
  ds = ds.batch(config.batch_size, drop_remainder=True)
  return _options(ds.prefetch(2))


class TrainInput:
  """Iterator over training batches whose position is saved and restored through ``checkpoint`` (a
  ``tf.train.Checkpoint`` of the tf.data iterator), or, for a pipeline tf.data cannot checkpoint, replayed.

  ``checkpointable``: whether ``checkpoint`` can be written (checked once, on the fresh iterator).
  ``examples_fn``: builds the example source (tests observe how many examples a resume reads through it).
  """

  def __init__(
    self, config: TrainConfig, encoder_decoder: bool, examples_fn: Callable[[TrainConfig], Any] | None = None
  ):
    self._build = lambda: train_dataset(config, encoder_decoder, examples_fn(config) if examples_fn else None)
    self.checkpointable, self.why_not = True, ""
    self._start(0)
    self.checkpointable, self.why_not = self._probe()

  def _start(self, skip: int) -> None:
    import tensorflow as tf

    ds = self._build()
    if skip and not self.checkpointable:
      ds = ds.skip(skip)  # tf.data skips without converting; nothing will be checkpointed
    self._ds, self._it = ds, iter(ds)
    self.checkpoint = tf.train.Checkpoint(iterator=self._it)
    if skip and self.checkpointable:
      for _ in range(skip):  # same iterator, so its later checkpoints keep the pipeline's structure
        next(self._it)

  def _probe(self) -> tuple[bool, str]:
    """Whether the pipeline can be checkpointed, and why not. A fresh iterator serializes even over a Python
    generator (whose state only exists once it runs), so the pipeline graph is also serialized under the
    pipeline's external-state policy (FAIL unless set): that names state tf.data cannot save ("PyFunc is
    stateful"). ``_as_serialized_graph`` is private, but it is the check tf.data itself runs when saving."""
    import tensorflow as tf

    policy = self._ds.options().experimental_external_state_policy or tf.data.experimental.ExternalStatePolicy.FAIL
    with tempfile.TemporaryDirectory() as d:
      try:
        self._ds._as_serialized_graph(external_state_policy=policy)  # noqa: SLF001
        self.checkpoint.write(os.path.join(d, "probe"))
      except (tf.errors.FailedPreconditionError, tf.errors.UnimplementedError) as e:
        return False, e.message.split("}}")[-1].split("[Op:")[0].strip()
    return True, ""

  def __iter__(self) -> "TrainInput":
    return self

  def __next__(self) -> Batch:
    return {k: v.numpy() for k, v in next(self._it).items()}

  def replay(self, batches: int) -> None:
    """Restarts the pipeline and skips ``batches`` batches (reads them all: time linear in ``batches``)."""
    self._start(batches)


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
    raise ValueError(
      f"task {config.task!r} has no split {config.eval_split!r} for eval; it has "
      f"{list(task.splits)} (set TrainConfig.eval_split = None to skip eval)"
    )
  lengths = dict(config.feature_lengths)
  ds = task.get_dataset(sequence_length=lengths, split=config.eval_split, shuffle=False, num_epochs=1, use_cached=False)
  ds = make_converter(task, encoder_decoder, config.pack)(ds, lengths)
  ds = _options(ds.batch(config.batch_size, drop_remainder=False).take(config.eval_batches))
  return [_pad_rows(b, config.batch_size) for b in ds.as_numpy_iterator()]
