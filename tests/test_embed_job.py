"""The embed job: real all-MiniLM-L6-v2 embeddings of the C4 validation sample (shared with the density,
sketch and select tests through ``c4_embeddings()``), parity with sentence-transformers, Sentence-T5-style
mean-pooled T5 encoder parity with transformers, bad rows, reading shards back, SIGKILL + rerun byte-identical.
"""

import dataclasses
import functools
import json
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tokensift.core import docs, jobs
from tokensift.selection import embed_job as ej

MAX_LENGTH = 128  # tests truncate at 128 tokens (the model's own setting is 256) to stay fast on CPU
TEST_CONFIG = ej.EmbedJobConfig(max_length=MAX_LENGTH, min_bucket=32)


@functools.lru_cache(maxsize=None)
def embedder() -> ej.Embedder:
  return ej.Embedder(TEST_CONFIG)


@functools.lru_cache(maxsize=None)
def c4_documents() -> tuple[docs.Document, ...]:
  """The 200 documents of the C4 validation sample, ids as the c4_en_raw task gives them (TFDS ids)."""
  return tuple(docs.documents_only(docs.DocumentInput(task="c4_en_raw", split="validation").rows(), docs.ReadReport()))


@functools.lru_cache(maxsize=None)
def _c4_job_dir() -> Path:
  out = Path(tempfile.mkdtemp(prefix="tokensift-embed-c4-"))
  ej.run_embed_job(
    TEST_CONFIG,
    jobs.in_memory_rows(c4_documents()),
    str(out),
    input_desc="c4 validation",
    progress=False,
    embedder=embedder(),
  )
  return out


def c4_embeddings() -> tuple[list[str], np.ndarray]:
  """(ids, float32 [200, 384]) MiniLM embeddings of the C4 validation sample, computed once per session by the
  embed job itself."""
  return ej.load_embeddings(_c4_job_dir())


def c4_embed_dir() -> Path:
  return _c4_job_dir()


def test_c4_job_output_and_loader():
  ids, emb = c4_embeddings()
  assert len(ids) == 200 and emb.shape == (200, 384) and emb.dtype == np.float32
  assert ids == [d.id for d in c4_documents()]
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
  stats = jobs.merged_stats(c4_embed_dir(), "embed")
  assert stats["records"] == 200 and 0 < stats["truncated"] < 200
  recs = jobs.read_records(jobs.shard_files(c4_embed_dir(), "embed")[0])
  assert set(recs[0]) == {"id", "embedding", "tokens", "truncated"}
  assert max(r["tokens"] for r in recs) == MAX_LENGTH


def test_matches_sentence_transformers():
  from sentence_transformers import SentenceTransformer
  from tokensift.core import paths

  texts = [d.text for d in c4_documents()[:6]] + ["short", "a b c " * 300]
  model = SentenceTransformer(str(paths.minilm_dir()), device="cpu")
  model.max_seq_length = MAX_LENGTH
  ref = model.encode(texts, batch_size=8, normalize_embeddings=True, convert_to_numpy=True)
  got, ntok, cut = embedder().embed(texts)
  np.testing.assert_allclose(got, ref, atol=2e-5)
  assert cut.tolist() == [bool(n == MAX_LENGTH and c) for n, c in zip(ntok, cut)]
  assert ntok[6] == 3 and cut[7]


def test_plan_batches_buckets_by_length():
  plan = ej.plan_batches(
    [5, 300, 17, 16, 100, 3], tokens_per_batch=64, max_batch=8, min_bucket=16, max_length=256, multiple=2
  )
  assert [(L, s, rows) for L, s, rows in plan] == [(16, 4, [5, 0, 3]), (32, 2, [2]), (128, 2, [4]), (256, 2, [1])]
  covered = sorted(r for _, _, rows in plan for r in rows)
  assert covered == list(range(6))


def test_float16_output_and_bad_rows(tmp_path):
  src = tmp_path / "in.jsonl"
  lines = [
    json.dumps({"id": "a", "text": "The cat sat on the mat."}),
    "{not json",
    json.dumps({"id": "b", "text": "   "}),
    json.dumps({"id": "c", "text": "Kernel density of embeddings."}),
    json.dumps({"text": "no id here"}),
  ]
  src.write_text("\n".join(lines) + "\n")
  cfg = dataclasses.replace(TEST_CONFIG, output_dtype="float16")
  res = ej.run_embed_job(
    cfg, docs.DocumentInput(files=(str(src),)), str(tmp_path / "out"), progress=False, embedder=embedder()
  )
  assert res.stats["records"] == 3  # the row without an id gets its position id
  assert sum(res.stats["skipped"].values()) == 2, res.stats["skipped"]
  ids, emb = ej.load_embeddings(tmp_path / "out")
  offset = src.read_bytes().index(json.dumps({"text": "no id here"}).encode())
  assert ids == ["a", "c", f"in.jsonl@{offset}"]
  assert (emb.astype(np.float16).astype(np.float32) == emb).all()
  full, _, _ = embedder().embed(["The cat sat on the mat."])
  np.testing.assert_allclose(emb[0], full[0], atol=1e-3)


def test_load_embeddings_rejects_bad_rows(tmp_path):
  import pyarrow as pa
  import pyarrow.parquet as pq

  rows = [
    {"id": "x", "embedding": [0.1, 0.2, 0.3]},
    {"id": "y", "embedding": [0.1, 0.2]},
    {"id": "z", "embedding": [0.1, float("nan"), 0.3]},
  ]
  pq.write_table(pa.Table.from_pylist(rows), tmp_path / "e.parquet")
  with pytest.raises(ValueError, match=r"1 of 3 embeddings .* do not have dimension 3 \(ids \['y'\]"):
    ej.load_embeddings(tmp_path / "e.parquet")
  pq.write_table(pa.Table.from_pylist([rows[0], rows[2]]), tmp_path / "n.parquet")
  with pytest.raises(ValueError, match=r"1 of 2 embeddings .* NaN or inf \(ids \['z'\]\)"):
    ej.load_embeddings(tmp_path / "n.parquet")
  with pytest.raises(ValueError, match="dimension 4"):
    ej.load_embeddings(tmp_path / "n.parquet", dim=4)
  with pytest.raises(FileNotFoundError):
    ej.load_embeddings(tmp_path / "missing")
  (tmp_path / "d").mkdir()
  with pytest.raises(ValueError, match="no finished 'embed' shard"):
    ej.load_embeddings(tmp_path / "d")
  # a null vector, or a null inside one, is rejected naming the id (never a traceback, nothing written)
  pq.write_table(pa.Table.from_pylist([rows[0], {"id": "v", "embedding": None}]), tmp_path / "null.parquet")
  with pytest.raises(ValueError, match=r"1 embeddings .* are null \(ids \['v'\]\)"):
    ej.load_embeddings(tmp_path / "null.parquet")
  pq.write_table(
    pa.Table.from_pylist([rows[0], {"id": "w", "embedding": [0.1, None, 0.3]}]), tmp_path / "nullv.parquet"
  )
  with pytest.raises(ValueError, match=r"NaN or inf \(ids \['w'\]\)"):
    ej.load_embeddings(tmp_path / "nullv.parquet")
  # an id repeated across shards keeps its first row, counted
  pq.write_table(pa.Table.from_pylist([rows[0], {"id": "x", "embedding": [0.5, 0.5, 0.5]}]), tmp_path / "r.parquet")
  stats = {}
  ids, x = ej.load_embeddings(tmp_path / "r.parquet", stats=stats)
  assert ids == ["x"] and x.tolist() == [[np.float32(0.1), np.float32(0.2), np.float32(0.3)]]
  assert stats == {"repeated_ids": 1}


def test_empty_input_writes_parquet_with_the_schema(tmp_path):
  import pyarrow.parquet as pq

  src = tmp_path / "empty.jsonl"
  src.write_text("")
  res = ej.run_embed_job(
    TEST_CONFIG, docs.DocumentInput(files=(str(src),)), str(tmp_path / "out"), progress=False, embedder=embedder()
  )
  assert res.stats["records"] == 0
  assert pq.read_schema(res.path) == ej.output_schema()
  with pytest.raises(ValueError, match="no embeddings"):
    ej.load_embeddings(tmp_path / "out")


def test_t5_mean_pooled_encoder_matches_transformers(tmp_path):
  torch = pytest.importorskip("torch")
  import transformers
  from tokenizers import Tokenizer, models, pre_tokenizers, processors

  words = ["<pad>", "</s>", "<unk>"] + [chr(ord("a") + i) for i in range(26)] + ["the", "cat", "sat"]
  tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
  d = tmp_path / "st5"
  cfg = transformers.T5Config(
    vocab_size=40,
    d_model=16,
    d_kv=4,
    num_heads=2,
    d_ff=32,
    num_layers=2,
    feed_forward_proj="gated-gelu",
    dropout_rate=0.0,
  )
  torch.manual_seed(0)
  model = transformers.T5EncoderModel(cfg).eval()
  model.save_pretrained(d, safe_serialization=True)
  tok.save(str(d / "tokenizer.json"))
  emb = ej.Embedder(ej.EmbedJobConfig(model=str(d), max_length=16, min_bucket=8))
  assert emb.architecture == "t5" and emb.dim == 16
  texts = ["the cat sat", "a b c d e f g h i j k l m n o p q r s t", "cat"]
  got, ntok, cut = emb.embed(texts)
  assert ntok.tolist() == [4, 16, 2] and cut.tolist() == [False, True, False]
  with torch.no_grad():
    for text, g in zip(texts, got):
      ids = tok.encode(text).ids
      ids = ids[:15] + [1] if len(ids) > 16 else ids
      h = model(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0).numpy()
      np.testing.assert_allclose(g, h / np.linalg.norm(h), atol=2e-5)


KILL_SCRIPT = textwrap.dedent(
  """
    import sys
    from tokensift.selection import embed_job as ej
    from tokensift.core import docs
    cfg = ej.EmbedJobConfig(max_length=%d, min_bucket=32)
    ej.run_embed_job(cfg, docs.DocumentInput(files=(sys.argv[2],)), sys.argv[1], input_desc="kill", piece_size=4,
                     progress=False)
"""
  % MAX_LENGTH
)


def test_sigkill_and_rerun_is_byte_identical(tmp_path):
  src = tmp_path / "docs.jsonl"
  with open(src, "w") as f:
    for d in c4_documents()[:48]:  # <= 80 characters: every document in the 32-token bucket (one compile)
      f.write(json.dumps({"id": d.id, "text": d.text[:80]}) + "\n")
  ref = tmp_path / "ref"
  ej.run_embed_job(
    TEST_CONFIG,
    docs.DocumentInput(files=(str(src),)),
    str(ref),
    input_desc="kill",
    piece_size=4,
    progress=False,
    embedder=embedder(),
  )
  script = tmp_path / "job.py"
  script.write_text(KILL_SCRIPT)
  killed = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, str(script), str(killed), str(src)])
  pieces = killed / ".embed-00000-of-00001.pieces"
  deadline = time.time() + 600
  while time.time() < deadline and len(list(pieces.glob("piece-*.meta.json"))) < 3 and proc.poll() is None:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  n_before = len(list(pieces.glob("piece-*.meta.json")))
  assert 3 <= n_before < 12, n_before  # killed mid-way
  subprocess.run([sys.executable, str(script), str(killed), str(src)], check=True)
  for name in ("embed-00000-of-00001.parquet", "embed-00000-of-00001.done"):
    assert (killed / name).read_bytes() == (ref / name).read_bytes(), name
  ids, emb = ej.load_embeddings(killed)
  assert ids == [d.id for d in c4_documents()[:48]] and emb.shape == (48, 384)


def test_cli_embed(tmp_path, capsys):
  from tokensift import cli

  src = tmp_path / "in.jsonl"
  src.write_text(
    "\n".join(json.dumps({"id": f"d{i}", "text": d.text[:200]}) for i, d in enumerate(c4_documents()[:3])) + "\n"
  )
  out = tmp_path / "out"
  args = ["embed", "--input", str(src), "--out", str(out), "--max_length", "32", "--format", "jsonl", "--no_progress"]
  assert cli.main(args) == 0
  printed = capsys.readouterr().out
  assert '"records": 3' in printed and '"dim": 384' in printed
  ids, emb = ej.load_embeddings(out)
  assert ids == ["d0", "d1", "d2"] and emb.shape == (3, 384)
  assert cli.main(args) == 0 and "already done" in capsys.readouterr().out
  assert cli.main(["embed", "--input", str(tmp_path / "nope.jsonl"), "--out", str(out)]) == 2
  assert "no input file matches" in capsys.readouterr().err
