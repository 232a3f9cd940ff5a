"""The tokensift seqio task registry: idempotent registration of the raw-text tasks and a helper for the
variants other packages add (refined, ASK-LLM / DENSITY selected, with reference losses).

Task names: ``c4_en_raw``, ``owm_raw`` (C4 SentencePiece, 32768 pieces) and ``c4_en_raw_smollm2``,
``owm_raw_smollm2`` (SmolLM2's BPE, for Llama-family training and reference models). Every task keeps
``id`` and ``text`` next to the tokenized ``targets`` and reports ``metrics.perplexity`` under ``t5x.eval``.
``tasks.registration.register_all`` registers these and every other family.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import seqio

from tokensift.tasks import metrics
from tokensift.tasks import preprocessors as lm_pre
from tokensift.tasks import sources, vocabularies

VOCABS: dict[str, Callable[[], seqio.Vocabulary]] = {
  "": vocabularies.c4_sentencepiece,
  "_smollm2": vocabularies.smollm2,
}
SOURCES: dict[str, Callable[[], seqio.DataSource]] = {
  "c4_en": sources.c4_source,
  "owm": sources.owm_source,
}


def lm_output_features(vocab: seqio.Vocabulary) -> dict[str, seqio.Feature]:  # pyright: ignore[reportInvalidTypeForm]  (seqio.Feature is a plain alias of seqio.utils.Feature)
  return {"targets": seqio.Feature(vocabulary=vocab, add_eos=True, dtype="int32")}


def _lm_preprocessors(source: seqio.DataSource) -> list:
  """LM tokenization, with seqio's ``CacheDatasetPlaceholder`` before ``append_eos`` (as t5's tasks) when the
  source permits caching (C4's TFDS source): such tasks, and their selection variants (which prepend their
  filter), are cached by seqio's ``cache_tasks_main``. File sources (OpenWebMath, job records) do not permit it."""
  pre: list[Any] = list(lm_pre.LM_PREPROCESSORS)
  if source.caching_permitted:
    pre.insert(len(pre) - 1, seqio.CacheDatasetPlaceholder())
  return pre


def add_task(
  name: str,
  source: seqio.DataSource,
  vocab: seqio.Vocabulary,
  preprocessors: Sequence[Callable] = (),
  *,
  replace: bool = False,
) -> seqio.Task:
  """Registers ``name`` = source → ``preprocessors`` (text level) → LM tokenization, once.

  Re-registering an existing name returns the registered task unless ``replace`` is set.
  """
  if name in seqio.TaskRegistry.names():
    if not replace:
      return seqio.TaskRegistry.get(name)
    seqio.TaskRegistry.remove(name)
  interface: seqio.DataSourceInterface = source  # pyright: ignore[reportAssignmentType]  (seqio's DataSource.num_input_examples may return None, its protocol says int)
  return seqio.TaskRegistry.add(
    name,
    source=interface,
    output_features=lm_output_features(vocab),
    preprocessors=[*preprocessors, *_lm_preprocessors(source)],
    postprocess_fn=metrics.keep_target_tokens,
    metric_fns=list(metrics.LM_METRICS),
  )


def register_raw_tasks() -> list[str]:
  """Registers the raw tasks (idempotent); returns their names."""
  names = []
  for base, source_fn in SOURCES.items():
    for suffix, vocab_fn in VOCABS.items():
      name = f"{base}_raw{suffix}"
      add_task(name, source_fn(), vocab_fn())
      names.append(name)
  return names


_EXTRA_REGISTRARS: list[Callable[[], Iterable[str]]] = []


def add_registrar(fn: Callable[[], Iterable[str]]) -> Callable[[], Iterable[str]]:
  """Packages add their own task families (refine, selection, models) through this hook."""
  if fn not in _EXTRA_REGISTRARS:
    _EXTRA_REGISTRARS.append(fn)
  return fn


def run_registrars() -> list[str]:
  """Runs the registrars added with ``add_registrar`` (in the order they were added); returns the task names."""
  names: list[str] = []
  for fn in _EXTRA_REGISTRARS:
    names.extend(fn())
  return names
