"""T5 span corruption (the ASK-LLM/DENSITY paper's pre-training objective) and prefix tasks, as seqio tasks.

Span corruption (Raffel et al. 2020, T5's ``span_corruption``): documents are tokenized with T5's id layout
(``vocabularies.c4_t5``: pad 0, eos 1, sentinels at the vocabulary's end), concatenated, split into chunks of
``tokens_length`` tokens, and in each chunk ~15% of the tokens (``NOISE_DENSITY``) in spans of mean length 3
(``MEAN_NOISE_SPAN_LENGTH``) are replaced in ``inputs`` by one sentinel per span (``<extra_id_0>`` =
``vocab_size - 1``, then counting down); ``targets`` are the dropped spans, each after its sentinel. An EOS
ends both. ``span_corruption_lengths(512) == (568, 114)``: T5's 568-token chunks for 512 inputs / 114 targets.

Why not ``t5.data.preprocessors.span_corruption``: seqio has no span corruption, and the ``t5`` package (0.9.4,
its last release) cannot be installed next to tokensift's stack: pip resolves it to ``seqio-nightly`` 0.0.18
and ``tfds-nightly`` 4.9.2, which overwrite the ``seqio`` 0.0.20 and ``tensorflow_datasets`` 4.9.10 modules
(same import names), and it pulls ``mesh-tensorflow``. The algorithm below is T5's (same noise counts, span
segmentation, sentinel order, chunking and EOS placement; T5's ``select_random_chunk`` is left out, so a
document over its 65,536-token cap is kept whole), written with stateless tf.random ops seeded by
seqio (``map_over_dataset(num_seeds=...)``), so a task's output is reproducible for a given seqio seed.

Tasks (registered by ``register_span_corruption_tasks``, run from ``tasks.registry``):
- ``c4_en_raw_span_corruption``: C4 → span corruption (features ``inputs``, ``targets``).
- ``{task}_span_corruption`` for any registered raw-text task ``{task}`` (``span_corruption_variant``): same
  source and text-level preprocessors (id filters of selection variants, refinement), then span corruption. For a
  selection variant this equals ``variants.variant_name('c4_en_raw_span_corruption', method, rate)``:
  ``c4_en_askllm_r20`` → ``c4_en_askllm_r20_span_corruption``; ``$TOKENSIFT_SELECTIONS=
  c4_en_raw_span_corruption=/sel/dir`` registers them from a selection directory directly.
- ``c4_en_prefix``, ``owm_prefix`` (T5 layout, for encoder-decoders) and ``c4_en_prefix_smollm2``,
  ``owm_prefix_smollm2`` (decoder-only): ``inputs`` = a document's first half (at most ``inputs`` length - 1
  tokens), ``targets`` = its continuation; what ``t5x.infer`` in predict mode continues.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, overload

import numpy as np
import seqio
import tensorflow as tf

from tokensift.tasks import metrics
from tokensift.tasks import preprocessors as lm_pre
from tokensift.tasks import vocabularies

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0
DEFAULT_INPUTS_LENGTH = 512  # when a task is read without sequence lengths (T5's default)
CONCAT_DOCUMENTS = 128  # T5's reduce_concat_tokens batch
SUFFIX = "_span_corruption"


# ------------------------------------------------------------------------------------------ pure algorithm


@overload
def _counts(length: int | np.integer, noise_density: float, mean_span: float) -> tuple[int, int]: ...
@overload
def _counts(length: tf.Tensor, noise_density: float, mean_span: float) -> tuple[tf.Tensor, tf.Tensor]: ...
def _counts(length, noise_density: float, mean_span: float):
  """(num_noise, num_spans) for a chunk of ``length`` tokens (tf or numpy scalars; float32 rounding, halves to
  even, as T5): ``num_noise = clip(round(length * density), 1, length - 1)``, ``num_spans = max(1,
  round(num_noise / mean_span))``."""
  if isinstance(length, (int, np.integer)):
    num_noise = int(np.clip(np.round(np.float32(length) * np.float32(noise_density)), 1, length - 1))
    return num_noise, max(1, int(np.round(np.float32(num_noise) / np.float32(mean_span))))
  lf = tf.cast(length, tf.float32)
  num_noise = tf.cast(tf.clip_by_value(tf.round(lf * noise_density), 1.0, lf - 1.0), tf.int32)
  num_spans = tf.maximum(1, tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_span), tf.int32))
  return num_noise, num_spans


def span_corruption_lengths(
  inputs_length: int, noise_density: float = NOISE_DENSITY, mean_span: float = MEAN_NOISE_SPAN_LENGTH
) -> tuple[int, int]:
  """(tokens_length, targets_length): the longest chunk whose corrupted inputs plus EOS fit ``inputs_length``,
  and the targets length (with EOS) that chunk gives. ``(512) -> (568, 114)``, as T5's ``random_spans_helper``."""
  if inputs_length < 3:
    raise ValueError(f"inputs_length={inputs_length} is too short for span corruption (need >= 3)")

  def lengths(n):
    num_noise, num_spans = _counts(n, noise_density, mean_span)
    return n - num_noise + num_spans + 1, num_noise + num_spans + 1

  n = 2
  while lengths(n + 1)[0] <= inputs_length:
    n += 1
  return n, lengths(n)[1]


def _random_segmentation(num_items: tf.Tensor, num_segments: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """``num_segments`` positive int32 lengths summing to ``num_items``, uniformly at random (distinct cut points
  among the ``num_items - 1`` gaps)."""
  gaps = tf.argsort(tf.random.stateless_uniform([num_items - 1], seed=seed))  # pyright: ignore[reportArgumentType]  (a shape of tensors)
  cuts = tf.sort(gaps[: num_segments - 1] + 1)
  bounds = tf.concat([[0], cuts, [num_items]], axis=0)
  return bounds[1:] - bounds[:-1]


def random_spans_noise_mask(
  length: tf.Tensor,
  seeds: Sequence[tf.Tensor],
  noise_density: float = NOISE_DENSITY,
  mean_span: float = MEAN_NOISE_SPAN_LENGTH,
) -> tf.Tensor:
  """bool[length]: True on noise tokens. Alternating spans, non-noise first: ``num_spans`` noise spans (total
  ``num_noise`` tokens) and as many non-noise spans, each span length >= 1. ``length >= 2``."""
  length = tf.cast(length, tf.int32)
  num_noise, num_spans = _counts(length, noise_density, mean_span)
  num_spans = tf.minimum(num_spans, tf.minimum(num_noise, length - num_noise))
  noise = _random_segmentation(num_noise, num_spans, seeds[0])
  nonnoise = _random_segmentation(length - num_noise, num_spans, seeds[1])
  span_lengths = tf.reshape(tf.stack([nonnoise, noise], axis=1), [-1])  # [n0, z0, n1, z1, ...]
  span_index = tf.repeat(tf.range(2 * num_spans), span_lengths)
  return tf.equal(span_index % 2, 1)


def replace_spans_with_sentinels(tokens: tf.Tensor, mask: tf.Tensor, vocab_size: int) -> tf.Tensor:
  """Each run of True in ``mask`` becomes one sentinel (``vocab_size - 1`` for the first run, then counting
  down); other tokens are kept. ``tokens``: int32[n] -> int32[m]."""
  prev = tf.concat([[False], mask[:-1]], axis=0)
  first = mask & ~prev  # pyright: ignore[reportOperatorIssue]  (tf.Tensor has __invert__)
  sentinel = vocab_size - tf.cumsum(tf.cast(first, tokens.dtype))
  out = tf.where(first, sentinel, tokens)
  return tf.boolean_mask(out, ~(mask & prev))  # pyright: ignore[reportOperatorIssue]  (tf.Tensor has __invert__)


def corrupt(
  tokens: tf.Tensor,
  seeds: Sequence[tf.Tensor],
  vocab_size: int,
  noise_density: float = NOISE_DENSITY,
  mean_span: float = MEAN_NOISE_SPAN_LENGTH,
) -> tuple[tf.Tensor, tf.Tensor]:
  """One chunk int32[n] (n >= 2) -> (inputs, targets) without EOS: noise spans -> sentinels in the inputs;
  the targets hold each noise span after its sentinel."""
  mask = random_spans_noise_mask(tf.size(tokens), seeds, noise_density, mean_span)
  inverse = ~mask  # pyright: ignore[reportOperatorIssue]  (tf.Tensor has __invert__)
  inputs = replace_spans_with_sentinels(tokens, mask, vocab_size)
  return inputs, replace_spans_with_sentinels(tokens, inverse, vocab_size)


# ------------------------------------------------------------------------------------- seqio preprocessors


def concat_and_split(
  ds: tf.data.Dataset,
  sequence_length: Mapping[str, int] | None = None,
  noise_density: float = NOISE_DENSITY,
  mean_span: float = MEAN_NOISE_SPAN_LENGTH,
  concat_documents: int = CONCAT_DOCUMENTS,
) -> tf.data.Dataset:
  """Tokenized ``targets`` of ``concat_documents`` documents concatenated (no separator, as T5), then split into
  chunks of ``tokens_length`` (``span_corruption_lengths`` of ``sequence_length['inputs']``); chunks shorter than
  2 tokens are dropped. Output: ``{'targets': int32[<= tokens_length]}``."""
  inputs_length = (sequence_length or {}).get("inputs") or DEFAULT_INPUTS_LENGTH
  chunk, _ = span_corruption_lengths(int(inputs_length), noise_density, mean_span)
  ds = ds.map(lambda ex: {"targets": tf.cast(ex["targets"], tf.int32)}, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.ragged_batch(concat_documents).map(lambda b: {"targets": b["targets"].flat_values})

  def split(ex):
    t = ex["targets"]
    n = tf.size(t)
    full = n // chunk
    lengths = tf.concat([tf.fill([full], chunk), [n - full * chunk]], axis=0)
    lengths = tf.boolean_mask(lengths, lengths > 0)
    return tf.data.Dataset.from_tensor_slices({"targets": tf.RaggedTensor.from_row_lengths(t, lengths)})  # pyright: ignore[reportArgumentType, reportAttributeAccessIssue]  (TF's partial stubs)

  ds = ds.flat_map(split).map(lambda ex: {"targets": ex["targets"]})
  return ds.filter(lambda ex: tf.size(ex["targets"]) >= 2)


def denoise(
  ds: tf.data.Dataset,
  output_features: Mapping[str, seqio.Feature],  # pyright: ignore[reportInvalidTypeForm]  (seqio.Feature is a plain alias of seqio.utils.Feature)
  noise_density: float = NOISE_DENSITY,
  mean_span: float = MEAN_NOISE_SPAN_LENGTH,
) -> tf.data.Dataset:
  """``{'targets': chunk}`` -> ``{'inputs', 'targets'}`` by span corruption (sentinels of the targets'
  vocabulary), seeded by seqio."""
  vocab_size = output_features["targets"].vocabulary.vocab_size

  @seqio.map_over_dataset(num_seeds=2)
  def fn(ex, seeds):
    inputs, targets = corrupt(ex["targets"], seeds, vocab_size, noise_density, mean_span)
    return {"inputs": inputs, "targets": targets}

  return fn(ds)  # pyright: ignore[reportCallIssue]  (map_over_dataset supplies the seeds)


SPAN_CORRUPTION_PREPROCESSORS = (
  lm_pre.text_to_targets,
  seqio.preprocessors.tokenize,
  lm_pre.drop_empty_targets,
  concat_and_split,
  denoise,
  seqio.preprocessors.append_eos_after_trim,
)


def split_prefix(ds: tf.data.Dataset, sequence_length: Mapping[str, int] | None = None) -> tf.data.Dataset:
  """Tokenized ``targets`` -> ``inputs`` = the first half (at most ``sequence_length['inputs'] - 1`` tokens),
  ``targets`` = the rest; ``id``/``text`` kept; documents under 2 tokens dropped."""
  cap = (sequence_length or {}).get("inputs")

  def fn(ex):
    t = ex["targets"]
    k = tf.size(t) // 2
    if cap:
      k = tf.minimum(k, cap - 1)
    out = {key: v for key, v in ex.items() if key in ("id", "text")}
    out.update(inputs=t[:k], targets=t[k:])
    return out

  ds = ds.filter(lambda ex: tf.size(ex["targets"]) >= 2)
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


PREFIX_PREPROCESSORS = (
  lm_pre.text_to_targets,
  seqio.preprocessors.tokenize,
  split_prefix,
  seqio.preprocessors.append_eos_after_trim,
)


# ----------------------------------------------------------------------------------------------- registry


def encdec_features(vocab: seqio.Vocabulary) -> dict[str, seqio.Feature]:  # pyright: ignore[reportInvalidTypeForm]  (seqio.Feature is a plain alias of seqio.utils.Feature)
  return {
    "inputs": seqio.Feature(vocabulary=vocab, add_eos=True, dtype="int32"),
    "targets": seqio.Feature(vocabulary=vocab, add_eos=True, dtype="int32"),
  }


def _add(
  name: str,
  source: seqio.DataSource,
  vocab: seqio.Vocabulary,
  preprocessors: Sequence[Callable],
  metric_fns: Sequence[Callable],
  replace: bool,
) -> seqio.Task:
  if name in seqio.TaskRegistry.names():
    if not replace:
      return seqio.TaskRegistry.get(name)
    seqio.TaskRegistry.remove(name)
  interface: seqio.DataSourceInterface = source  # pyright: ignore[reportAssignmentType]  (seqio's DataSource.num_input_examples may return None, its protocol says int)
  return seqio.TaskRegistry.add(
    name,
    source=interface,
    output_features=encdec_features(vocab),
    preprocessors=list(preprocessors),
    postprocess_fn=metrics.keep_target_tokens,
    metric_fns=list(metric_fns),
  )


def text_preprocessors(task: seqio.Task) -> list[Callable]:
  """A raw-text task's text-level preprocessors: its preprocessors without the LM tail
  (``preprocessors.LM_PREPROCESSORS``, within which cacheable tasks hold seqio's ``CacheDatasetPlaceholder``).
  Raises ValueError naming a task that does not end with that tail."""
  pre = [p for p in task.preprocessors if not isinstance(p, seqio.CacheDatasetPlaceholder)]
  tail = list(lm_pre.LM_PREPROCESSORS)
  if len(pre) < len(tail) or pre[-len(tail) :] != tail:
    raise ValueError(
      f"task {task.name!r} is not a tokensift raw-text task (its preprocessors do not end with "
      "tasks.preprocessors.LM_PREPROCESSORS), so it has no text stage to span-corrupt"
    )
  return pre[: -len(tail)]


def span_corruption_name(task_name: str) -> str:
  """``c4_en_askllm_r20`` -> ``c4_en_askllm_r20_span_corruption`` (``_smollm2`` tasks are refused: span
  corruption uses T5's vocabulary)."""
  if task_name.endswith("_smollm2"):
    raise ValueError(
      f"{task_name!r} is a SmolLM2-vocabulary task; span corruption uses the T5-layout C4 "
      "vocabulary: pass the C4 SentencePiece task (without _smollm2)"
    )
  return task_name + SUFFIX


def span_corruption_variant(task_name: str, *, replace: bool = True) -> seqio.Task:
  """Registers ``{task_name}_span_corruption``: the raw-text task's source and text-level preprocessors (id
  filter, refinement, ...) followed by T5 span corruption in the T5-layout C4 vocabulary. Works for every
  selection variant (``variants.register_variant``) of ``c4_en_raw``."""
  task = seqio.TaskRegistry.get(task_name)
  return _add(
    span_corruption_name(task_name),
    task.source,
    vocabularies.c4_t5(),
    [*text_preprocessors(task), *SPAN_CORRUPTION_PREPROCESSORS],
    metrics.ENCDEC_METRICS,
    replace,
  )


def register_span_corruption_variants(task_names: Sequence[str] | None = None) -> list[str]:
  """Span-corruption variants of ``task_names`` (default: every registered ``c4_en_*`` selection variant,
  ``c4_en_{method}_r{rate}``); returns the new task names."""
  import re

  if task_names is None:
    pattern = re.compile(r"^c4_en_[A-Za-z0-9_]+?_r[0-9]+(?:p[0-9]+)?$")
    task_names = [n for n in seqio.TaskRegistry.names() if pattern.match(n)]
  return [span_corruption_variant(n).name for n in task_names]


def register_span_corruption_tasks() -> list[str]:
  """``c4_en_raw_span_corruption`` and the prefix tasks (idempotent); returns their names."""
  from tokensift.tasks import registry

  names = []
  c4 = registry.add_task("c4_en_raw", registry.SOURCES["c4_en"](), vocabularies.c4_sentencepiece())
  if "c4_en_raw_span_corruption" not in seqio.TaskRegistry.names():
    span_corruption_variant(c4.name)
  names.append("c4_en_raw_span_corruption")
  for base, source_fn in registry.SOURCES.items():
    for suffix, vocab_fn, metric_fns in (
      ("", vocabularies.c4_t5, metrics.ENCDEC_METRICS),
      ("_smollm2", vocabularies.smollm2, metrics.PREFIX_LM_METRICS),
    ):
      name = f"{base}_prefix{suffix}"
      _add(name, source_fn(), vocab_fn(), PREFIX_PREPROCESSORS, metric_fns, replace=False)
      names.append(name)
  return names
