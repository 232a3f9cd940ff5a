"""``tokensift select``: DENSITY id lists from the real C4 MiniLM embeddings, nested IPS selections, top/bottom-k
ordering by density, a seqio variant (c4_en_density_r20) that yields exactly the listed documents, the ASK-LLM
pool combination, the sketch path and errors."""

import json

import numpy as np
import pytest
import seqio

from tokensift import cli
from tokensift.selection import density_kernels as dk
from tokensift.selection import samplers, select_job, variants
from test_embed_job import c4_embed_dir, c4_embeddings


def _density(out):
  import pyarrow.parquet as pq

  t = pq.read_table(out / "density.parquet").to_pydict()
  return dict(zip(t["id"], t["log_density"]))


def test_cli_select_writes_nested_ips_lists_and_registers_variant(tmp_path, capsys):
  out = tmp_path / "sel"
  rc = cli.main(
    ["select", str(c4_embed_dir()), "--out", str(out), "--rates", "10,20", "--base_task", "c4_en_raw", "--no_progress"]
  )
  assert rc == 0
  printed = capsys.readouterr().out
  assert "rate 20%: 40 ids" in printed and "c4_en_density_r20" in printed and "register_variant(" in printed
  ids, _ = c4_embeddings()
  r10 = variants.read_id_list(out / "density_r10.txt")
  r20 = variants.read_id_list(out / "density_r20.txt")
  assert len(r10) == 20 and len(r20) == 40 and set(r10) <= set(r20) <= set(ids)
  summary = json.loads((out / "select.json").read_text())
  assert summary["density"] == "exact" and summary["documents"] == 200 and summary["pool"] == 200
  dens = _density(out)
  assert list(dens) == ids
  # the stored density is the exact Gaussian kernel sum (default bandwidth: median_n) over all 200 documents
  logs = np.array([dens[i] for i in ids])
  _, emb = c4_embeddings()
  np.testing.assert_allclose(logs, np.log(dk.kernel_sums(emb)), atol=2e-5)
  assert summary["bandwidth"] == pytest.approx(dk.bandwidth_heuristic(emb))
  # and the lists are the seeded inverse-propensity draws over it (weights 1/density, not density), keyed by id
  keys = samplers.selection_keys("ips", logs, ids, seed=0, log=True)
  assert r20 == [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-keys[i], ids[i]))[:40]]
  # the registered variant yields exactly the selected documents
  task = seqio.get_mixture_or_task("c4_en_density_r20")
  ds = task.source.get_dataset("validation", shuffle=False)
  for prep in task.preprocessors[:1]:
    ds = prep(ds)
  got = sorted(ex["id"].decode() for ex in ds.as_numpy_iterator())
  assert got == sorted(r20)
  tasks = select_job.register_density_variants(out, "c4_en_raw")
  assert sorted(t.name for t in tasks) == ["c4_en_density_r10", "c4_en_density_r20"]
  assert [t.name for t in variants.register_selection_dir("c4_en_raw", out)] == [
    "c4_en_density_r10",
    "c4_en_density_r20",
  ]


def test_top_and_bottom_k_follow_density_and_sketch_mode(tmp_path):
  emb_dir = c4_embed_dir()
  top = select_job.select(emb_dir, tmp_path / "top", select_job.SelectConfig(method="topk", rates=(10,)))
  bot = select_job.select(emb_dir, tmp_path / "bot", select_job.SelectConfig(method="bottomk", rates=(10,)))
  dens = _density(tmp_path / "top")
  top_ids = variants.read_id_list(top.lists[10][0])
  bot_ids = variants.read_id_list(bot.lists[10][0])
  assert top.lists[10][0].name == "density_top_r10.txt" and bot.lists[10][0].name == "density_bottom_r10.txt"
  values = sorted(dens.values())
  assert [dens[i] for i in top_ids] == sorted(values[-20:], reverse=True)
  assert [dens[i] for i in bot_ids] == values[:20]
  sk = select_job.select(
    emb_dir,
    tmp_path / "sk",
    select_job.SelectConfig(rates=(10,), density="sketch", sketch_rows=200, sketch_buckets=2048),
  )
  assert sk.summary["density"] == "sketch" and sk.lists[10][1] == 20


def test_ips_within_the_top_askllm_fraction(tmp_path):
  ids, _ = c4_embeddings()
  # an ASK-LLM score file ({id, score}): 180 of the embedded documents, plus 5 ids that were never embedded
  rng = np.random.default_rng(0)
  scored = ids[:180]
  scores = rng.uniform(size=180)
  path = tmp_path / "score-00000-of-00001.jsonl"
  with open(path, "w") as f:
    for i, s in zip(scored, scores):
      f.write(json.dumps({"id": i, "score": float(s)}) + "\n")
    for j in range(5):
      f.write(json.dumps({"id": f"not-embedded-{j}", "score": 0.99}) + "\n")
  cfg = select_job.SelectConfig(rates=(20,), askllm_fraction=50)
  res = select_job.select(c4_embed_dir(), tmp_path / "sel", cfg, askllm_scores=path)
  assert cfg.tag == "askllm50_density"
  chosen = variants.read_id_list(res.lists[20][0])
  top_half = {scored[i] for i in np.argsort(-scores)[:90]}
  assert len(chosen) == 40 and set(chosen) <= top_half
  s = res.summary
  assert (s["pool"], s["askllm_scored_not_embedded"], s["embedded_not_scored"]) == (90, 5, 20)
  with pytest.raises(ValueError, match="more than the 18 in the candidate pool"):
    select_job.select(
      c4_embed_dir(), tmp_path / "x", select_job.SelectConfig(rates=(20,), askllm_fraction=10), askllm_scores=path
    )


def test_select_errors(tmp_path, capsys):
  assert cli.main(["select", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
  assert "do not exist" in capsys.readouterr().err
  assert cli.main(["select", str(c4_embed_dir()), "--out", str(tmp_path / "o"), "--bandwidth", "wide"]) == 2
  assert "--bandwidth 'wide'" in capsys.readouterr().err
  with pytest.raises(ValueError, match="needs ASK-LLM score files"):
    select_job.select(c4_embed_dir(), tmp_path / "o", select_job.SelectConfig(askllm_fraction=50))
  with pytest.raises(ValueError, match="rate 150"):
    select_job.SelectConfig(rates=(150,))


def test_null_or_nan_embeddings_fail_in_one_line_before_anything_is_written(tmp_path, capsys):
  import pyarrow as pa
  import pyarrow.parquet as pq

  rows = [{"id": f"d{i}", "embedding": [float(i), 1.0, 0.5]} for i in range(10)]
  for name, bad in (("null", None), ("nan", [0.1, float("nan"), 0.2]), ("inner", [0.1, None, 0.2])):
    pq.write_table(pa.Table.from_pylist(rows + [{"id": "bad", "embedding": bad}]), tmp_path / f"{name}.parquet")
    out = tmp_path / f"sel_{name}"
    assert cli.main(["select", str(tmp_path / f"{name}.parquet"), "--out", str(out), "--rates", "50"]) == 2
    err = capsys.readouterr().err
    assert "'bad'" in err and len(err.strip().splitlines()) == 1 and not out.exists()
