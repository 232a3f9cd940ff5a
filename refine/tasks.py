"""seqio tasks of refined text.

- ``c4_en_prox_rules`` / ``owm_prox_rules`` (C4 SentencePiece) and ``..._smollm2`` (SmolLM2 BPE): the raw
  sources refined on the fly by the rule programmer (web profile for C4, math profile for OpenWebMath).
- ``register_refined_task(name, output_dir, vocab)``: a task over the output of ``tokensift refine`` (kept
  documents only), for refining-model programs computed offline.

Importing this module registers the rule tasks and adds them to ``tokensift.tasks.register_all()``.
Every example has ``id``, ``text`` (refined), ``raw_text`` and the tokenized ``targets``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import seqio
import tensorflow as tf

from tokensift.core import jobs
from tokensift.refine import rules
from tokensift.refine import tf_preprocessors as tfp
from tokensift.tasks import registry, sources, vocabularies

RULE_TASKS = {
  "c4_en_prox_rules": (sources.c4_source, rules.RuleConfig.web),
  "owm_prox_rules": (sources.owm_source, rules.RuleConfig.math),
}


def register_rule_tasks() -> list[str]:
  """Registers the rule-refined tasks (idempotent); returns their names."""
  names = []
  for base, (source_fn, cfg_fn) in RULE_TASKS.items():
    for suffix, vocab_fn in registry.VOCABS.items():
      name = base + suffix
      pre = functools.partial(tfp.refine_with_rules, config=cfg_fn())
      registry.add_task(name, source_fn(), vocab_fn(), [pre])
      names.append(name)
  return names


class RefinedOutputSource(seqio.DataSource):
  """The kept documents of a refine job's output (``{name}-*-of-*.jsonl|parquet`` with completion markers).

  Examples: ``id``, ``text`` (refined), ``raw_text``, in shard order. Files are found when a dataset is built,
  so a task can be registered before the job has run; a job with no finished shard raises FileNotFoundError
  naming the directory.
  """

  def __init__(self, output_dir: str | Path, job_name: str = "refine"):
    self._dir = Path(output_dir)
    self._job = job_name
    super().__init__(splits=("train",), num_input_examples=None, caching_permitted=False)

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def files(self) -> list[Path]:
    files = jobs.shard_files(self._dir, self._job)
    if not files:
      raise FileNotFoundError(
        f"no finished '{self._job}' shards (*.done markers) in {str(self._dir)!r}; "
        "run `tokensift refine --out ...` first"
      )
    return files

  def list_shards(self, split: str) -> Sequence[str]:
    return [str(f) for f in self.files()]

  def get_dataset(self, split="train", shuffle=True, seed=None, shard_info=None, **kwargs) -> tf.data.Dataset:
    if split not in self.splits:
      raise ValueError(f"unknown split {split!r} for {self}; available: {list(self.splits)}")
    files = self.files()
    if shard_info:  # seqio passes shard_info only when there are at least as many files: whole files per shard
      files = files[shard_info.index :: shard_info.num_shards]

    def gen():
      for f in files:
        for rec in jobs.iter_records(f):
          if rec.get("kept"):
            yield {"id": str(rec["id"]), "text": rec["text"], "raw_text": rec.get("raw_text") or ""}

    sig = {k: tf.TensorSpec([], tf.string) for k in ("id", "text", "raw_text")}
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    if shuffle:
      ds = ds.shuffle(10_000, seed=seed)
    return ds

  def __str__(self):
    return f"RefinedOutputSource({self._dir}, job={self._job})"


def register_refined_task(
  name: str,
  output_dir: str | Path,
  vocab: seqio.Vocabulary | str = "c4sp",
  *,
  job_name: str = "refine",
  replace: bool = False,
) -> seqio.Task:
  """Registers ``name`` over the kept documents of the refine job written to ``output_dir``.

  ``vocab``: a seqio Vocabulary or a name/path for ``tokensift.tasks.vocabularies.get_vocabulary``.
  """
  if isinstance(vocab, str):
    vocab = vocabularies.get_vocabulary(vocab)
  return registry.add_task(name, RefinedOutputSource(output_dir, job_name), vocab, [], replace=replace)


registry.add_registrar(register_rule_tasks)
register_rule_tasks()
