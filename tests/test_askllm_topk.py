"""Top-k selection by score: rates, ties, unranked records, duplicate ids, unfinished score jobs."""

import json
import math

import pytest

from tokensift.core import docs, jobs
from tokensift.selection import topk, variants


def test_rank_ties_nan_and_duplicates():
  recs = [
    {"id": "b", "score": 0.5},
    {"id": "a", "score": 0.5},
    {"id": "c", "score": 0.9},
    {"id": "d", "score": float("nan")},
    {"id": "e"},
    {"id": "f", "score": 0.1},
  ]
  ids, unranked = topk.rank(recs)
  assert ids == ["c", "a", "b", "f"] and unranked == 2
  sel = topk.top_k(recs, 50)
  assert sel.ids == ["c", "a"] and sel.ranked == 4 and sel.unranked == 2
  assert topk.top_k(recs, 60, key="missing").ids == []
  stats = {}  # an id repeated across shards keeps its first record, counted; never two entries
  assert topk.rank(recs + [{"id": "a", "score": 1.0}], stats=stats) == (ids, 2) and stats == {"repeated_ids": 1}


def test_rank_by_other_key_uses_log_precision():
  recs = [{"id": str(i), "score": 0.0, "logp_yes": -1000.0 - i} for i in range(5)]  # exp underflows to 0
  assert topk.rank(recs, key="logp_yes")[0] == ["0", "1", "2", "3", "4"]


def _score_rows(n):
  return jobs.in_memory_rows([docs.Document(f"d{i:02d}", "x") for i in range(n)])


def _fake_scores(batch):  # a deterministic stand-in for the model in this unit test of the selection step
  return [{"id": d.id, "score": (int(d.id[1:]) * 37 % 101) / 101.0} for d in batch]


def test_score_dir_shards_files_and_lists(tmp_path):
  out = tmp_path / "scores"
  jobs.run_sharded(
    name="score", out_dir=out, rows=_score_rows(30), process=_fake_scores, shard=jobs.ShardSpec(0, 2), progress=False
  )
  with pytest.raises(ValueError, match=r"shards \[1\] of 2"):
    topk.load_score_records(out)
  jobs.run_sharded(
    name="score", out_dir=out, rows=_score_rows(30), process=_fake_scores, shard=jobs.ShardSpec(1, 2), progress=False
  )
  recs = topk.load_score_records(out)
  assert len(recs) == 30
  written = topk.write_topk_lists(out, [10, 20.5])
  path, k, n = written[10]
  assert (k, n) == (3, 30) and path == out / "selections" / "askllm_r10.txt"
  expect = sorted(recs, key=lambda r: (-r["score"], r["id"]))
  assert variants.read_id_list(path) == [r["id"] for r in expect[:3]]
  assert written[20.5][0].name == "askllm_r20p5.txt" and written[20.5][1] == 6
  one = tmp_path / "one.jsonl"
  one.write_text("".join(json.dumps(r) + "\n" for r in recs[:5]))
  assert len(topk.load_score_records(one)) == 5
  with pytest.raises(FileNotFoundError, match="nothing-here"):
    topk.load_score_records(tmp_path / "nothing-here")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="no finished 'score' shard"):
    topk.load_score_records(tmp_path / "empty")
  assert not math.isnan(recs[0]["score"])
