"""seqio's cache job (cache_tasks_main's pipeline, in-process on Beam's local runner) caches c4_en_raw and a
DENSITY-style selection variant; ``use_cached=True`` reads back the uncached task's examples."""

import numpy as np
import pytest

pytest.importorskip("apache_beam")

import seqio

from tokensift.core import beam_util
from tokensift.selection import variants
from tokensift.tasks import registration


def _examples(task, split, use_cached):
  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, use_cached=use_cached)
  return [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ex.items()} for ex in ds.as_numpy_iterator()]


def test_cache_of_raw_task_and_variant_reads_back_equal(tmp_path):
  import apache_beam as beam
  from absl import flags
  from seqio.scripts import cache_tasks_main

  if not flags.FLAGS.is_parsed():  # the script's flags (--base_seed, ...) at their defaults, as its main sees them
    flags.FLAGS.mark_as_parsed()
  registration.register_all()
  base = seqio.get_mixture_or_task("c4_en_raw")
  assert base.supports_caching
  # a selection variant: every third document of the validation split, by id
  ids = [
    ex["id"].decode() if isinstance(ex["id"], bytes) else ex["id"]
    for ex in base.source.get_dataset("validation", shuffle=False).as_numpy_iterator()
  ][::3]
  id_list = variants.write_id_list(tmp_path / "ids.txt", ids)
  variant = variants.register_variant("c4_en_cachetest_r33", "c4_en_raw", id_list)
  assert variant.supports_caching

  cache = tmp_path / "cache"
  with beam.Pipeline(options=beam_util.pipeline_options("local", 1)) as p:
    cache_tasks_main.run_pipeline(p, ["c4_en_raw", "c4_en_cachetest_r33"], str(cache))
  seqio.add_global_cache_dirs([str(cache)])
  try:
    for task, n in ((base, 200), (variant, len(ids))):
      task = seqio.get_mixture_or_task(task.name)  # cache dirs are looked up again
      assert task.cache_dir and str(cache) in task.cache_dir
      cached, uncached = _examples(task, "validation", True), _examples(task, "validation", False)
      # seqio's cache is written in its own shard order: compare as records, keyed by id
      assert len(uncached) == n and len(cached) == n
      assert sorted(cached, key=lambda r: r["id"]) == sorted(uncached, key=lambda r: r["id"])
  finally:
    seqio.set_global_cache_dirs([])
