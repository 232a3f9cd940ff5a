"""The distilled ASK-LLM scorer: a head recovers a known linear score from synthetic embeddings; distil -> score
-> top-k end to end on real C4 documents (real all-MiniLM embeddings, a tiny random Llama as the judge); the
head's scores are identical on 1 and 2 shards and on 2 processes; bad input gets one-line errors."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tokensift.core import jobs
from tokensift.selection import distill, distill_head, score_job, topk, variants
from tokensift.selection.keep import keep_count

from test_askllm_job import write_tiny_llama
from test_embed_job import c4_documents, c4_embed_dir


def _synthetic(n=600, d=24, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  x /= np.linalg.norm(x, axis=1, keepdims=True)  # unit vectors, as MiniLM's
  w = rng.normal(size=d)
  return [f"doc{i}" for i in range(n)], x.astype(np.float32), x @ w + 0.5, w


@pytest.mark.parametrize("kind", distill_head.HEADS)
def test_head_recovers_a_known_linear_score(kind):
  ids, x, y, w = _synthetic()
  noisy = y + np.random.default_rng(1).normal(scale=0.01, size=y.shape)
  cfg = distill.DistillConfig(head=distill_head.HeadConfig(kind=kind, steps=300), holdout=25)
  head, report = distill.fit_head(ids, x, noisy, cfg)
  held = distill.heldout_mask(ids, 25)
  assert report["docs"] == held.sum() == head.config["heldout_docs"] and 100 < held.sum() < 200
  assert report["spearman"] > (0.99 if kind == "ridge" else 0.95) and report["kendall"] > 0.8
  assert report["topk_overlap"]["10"] >= 0.7
  if kind == "ridge":  # the linear map itself
    np.testing.assert_allclose(head.params["w"], w, atol=0.1 * np.abs(w).max())
    assert head.params["b"].item() == pytest.approx(0.5, abs=0.05)
    np.testing.assert_allclose(head.logits(x[held]), y[held], atol=0.05)


def test_head_scores_a_jsonl_embedding_file(tmp_path):
  ids, x, y, _ = _synthetic(n=50, d=8)
  head, _ = distill.fit_head(ids, x, y, distill.DistillConfig(holdout=20))
  distill.write_head(tmp_path / "head", head)
  emb = tmp_path / "emb.jsonl"
  emb.write_text(
    "".join(
      json.dumps({"id": i, "embedding": v.tolist(), "tokens": 7, "truncated": False}) + "\n" for i, v in zip(ids, x)
    )
  )
  distill.score_embeddings(tmp_path / "head", emb, tmp_path / "scores", progress=False, piece_size=16)
  recs = _records(tmp_path / "scores")
  assert [r["id"] for r in recs] == ids and {r["tokens"] for r in recs} == {7}
  np.testing.assert_array_equal([r["head_logit"] for r in recs], head.logits(x))
  emb.write_text(json.dumps({"id": "short", "embedding": [0.5] * 7}) + "\n")
  with pytest.raises(ValueError, match=r"embedding of 'short' .* has shape \(7,\)"):
    distill.score_embeddings(tmp_path / "head", emb, tmp_path / "bad", progress=False)


def test_heldout_split_is_a_hash_of_the_id():
  ids = [f"c4-{i}" for i in range(2000)]
  m = distill.heldout_mask(ids, 20)
  assert 0.17 < m.mean() < 0.23
  perm = np.random.default_rng(0).permutation(2000)
  np.testing.assert_array_equal(distill.heldout_mask([ids[i] for i in perm], 20), m[perm])  # order-free
  assert (distill.heldout_mask(ids, 20, seed=1) != m).any()


def test_targets_fidelity_and_bad_input():
  recs = [
    {"id": "a", "logp_yes": math.log(0.25), "logp_no": math.log(0.5)},
    {"id": "b", "logp_yes": float("nan")},
    {"id": "c"},
    {"id": "d", "logp_yes": 0.0, "logp_no": -9.0},
    {"id": "a", "logp_yes": -1.0},
  ]
  ids, y, counts = distill.judge_targets(recs)
  assert ids == ["a"] and y[0] == pytest.approx(math.log(0.25 / 0.75))  # P(yes) = 1 has no logit: skipped
  assert counts == {"nan_scores": 3, "repeated_ids": 1}
  ids, y, counts = distill.judge_targets(recs, "normalized")
  assert ids == ["a", "d"] and y.tolist() == pytest.approx([math.log(0.5), 9.0]) and counts["nan_scores"] == 2
  with pytest.raises(ValueError, match=r"no document id is both scored \(1 ids, e.g. \['a'\]\) and embedded"):
    distill.join(["a"], np.ones(1), ["x", "y"], np.ones((2, 3)))
  with pytest.raises(ValueError, match="target 'prob'"):
    distill.DistillConfig(target="prob")
  with pytest.raises(ValueError, match="holdout 100"):
    distill.DistillConfig(holdout=100)
  with pytest.raises(ValueError, match="head kind 'tree'"):
    distill_head.HeadConfig(kind="tree")
  f = distill.fidelity(np.arange(10.0), np.arange(10.0)[::-1], (20, 50))
  assert f["spearman"] == pytest.approx(-1) and f["topk_overlap"] == {"20": 0.0, "50": 0.0}


@pytest.fixture(scope="module")
def judged(tmp_path_factory, data_dir):
  """A tiny random Llama's ASK-LLM scores of 60 of the C4 validation documents (the score job itself)."""
  d = tmp_path_factory.mktemp("distill")
  model = write_tiny_llama(d / "judge")
  cfg = score_job.ScoreJobConfig(model=str(model), max_length=128, min_bucket=32, max_batch=16, variants=False)
  score_job.run_score_job(cfg, jobs.in_memory_rows(c4_documents()[:60]), str(d / "scores"), progress=False)
  return d


def _records(path):
  return [r for f in jobs.finished_files(path, "score") for r in jobs.iter_records(f)]


def test_distil_score_topk_end_to_end(judged, tmp_path):
  emb = c4_embed_dir()  # all-MiniLM-L6-v2 embeddings of the 200 C4 validation documents
  head, report = distill.distill(judged / "scores", emb, tmp_path / "head", distill.DistillConfig(holdout=25))
  saved = json.loads((tmp_path / "head" / distill.CONFIG_FILE).read_text())
  assert saved["judge"].endswith("judge") and saved["embedding_model"] == distill.job_config(emb, "embed")["model"]
  assert saved["head"] == "ridge" and saved["dim"] == 384 and saved["train_docs"] + saved["heldout_docs"] == 60
  rep = json.loads((tmp_path / "head" / distill.REPORT_FILE).read_text())
  assert rep["joined"] == 60 and rep["embedded"] == 200 and rep["nan_scores"] == 0
  assert -1 <= rep["spearman"] <= 1 and set(rep["topk_overlap"]) == {"10", "20", "40", "60", "80"}
  loaded = distill.load_head(tmp_path / "head")
  assert loaded.scorer == head.scorer and loaded.params.keys() == head.params.keys()
  # score all 200 embedded documents: 1 shard, 2 shards, 2 processes
  one = distill.score_embeddings(tmp_path / "head", emb, tmp_path / "one", progress=False, piece_size=64)
  for i in range(2):
    distill.score_embeddings(
      tmp_path / "head", emb, tmp_path / "two", shard=jobs.ShardSpec(i, 2), progress=False, piece_size=64
    )
  code = (
    "import sys; from tokensift.core import jobs; from tokensift.selection import distill; "
    "distill.score_embeddings(sys.argv[1], sys.argv[2], sys.argv[3], shard=jobs.ShardSpec(int(sys.argv[4]), 2), "
    "progress=False, piece_size=64)"
  )
  procs = [
    subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "head"), str(emb), str(tmp_path / "procs"), str(i)])
    for i in range(2)
  ]
  assert [p.wait(timeout=120) for p in procs] == [0, 0]
  recs1 = _records(tmp_path / "one")
  by_id = {r["id"]: r for r in _records(tmp_path / "two")}
  assert one.stats["records"] == len(recs1) == len(by_id) == 200 and {r["id"]: r for r in recs1} == by_id
  for i in range(2):
    f = f"score-0000{i}-of-00002.jsonl"
    assert (tmp_path / "procs" / f).read_bytes() == (tmp_path / "two" / f).read_bytes()
  r0 = recs1[0]
  assert set(r0) == {"id", "score", "logp_yes", "logp_no", "tokens", "truncated", "head_logit", "scorer"}
  assert r0["scorer"] == head.scorer and r0["score"] == pytest.approx(1 / (1 + math.exp(-r0["head_logit"])))
  x = np.stack([np.asarray(v) for v in _embeddings_by_id(emb, [r["id"] for r in recs1])])
  np.testing.assert_array_equal([r["head_logit"] for r in recs1], head.logits(x))
  # top-k takes the head's scores exactly as the judge's
  written = topk.write_topk_lists(tmp_path / "one", (10, 20), out_dir=tmp_path / "sel", method="askllm_distilled")
  ranked, _ = topk.rank(recs1)
  for rate, (path, k, n) in written.items():
    assert path.name == f"askllm_distilled_r{rate}.txt" and n == 200 and k == keep_count(200, rate)
    assert variants.read_id_list(path) == ranked[:k]
  # embed and score in one pass (no embed job output): the same records
  from test_embed_job import TEST_CONFIG, embedder

  distill.embed_and_score(
    tmp_path / "head",
    jobs.in_memory_rows(c4_documents()[:16]),
    tmp_path / "onepass",
    TEST_CONFIG,
    progress=False,
    embedder=embedder(),
  )
  assert _records(tmp_path / "onepass") == recs1[:16]
  # an embed job of another model is refused
  cfg = json.loads((tmp_path / "head" / distill.CONFIG_FILE).read_text())
  (tmp_path / "head" / distill.CONFIG_FILE).write_text(json.dumps(dict(cfg, embedding_model="/models/other-bert")))
  with pytest.raises(ValueError, match="come from model .* but the head was fitted on '/models/other-bert'"):
    distill.score_embeddings(tmp_path / "head", emb, tmp_path / "other", progress=False)
  with pytest.raises(ValueError, match="the embedder loads model .* but the head was fitted on '/models/other-bert'"):
    distill.embed_and_score(
      tmp_path / "head",
      jobs.in_memory_rows(c4_documents()[:2]),
      tmp_path / "other",
      TEST_CONFIG,
      progress=False,
      embedder=embedder(),
    )


@pytest.fixture(scope="module")
def small_embed_jobs(tmp_path_factory):
  """Real MiniLM embed-job outputs of 48 C4 documents, pieces of 8 (one Parquet row group each): ``three`` (3
  shard files, 2 row groups each), ``one`` (one file, 6 row groups) and ``one.jsonl`` (the same rows as JSON
  lines), plus a ridge head fitted on them."""
  from test_embed_job import TEST_CONFIG, embedder

  from tokensift.selection import embed_job

  d = tmp_path_factory.mktemp("embed_units")
  rows = jobs.in_memory_rows(c4_documents()[:48])
  for i in range(3):
    embed_job.run_embed_job(
      TEST_CONFIG, rows, str(d / "three"), shard=jobs.ShardSpec(i, 3), piece_size=8, progress=False, embedder=embedder()
    )
  embed_job.run_embed_job(TEST_CONFIG, rows, str(d / "one"), piece_size=8, progress=False, embedder=embedder())
  (d / "one.jsonl").write_text(
    "".join(json.dumps(r) + "\n" for f in jobs.finished_files(d / "one", "embed") for r in jobs.iter_records(f))
  )
  ids, x = embed_job.load_embeddings(d / "one")
  y = x @ np.random.default_rng(0).normal(size=x.shape[1])
  head, _ = distill.fit_head(ids, x, y, distill.DistillConfig(holdout=20))
  distill.write_head(d / "head", head)
  return d, ids


def _ids_of(files):
  return [r["id"] for f in files for r in jobs.iter_records(f)]


def test_a_scoring_shard_reads_only_its_units(small_embed_jobs, tmp_path):
  """Shard i of n reads its own split of the embed job's output, as the document layer splits inputs: whole files
  when there are >= n, else Parquet row-group ranges or JSON-lines byte ranges; records in unit order."""
  import pyarrow.parquet as pq

  d, ids = small_embed_jobs
  files = jobs.finished_files(d / "three", "embed")
  assert len(files) == 3 and all(pq.ParquetFile(f).metadata.num_row_groups == 2 for f in files)

  def read_all(path, shard):  # (ids, bytes read) of one shard
    rows = distill.EmbeddingRows(path, 384, shard)
    return [doc.id for doc in rows], rows.bytes_read, rows.units

  everything = read_all(d / "three", jobs.ShardSpec())[1]  # (pyarrow reads a small file's footer with its data)
  per_shard = []
  for i, mine in ((0, [files[0], files[2]]), (1, [files[1]])):  # 3 files, 2 shards: whole files i, i+2
    got, n_bytes, units = read_all(d / "three", jobs.ShardSpec(i, 2))
    assert [(u.url, u.kind) for u in units] == [(str(f), "file") for f in mine] and got == _ids_of(mine)
    per_shard.append(n_bytes)
  assert 0 < per_shard[1] < per_shard[0] < everything == sum(per_shard)  # each file read once, by one shard
  (one,) = jobs.finished_files(d / "one", "embed")
  assert pq.ParquetFile(one).metadata.num_row_groups == 6
  everything = read_all(d / "one", jobs.ShardSpec())[1]
  for i in range(3):  # 1 file, 3 shards: row groups [2i, 2i+2), only those read
    rows = distill.EmbeddingRows(d / "one", 384, jobs.ShardSpec(i, 3))
    assert [(u.kind, u.start, u.stop) for u in rows.units] == [("row_groups", 2 * i, 2 * i + 2)]
    got = list(rows)
    assert [doc.id for doc in got] == ids[16 * i : 16 * i + 16]
    assert got[0].meta["embedding"].shape == (384,) and isinstance(got[0].meta["tokens"], int)
    assert 0 < rows.bytes_read < everything
  jl = d / "one.jsonl"  # 1 JSON-lines file, 2 shards: byte ranges, each line read by exactly one shard
  parts = [distill.EmbeddingRows(jl, 384, jobs.ShardSpec(i, 2)) for i in range(2)]
  got = [[doc.id for doc in p] for p in parts]
  assert [u.kind for p in parts for u in p.units] == ["bytes", "bytes"] and all(got) and got[0] + got[1] == ids
  assert all(p.bytes_read < jl.stat().st_size for p in parts)
  # the scoring job on 1 and on 3 shards: the same records, shard by shard in unit order
  one_res = distill.score_embeddings(d / "head", d / "one", tmp_path / "s1", progress=False, piece_size=5)
  three = [
    distill.score_embeddings(d / "head", d / "one", tmp_path / "s3", shard=jobs.ShardSpec(i, 3), progress=False)
    for i in range(3)
  ]
  assert one_res.stats["bytes_read"] == everything and all(r.stats["bytes_read"] < everything for r in three)
  assert _records(tmp_path / "s1") == _records(tmp_path / "s3")


def _embeddings_by_id(emb_dir, ids):
  from tokensift.selection import embed_job

  e_ids, x = embed_job.load_embeddings(emb_dir)
  pos = {i: k for k, i in enumerate(e_ids)}
  return [x[pos[i]] for i in ids]


def test_cli_distill_then_score_with_the_head(judged, tmp_path, capsys):
  """``tokensift distill`` and ``tokensift score --head --embeddings`` run the library's functions: the same head
  and the same records; --embeddings without --head is a one-line error."""
  from tokensift.cli import main

  emb = c4_embed_dir()
  assert (
    main(
      [
        "distill",
        "--scores",
        str(judged / "scores"),
        "--embeddings",
        str(emb),
        "--out",
        str(tmp_path / "head"),
        "--holdout",
        "25",
        "--rates",
        "10,20",
      ]
    )
    == 0
  )
  report = json.loads((tmp_path / "head" / distill.REPORT_FILE).read_text())
  assert report["joined"] == 60 and set(report["topk_overlap"]) == {"10", "20"}
  lib, _ = distill.distill(judged / "scores", emb, tmp_path / "lib", distill.DistillConfig(holdout=25, rates=(10, 20)))
  cli = distill.load_head(tmp_path / "head")
  for k in lib.params:
    np.testing.assert_array_equal(cli.params[k], lib.params[k])
  for i in range(2):
    assert (
      main(
        [
          "score",
          "--head",
          str(tmp_path / "head"),
          "--embeddings",
          str(emb),
          "--out",
          str(tmp_path / "s"),
          "--shard",
          f"{i}/2",
          "--no_progress",
        ]
      )
      == 0
    )
    distill.score_embeddings(tmp_path / "lib", emb, tmp_path / "s_lib", shard=jobs.ShardSpec(i, 2), progress=False)
  assert _records(tmp_path / "s") == _records(tmp_path / "s_lib") and len(_records(tmp_path / "s")) == 200
  capsys.readouterr()
  assert main(["score", "--embeddings", str(emb), "--out", str(tmp_path / "x")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("tokensift score: error: --embeddings") and "add --head HEAD_DIR" in err


def test_head_scoring_on_beam_writes_the_single_process_files(small_embed_jobs, tmp_path, capsys):
  """``tokensift score --head --embeddings --runner local --beam_workers 2``: byte for byte the files of the
  single-process job, shard by shard; a rerun skips finished shards and scores only the missing one."""
  from tokensift.cli import main
  from tokensift.selection import beam_distill

  d, ids = small_embed_jobs
  for i in range(3):
    distill.score_embeddings(d / "head", d / "three", tmp_path / "single", shard=jobs.ShardSpec(i, 3), progress=False)
  args = ["score", "--head", str(d / "head"), "--embeddings", str(d / "three"), "--out", str(tmp_path / "beam")]
  assert main([*args, "--runner", "local", "--beam_workers", "2", "--shards", "3", "--no_progress"]) == 0
  assert "3 shards committed, 0 already finished" in capsys.readouterr().out
  names = [f"score-{i:05d}-of-00003.jsonl" for i in range(3)]
  for name in names:
    assert (tmp_path / "beam" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
  assert sorted(r["id"] for r in _records(tmp_path / "beam")) == sorted(ids)
  # resumable: nothing to do, then only the shard whose file and marker are gone
  assert beam_distill.run_score_head_beam(d / "head", d / "three", tmp_path / "beam", shards=3, workers=1) == {}
  for ext in ("jsonl", "done"):
    (tmp_path / "beam" / f"score-00001-of-00003.{ext}").unlink()
  done = beam_distill.run_score_head_beam(d / "head", d / "three", tmp_path / "beam", shards=3, workers=1)
  assert list(done) == [1] and done[1]["records"] == 16
  for name in names:
    assert (tmp_path / "beam" / name).read_bytes() == (tmp_path / "single" / name).read_bytes()
  # another head into the same directory is refused before any worker starts; --runner needs the head's input
  with pytest.raises(ValueError, match="was written with config .* use another output dir"):
    beam_distill.run_score_head_beam(d / "head", d / "one", tmp_path / "beam", shards=3, workers=1)
  capsys.readouterr()
  assert main(["score", "--input", str(d / "one.jsonl"), "--out", str(tmp_path / "x"), "--runner", "local"]) == 2
  assert capsys.readouterr().err.startswith("tokensift score: error: --runner / --shards run the distilled head")
