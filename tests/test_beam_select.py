"""The Beam pipelines for DENSITY selection and ASK-LLM top-k (local in-process runner, 2 worker processes)
write the same records as the single-process commands; the sketch CombineFn merges exactly; the exact top-k
bracket finds the k-th key on any input."""

import json

import numpy as np
import pytest

pytest.importorskip("apache_beam")

from tokensift.selection import beam_select, lsh_sketch, select_job, topk, variants
from test_embed_job import c4_embed_dir, c4_embeddings


def _parquet(path):
  import pyarrow.parquet as pq

  return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("density,method", [("exact", "ips"), ("sketch", "random")])
def test_beam_select_equals_single_process(tmp_path, density, method):
  cfg = select_job.SelectConfig(
    method=method, rates=(10, 25), density=density, sketch_rows=64, sketch_buckets=512, seed=3
  )
  one = select_job.select(c4_embed_dir(), tmp_path / "one", cfg)
  summary = beam_select.run_select(c4_embed_dir(), tmp_path / "beam", cfg, workers=2)
  for rate, (path, k) in one.lists.items():
    beam_list = (tmp_path / "beam" / path.name).read_bytes()
    assert beam_list == path.read_bytes() and len(beam_list.splitlines()) == k
  a, b = _parquet(tmp_path / "one" / "density.parquet"), _parquet(tmp_path / "beam" / "density.parquet")
  assert [r["id"] for r in a] == [r["id"] for r in b]
  np.testing.assert_allclose([r["log_density"] for r in a], [r["log_density"] for r in b], rtol=1e-12)
  ref = json.loads((tmp_path / "one" / "select.json").read_text())
  for key in ("documents", "dim", "pool", "density", "rates"):
    assert summary[key] == ref[key], key


def test_sketch_combine_fn_merges_exactly_over_four_workers(tmp_path):
  import apache_beam as beam
  from tokensift.core import beam_util

  _, x = c4_embeddings()
  cfg = lsh_sketch.SketchConfig(rows=50, buckets=256, hashes=2, seed=1)
  whole = lsh_sketch.build_sketch(x, cfg)
  out = tmp_path / "sk.npz"
  batches = [(list(range(i, min(i + 16, len(x)))), x[i : i + 16]) for i in range(0, len(x), 16)]
  with beam.Pipeline(options=beam_util.pipeline_options("local", 4)) as p:
    (
      p
      | beam.Create(batches)
      | beam.Reshuffle()
      | beam.CombineGlobally(beam_select.SketchCombineFn(cfg, x.shape[1]))
      | beam.Map(lambda s: s.save(out))
    )
  merged = lsh_sketch.Sketch.load(out)
  assert merged.num_points == whole.num_points == len(x)
  assert np.array_equal(merged.counts, whole.counts)
  np.testing.assert_array_equal(lsh_sketch.sketch_scores(merged, x), lsh_sketch.sketch_scores(whole, x))


def test_beam_topk_equals_single_process(tmp_path):
  ids, _ = c4_embeddings()
  rng = np.random.default_rng(0)
  scores = np.round(rng.uniform(size=len(ids)), 2)  # many ties: broken by id
  d = tmp_path / "scores"
  d.mkdir()
  for shard in range(3):
    rows = [{"id": i, "score": float(s)} for j, (i, s) in enumerate(zip(ids, scores)) if j % 3 == shard]
    rows.append({"id": f"unscored-{shard}", "score": None})
    (d / f"score-{shard:05d}-of-00003.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / f"score-{shard:05d}-of-00003.done").write_text(
      json.dumps({"file": f"score-{shard:05d}-of-00003.jsonl", "config": {}, "stats": {}})
    )
  one = topk.write_topk_lists(d, (10, 20, 80), out_dir=tmp_path / "one")
  written = beam_select.run_topk(d, (10, 20, 80), out_dir=tmp_path / "beam", workers=2)
  for rate, (path, k, ranked) in one.items():
    assert ranked == len(ids)
    assert variants.read_id_list(written[rate]) == variants.read_id_list(path)
    assert open(written[rate], "rb").read() == path.read_bytes()
  # the same from the command line, in one Beam worker
  from tokensift import cli

  assert (
    cli.main(
      ["topk", str(d), "--rates", "20", "--out", str(tmp_path / "cli"), "--runner", "local", "--beam_workers", "1"]
    )
    == 0
  )
  assert (tmp_path / "cli" / "askllm_r20.txt").read_bytes() == one[20][0].read_bytes()


@pytest.mark.parametrize("n,k", [(1, 1), (7, 3), (5000, 1), (5000, 2500), (5000, 5000), (20000, 17)])
def test_bracket_finds_the_kth_key(n, k, monkeypatch, tmp_path):
  import apache_beam as beam
  from tokensift.core import beam_util

  monkeypatch.setattr(beam_select, "QUANTILES", 50)  # coarse quantiles: the bracket is exercised
  rng = np.random.default_rng(n + k)
  keys = [(float(v), f"{i:06d}") for i, v in enumerate(rng.integers(0, 40, size=n))]  # heavy ties
  out = tmp_path / "kept.json"
  with beam.Pipeline(options=beam_util.pipeline_options("local", 1)) as p:
    keyed = p | beam.Create([(t, t[1]) for t in keys])
    count = keyed | beam.combiners.Count.Globally()
    (
      beam_select.exact_top(keyed, count, lambda c: k, label="T")
      | beam.combiners.ToList()
      | beam.Map(lambda v: out.write_text(json.dumps(sorted(e[0] for e in v))))
    )
  assert [tuple(t) for t in json.loads(out.read_text())] == sorted(keys)[:k]
