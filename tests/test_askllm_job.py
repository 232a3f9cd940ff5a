"""`tokensift score` / `tokensift topk`: a tiny random Llama checkpoint on disk, real C4 documents, bad rows
counted, SIGKILL + rerun byte-identical, top-k id lists and seqio variants from the score dir."""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import seqio

from tokensift import cli
from tokensift.core import docs, jobs, paths
from tokensift.selection import score_job, topk, variants
from tokensift.core import hf_tokenizer


def write_tiny_llama(directory, *, seed=0, hidden=16, layers=2, vocab=49152):
  """An HF-layout Llama checkpoint (config.json, model.safetensors, SmolLM2's tokenizer + chat template) with
  random weights, written with numpy (no torch needed)."""
  from safetensors.numpy import save_file

  directory.mkdir(parents=True, exist_ok=True)
  heads, kv, inter = 4, 2, 32
  hd = hidden // heads
  cfg = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": vocab,
    "hidden_size": hidden,
    "intermediate_size": inter,
    "num_hidden_layers": layers,
    "num_attention_heads": heads,
    "num_key_value_heads": kv,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
  }
  (directory / "config.json").write_text(json.dumps(cfg))
  rng = np.random.default_rng(seed)

  def w(*shape, std=0.3):
    return (rng.standard_normal(shape) * std).astype(np.float32)

  t = {"model.embed_tokens.weight": w(vocab, hidden, std=0.5), "model.norm.weight": np.ones(hidden, np.float32)}
  for i in range(layers):
    p = f"model.layers.{i}."
    t.update(
      {
        p + "input_layernorm.weight": np.ones(hidden, np.float32),
        p + "post_attention_layernorm.weight": np.ones(hidden, np.float32),
        p + "self_attn.q_proj.weight": w(heads * hd, hidden),
        p + "self_attn.k_proj.weight": w(kv * hd, hidden),
        p + "self_attn.v_proj.weight": w(kv * hd, hidden),
        p + "self_attn.o_proj.weight": w(hidden, heads * hd),
        p + "mlp.gate_proj.weight": w(inter, hidden),
        p + "mlp.up_proj.weight": w(inter, hidden),
        p + "mlp.down_proj.weight": w(hidden, inter),
      }
    )
  save_file(t, str(directory / "model.safetensors"))
  files = hf_tokenizer.tokenizer_files(paths.smollm2_gguf())
  shutil.copy(files.tokenizer_json, directory / "tokenizer.json")
  (directory / "tokenizer_config.json").write_text(
    json.dumps({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": files.chat_template})
  )
  return directory


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, data_dir):
  """60 real C4 documents with ids, plus bad rows: empty text, whitespace, missing id, malformed JSON."""
  d = tmp_path_factory.mktemp("in")
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz") as f:
    rows = [json.loads(line) for line in f][:60]
  lines = [json.dumps({"id": f"c4v-{i:03d}", "text": r["text"], "url": r["url"]}) for i, r in enumerate(rows)]
  lines.insert(5, json.dumps({"id": "bad-empty", "text": ""}))
  lines.insert(9, json.dumps({"id": "bad-space", "text": " \n\t "}))
  lines.insert(13, json.dumps({"text": "a document without an id"}))
  lines.insert(17, "{not json")
  path = d / "docs.jsonl"
  path.write_text("\n".join(lines) + "\n")
  return path


ARGS = ["--max_length", "192", "--min_bucket", "32", "--max_batch", "8", "--no_progress", "--compilation_cache", "none"]


def _score(model, inputs, out, *extra):
  return cli.main(["score", "--input", str(inputs), "--model", str(model), "--out", str(out), *ARGS, *extra])


def test_score_cli_counts_bad_rows_and_writes_records(tiny_model, inputs, tmp_path, capsys):
  out = tmp_path / "scores"
  assert _score(tiny_model, inputs, out, "--piece_size", "16") == 0
  printed = capsys.readouterr().out
  assert "skipped 3 bad rows" in printed
  recs = jobs.read_records(out / "score-00000-of-00001.jsonl")
  # the row without an id gets its position id ({file}@{byte offset}), the one id rule of the document layer
  assert [r["id"] for r in recs if r["id"].startswith("c4v-")] == [f"c4v-{i:03d}" for i in range(60)]
  (pos_id,) = [r["id"] for r in recs if not r["id"].startswith("c4v-")]
  raw = inputs.read_bytes()
  offset = raw.index(json.dumps({"text": "a document without an id"}).encode())
  assert pos_id == f"docs.jsonl@{offset}"
  for r in recs:
    assert set(r) == {
      "id",
      "score",
      "logp_yes",
      "logp_no",
      "logp_yes_variants",
      "logp_no_variants",
      "tokens",
      "truncated",
    }
    assert 0 < r["score"] < 1 and abs(np.log(r["score"]) - r["logp_yes"]) < 1e-5
    assert r["logp_yes_variants"] >= r["logp_yes"] and r["tokens"] <= 192
  assert 0 < sum(r["truncated"] for r in recs) < 60
  stats = jobs.merged_stats(out, "score")
  assert stats["records"] == 61
  assert stats["skipped"] == {
    "empty or whitespace-only text": 2,
    "malformed JSON (Expecting property name enclosed in double quotes)": 1,
  }
  marker = json.loads((out / "score-00000-of-00001.done").read_text())
  assert marker["config"]["max_length"] == 192 and marker["config"]["answers"]["yes"] == 10407
  # a rerun with another context length into the same dir is refused (never mixes scores)
  with pytest.raises(ValueError, match="config"):
    score_job.run_score_job(
      score_job.ScoreJobConfig(model=str(tiny_model), max_length=256),
      docs.DocumentInput(files=(str(inputs),)),
      str(out),
      progress=False,
      input_desc=marker["config"]["input"],
    )
  # shards partition the rows; the same documents get the same scores
  for i in range(2):
    assert _score(tiny_model, inputs, tmp_path / "sharded", "--shard", f"{i}/2", "--piece_size", "16") == 0
  by_id = {r["id"]: r for f in jobs.shard_files(tmp_path / "sharded", "score") for r in jobs.read_records(f)}
  assert sorted(by_id) == sorted(r["id"] for r in recs)
  for r in recs:
    assert abs(by_id[r["id"]]["score"] - r["score"]) <= 1e-5


def test_id_field_and_errors(tiny_model, inputs, tmp_path, capsys):
  assert _score(tiny_model, inputs, tmp_path / "url", "--id_field", "url", "--piece_size", "64") == 0
  recs = jobs.read_records(tmp_path / "url" / "score-00000-of-00001.jsonl")
  assert len(recs) == 61 and sum(r["id"].startswith("http") for r in recs) == 60  # the url-less row: its position
  assert (
    cli.main(
      ["score", "--input", str(tmp_path / "nope*.jsonl"), "--model", str(tiny_model), "--out", str(tmp_path / "x")]
    )
    == 2
  )
  assert "no input file matches" in capsys.readouterr().err
  assert (
    cli.main(["score", "--input", str(inputs), "--model", str(tmp_path / "missing.gguf"), "--out", str(tmp_path / "x")])
    == 2
  )
  assert "missing.gguf" in capsys.readouterr().err
  with pytest.raises(ValueError, match="shard 2 not in|not in \\[0, 2\\)"):
    score_job.host_shard(jobs.ShardSpec(0, 1), 2, 2)
  assert score_job.host_shard(jobs.ShardSpec(1, 3), 1, 2) == jobs.ShardSpec(3, 6)
  assert score_job.detect_architecture(paths.smollm2_gguf()) == "decoder_only"
  assert score_job.detect_architecture(tiny_model) == "decoder_only"


def test_sigkill_and_resume_is_byte_identical(tiny_model, inputs, tmp_path):
  ref = tmp_path / "ref"
  assert _score(tiny_model, inputs, ref, "--piece_size", "2") == 0
  killed = tmp_path / "killed"
  cmd = [
    sys.executable,
    "-m",
    "tokensift.cli",
    "score",
    "--input",
    str(inputs),
    "--model",
    str(tiny_model),
    "--out",
    str(killed),
    "--piece_size",
    "2",
    *ARGS[:-2],
    "--compilation_cache",
    str(tmp_path / "xla"),
  ]
  env = dict(os.environ)
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  pieces = killed / ".score-00000-of-00001.pieces"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None and len(list(pieces.glob("piece-*.meta.json"))) < 3:
    time.sleep(0.005)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  n_before = len(list(pieces.glob("piece-*.meta.json")))
  assert 3 <= n_before < 32, n_before  # 64 input rows in pieces of 2: killed mid-way
  assert not (killed / "score-00000-of-00001.done").exists()
  done = subprocess.run(cmd, env=env, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  assert f'"resumed_pieces": {n_before}' in done.stdout
  name = "score-00000-of-00001.jsonl"
  assert (killed / name).read_bytes() == (ref / name).read_bytes()
  assert (
    json.loads((killed / "score-00000-of-00001.done").read_text())["stats"]
    == json.loads((ref / "score-00000-of-00001.done").read_text())["stats"]
  )


def test_topk_lists_and_variants_from_score_dir(tiny_model, tmp_path, capsys, data_dir):
  out = tmp_path / "c4scores"
  assert (
    cli.main(
      [
        "score",
        "--task",
        "c4_en_raw",
        "--split",
        "validation",
        "--model",
        str(tiny_model),
        "--out",
        str(out),
        "--piece_size",
        "100",
        *ARGS,
      ]
    )
    == 0
  )
  recs = topk.load_score_records(out)
  assert len(recs) == 200 and all(r["id"].startswith("c4-validation.tfrecord-") for r in recs)
  assert cli.main(["topk", str(out), "--rates", "10,20", "--base_task", "c4_en_raw"]) == 0
  printed = capsys.readouterr().out
  assert "rate 20%: 40 of 200 ids" in printed and "c4_en_askllm_r20" in printed
  ids20 = variants.read_id_list(out / "selections" / "askllm_r20.txt")
  best = sorted(recs, key=lambda r: (-r["score"], r["id"]))[:40]
  assert ids20 == [r["id"] for r in best]
  assert variants.read_id_list(out / "selections" / "askllm_r10.txt") == ids20[:20]
  task = seqio.get_mixture_or_task("c4_en_askllm_r20")
  got = [
    ex["id"].decode() for ex in task.get_dataset({"targets": 32}, split="validation", shuffle=False).as_numpy_iterator()
  ]
  assert sorted(got) == sorted(ids20)
  # the public entry point for other projects
  tasks = topk.register_askllm_variants(out, "c4_en_raw_smollm2", rates=[40], out_dir=tmp_path / "sel")
  assert [t.name for t in tasks] == ["c4_en_askllm_r40_smollm2"]
  assert len(variants.read_id_list(tmp_path / "sel" / "askllm_r40.txt")) == 80
