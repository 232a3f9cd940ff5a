"""seqio DataSources that keep a document id: C4 through TFDS, OpenWebMath-style rows from files.

Every example carries ``id`` (string) and ``text`` (string) so that later selection stages can join on ids.
- C4: ``seqio.TfdsDataSource("c4/en:3.0.1")`` reading with TFDS's ``add_tfds_id`` so each record's stable
  ``tfds_id`` (``c4-train.tfrecord-00003-of-00008__17``) becomes ``id``. The TFDS data dir is
  ``$TOKENSIFT_C4_TFDS_DIR`` if set, else ``{data dir}/c4/tfds``, resolved on first read.
- OpenWebMath: JSON lines or Parquet with ``url/text/date/metadata``, read by the document layer with
  ``id_field="url"`` (a repeated url is a counted skip; a row without url gets its position id). The sample has
  no split, so ``validation`` is a stable 5% hash hold-out of ids and ``train`` the rest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

import seqio
import tensorflow as tf
from absl import logging

from tokensift.core import docs, jobs, paths, storage

C4_TFDS_ENV = "TOKENSIFT_C4_TFDS_DIR"
TEXT_FEATURES = ("id", "text")


def c4_tfds_dir() -> str:
  value = os.environ.get(C4_TFDS_ENV)
  if value:
    if not value.startswith("gs://") and not Path(value).is_dir():
      raise paths.ConfigError(f"${C4_TFDS_ENV}={value!r} does not exist")
    return value
  return str(paths.data_path("c4", "tfds"))


class _IdTfdsLoader(seqio.LazyTfdsLoader):
  @property
  def read_config(self):
    rc = super().read_config
    rc.add_tfds_id = True
    return rc


class IdTfdsDataSource(seqio.TfdsDataSource):
  """A TfdsDataSource whose examples carry ``id`` (TFDS's per-record ``tfds_id``) and whose data dir is
  resolved lazily by ``data_dir_fn``."""

  def __init__(self, tfds_name: str, data_dir_fn: Callable[[], str], splits: Sequence[str] | None = None):
    self._name_for_loader = tfds_name
    self._data_dir_fn = data_dir_fn
    self._loader = None
    super().__init__(tfds_name=tfds_name, splits=splits, read_only=True)

  @property
  def tfds_dataset(self) -> seqio.LazyTfdsLoader:
    if self._loader is None:
      self._loader = _IdTfdsLoader(self._name_for_loader, data_dir=self._data_dir_fn(), read_only=True)
    return self._loader

  def get_dataset(self, split=None, shuffle=True, seed=None, shard_info=None, **kwargs) -> tf.data.Dataset:
    ds = self.tfds_dataset.load(split or "train", shuffle_files=shuffle, seed=seed, shard_info=shard_info)

    def add_id(ex):
      ex = dict(ex)
      ex["id"] = ex.pop("tfds_id")
      return ex

    return ds.map(add_id, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # pyright: ignore[reportAttributeAccessIssue]  (load of one split: a tf.data.Dataset)


def in_holdout(doc_id: str, fraction: float) -> bool:
  """Stable hash hold-out: True for about ``fraction`` of ids, always the same ones."""
  h = int.from_bytes(hashlib.sha1(doc_id.encode("utf-8")).digest()[:8], "big")
  return (h % 1_000_000) < fraction * 1_000_000


class DocumentFilesSource(seqio.DataSource):
  """JSON-lines / Parquet documents (local or remote globs) as a seqio DataSource with ``id``, ``text`` and
  string extras, read through the document layer (``docs.DocumentInput``): one id rule (``id_field``, else the
  row's position), and ``shard_info`` honoured by reading only that shard's files / row groups / byte ranges
  (so the source supports arbitrary sharding and seqio passes ``shard_info`` down).

  Bad rows (malformed JSON, empty text, missing text, repeated ids) are skipped, counted in ``last_report`` and
  logged when a pass ends; a missing file or pattern raises FileNotFoundError naming it when the dataset is built.
  """

  def __init__(
    self,
    files_fn: Callable[[], Sequence[str]],
    *,
    extra_fields: Sequence[str] = (),
    id_field: str = "id",
    validation_fraction: float | None = 0.05,
  ):
    self._files_fn = files_fn
    self._extra = tuple(extra_fields)
    self._id_field = id_field
    self._val = validation_fraction
    splits = ("train", "validation") if validation_fraction else ("train",)
    self.last_report = docs.ReadReport()
    super().__init__(splits=splits, num_input_examples=None, caching_permitted=False)

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def list_shards(self, split: str) -> Sequence[str]:
    return [url for url, _ in storage.expand(list(self._files_fn()))]

  def input(self) -> docs.DocumentInput:
    return docs.DocumentInput(files=tuple(self._files_fn()), id_field=self._id_field)

  def documents(self, split: str, report: docs.ReadReport | None = None, shard: docs.ShardSpec = docs.ShardSpec()):
    """Python iterator over this split's Documents of one shard (the rows the tf.data pipeline yields)."""
    if split not in self.splits:
      raise ValueError(f"unknown split {split!r} for {self}; available: {list(self.splits)}")
    report = report if report is not None else docs.ReadReport()
    for doc in docs.documents_only(self.input().rows(shard), report):
      if self._val:
        if in_holdout(doc.id, self._val) != (split == "validation"):
          continue
      yield doc

  def get_dataset(self, split="train", shuffle=True, seed=None, shard_info=None, **kwargs) -> tf.data.Dataset:
    self.input().validate()  # fail now, naming the file or pattern, rather than inside the generator
    shard = docs.ShardSpec(shard_info.index, shard_info.num_shards) if shard_info else docs.ShardSpec()

    def gen():
      report = docs.ReadReport()
      for doc in self.documents(split, report, shard):
        row = {"id": doc.id, "text": doc.text}
        for k in self._extra:
          v = doc.meta.get(k, "")
          row[k] = v if isinstance(v, str) else str(v)
        yield row
      self.last_report = report
      if report.num_skipped:
        logging.warning("%s: skipped %d bad rows: %s", self, report.num_skipped, dict(report.skipped))

    sig = {k: tf.TensorSpec([], tf.string) for k in ("id", "text", *self._extra)}
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    if shuffle:
      ds = ds.shuffle(10_000, seed=seed)
    return ds

  def __str__(self):
    return f"DocumentFilesSource({list(self._files_fn()) if self._files_fn else ''})"


def c4_source() -> IdTfdsDataSource:
  return IdTfdsDataSource("c4/en:3.0.1", c4_tfds_dir, splits=("train", "validation"))


OWM_ENV = "TOKENSIFT_OWM_FILES"


def owm_files() -> list[str]:
  """``$TOKENSIFT_OWM_FILES`` (comma-separated globs), else the sample under the data dir."""
  value = os.environ.get(OWM_ENV)
  if value:
    return [p for p in value.split(",") if p]  # globs, local or remote; expanded by the document layer
  return [str(paths.data_path("openwebmath", "owm-sample-878.jsonl"))]


def owm_source() -> DocumentFilesSource:
  return DocumentFilesSource(owm_files, extra_fields=("url", "date", "metadata"), id_field="url")


class RecordFilesSource(seqio.DataSource):
  """Job records ``{id, **features}`` (JSON lines or Parquet written by ``tokensift.core.jobs``) as a seqio source, one
  seqio shard per file. ``list_files(split)`` names the files of a split (looked up when the dataset is built, so
  files finished later are seen); ``features`` maps each field to its numpy dtype (1-d arrays); ``missing``, if
  given, makes a split without files an error with that message (``missing(split)``) instead of an empty split."""

  def __init__(
    self,
    splits: Sequence[str],
    list_files: Callable[[str], Sequence[str]],
    features: dict[str, type],
    *,
    name: str,
    missing: Callable[[str], str] | None = None,
  ):
    super().__init__(splits=tuple(splits), num_input_examples=None, caching_permitted=False)
    self._list_files, self._features, self._name, self._missing = list_files, dict(features), name, missing

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def list_shards(self, split: str) -> Sequence[str]:
    return [str(f) for f in self._list_files(split)]

  def get_dataset(self, split="train", shuffle=True, seed=None, shard_info=None, **kwargs):
    import numpy as np

    files = self.list_shards(split)
    if not files and self._missing is not None:
      raise FileNotFoundError(self._missing(split))
    if shard_info:
      files = files[shard_info.index :: shard_info.num_shards]
    features = self._features

    def gen():
      for f in files:
        for r in jobs.iter_records(f):
          yield {"id": str(r["id"]), **{k: np.asarray(r[k], dt) for k, dt in features.items()}}

    specs = {k: tf.TensorSpec([None], tf.as_dtype(dt)) for k, dt in features.items()}  # pyright: ignore[reportArgumentType]  (numpy scalar types are dtypes to TF)
    sig = {"id": tf.TensorSpec([], tf.string), **specs}
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    return ds.shuffle(10_000, seed=seed) if shuffle else ds

  def __str__(self):
    return f"RecordFilesSource({self._name})"
