"""The sharded resumable job runner: sharding, skips, config guard, SIGKILL + rerun byte-identical."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tokensift.core import docs, jobs


def _rows(n=50, bad_every=7):
  def gen():
    for i in range(n):
      if i % bad_every == 3:
        yield docs.Skip("empty or whitespace-only text", f"in:{i}")
      else:
        yield docs.Document(f"d{i:03d}", f"text {i}")

  return jobs.in_memory_rows(gen)


def _upper(batch):
  return [{"id": d.id, "out": d.text.upper()} for d in batch]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_shards_partition_rows_and_count_skips(tmp_path, fmt):
  seen, skipped = [], 0
  for i in range(3):
    res = jobs.run_sharded(
      name="t",
      out_dir=tmp_path,
      rows=_rows(),
      process=_upper,
      shard=jobs.ShardSpec(i, 3),
      piece_size=4,
      fmt=fmt,
      progress=False,
    )
    recs = jobs.read_records(res.path)
    seen += [r["id"] for r in recs]
    skipped += sum(res.stats["skipped"].values())
  assert sorted(seen) == [f"d{i:03d}" for i in range(50) if i % 7 != 3]
  assert skipped == sum(1 for i in range(50) if i % 7 == 3)
  assert jobs.merged_stats(tmp_path, "t")["records"] == len(seen)
  assert len(jobs.shard_files(tmp_path, "t")) == 3
  again = jobs.run_sharded(
    name="t",
    out_dir=tmp_path,
    rows=_rows(),
    process=_upper,
    shard=jobs.ShardSpec(0, 3),
    piece_size=4,
    fmt=fmt,
    progress=False,
  )
  assert again.skipped_done


def test_config_change_is_refused(tmp_path):
  jobs.run_sharded(name="t", out_dir=tmp_path, rows=_rows(), process=_upper, config={"a": 1}, progress=False)
  with pytest.raises(ValueError, match="config"):
    jobs.run_sharded(name="t", out_dir=tmp_path, rows=_rows(), process=_upper, config={"a": 2}, progress=False)


def test_bad_shard_spec():
  with pytest.raises(ValueError, match="3/2"):
    jobs.ShardSpec.parse("3/2")
  with pytest.raises(ValueError, match="'x'"):
    jobs.ShardSpec.parse("x")


SCRIPT = textwrap.dedent("""
    import sys, time
    from tokensift.core import docs, jobs
    def rows(shard):
      for i in range(400):
        yield docs.Document(f"d{i:04d}", "x" * (i % 13))
    def slow(batch):
      time.sleep(0.05)
      return [{"id": d.id, "n": len(d.text), "text": d.text} for d in batch]
    jobs.run_sharded(name="k", out_dir=sys.argv[1], rows=rows, process=slow, piece_size=10,
                     fmt=sys.argv[2], progress=False, config={"v": 1})
""")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_sigkill_and_rerun_is_byte_identical(tmp_path, fmt):
  script = tmp_path / "job.py"
  script.write_text(SCRIPT)
  ref, killed = tmp_path / "ref", tmp_path / "killed"
  subprocess.run([sys.executable, script, ref, fmt], check=True)
  proc = subprocess.Popen([sys.executable, script, killed, fmt])
  pieces = killed / ".k-00000-of-00001.pieces"
  deadline = time.time() + 60
  while time.time() < deadline and len(list(pieces.glob("piece-*.meta.json"))) < 8:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  n_before = len(list(pieces.glob("piece-*.meta.json")))
  assert (killed / "k-00000-of-00001.lock").exists()  # left by the killed run; the rerun takes it over
  assert 8 <= n_before < 40, n_before  # killed mid-way
  subprocess.run([sys.executable, script, killed, fmt], check=True)
  name = f"k-00000-of-00001.{fmt}"
  assert (killed / name).read_bytes() == (ref / name).read_bytes()
  assert (killed / "k-00000-of-00001.done").read_bytes() == (ref / "k-00000-of-00001.done").read_bytes()
  assert len(jobs.read_records(killed / name)) == 400
  assert not pieces.exists()
  assert not (killed / "k-00000-of-00001.lock").exists()


def test_second_process_on_a_running_shard_stops_with_the_lock_name(tmp_path):
  script = tmp_path / "job.py"
  script.write_text(SCRIPT)
  proc = subprocess.Popen([sys.executable, script, tmp_path / "out", "jsonl"])
  lock = tmp_path / "out" / "k-00000-of-00001.lock"
  deadline = time.time() + 60
  while time.time() < deadline and not lock.exists():
    time.sleep(0.02)
  try:
    with pytest.raises(jobs.storage.LockedError, match="k-00000-of-00001.lock"):
      jobs.run_sharded(
        name="k", out_dir=tmp_path / "out", rows=_rows(), process=_upper, progress=False, config={"v": 1}
      )
  finally:
    proc.kill()
    proc.wait()


def test_summaries_are_merged_over_pieces_and_finished(tmp_path):
  res = jobs.run_sharded(
    name="t",
    out_dir=tmp_path,
    rows=_rows(),
    process=_upper,
    piece_size=4,
    progress=False,
    summarize=lambda recs: {"chars": sum(len(r["out"]) for r in recs), "dims": [1]},
    finish=lambda s: dict(s, mean_chars=s["chars"] / s["records"]),
  )
  recs = jobs.read_records(res.path)
  assert res.stats["chars"] == sum(len(r["out"]) for r in recs)
  assert res.stats["dims"] == [1] and res.stats["mean_chars"] == res.stats["chars"] / len(recs)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_empty_input_writes_an_empty_output_with_the_schema(tmp_path, fmt):
  import pyarrow as pa
  import pyarrow.parquet as pq

  schema = pa.schema([("id", pa.string()), ("out", pa.string())])
  res = jobs.run_sharded(
    name="t", out_dir=tmp_path, rows=jobs.in_memory_rows([]), process=_upper, fmt=fmt, schema=schema, progress=False
  )
  assert res.stats["records"] == 0 and jobs.read_records(res.path) == []
  if fmt == "parquet":
    assert pq.read_schema(res.path) == schema


def test_progress_moves_per_document_inside_a_piece(tmp_path):
  """process() reports finished documents with jobs.advance(): the bar counts them before the piece is done,
  and the piece's end tops the bar up to exactly the rows read (documents + skips)."""
  from tqdm.auto import tqdm

  seen_mid_piece = []

  def process(batch):
    for i in range(0, len(batch), 2):  # "model batches" of 2 documents
      jobs.advance(min(2, len(batch) - i))
      seen_mid_piece.append(max(b.n for b in tqdm._instances))  # the job's live bar
    jobs.advance(100)  # over-reporting is clamped to the piece
    return _upper(batch)

  jobs.run_sharded(
    name="p", out_dir=tmp_path, rows=_rows(n=20, bad_every=100), process=process, piece_size=10, progress=True, total=20
  )
  # the first piece: 9 documents (row 3 is a skip, counted when the piece ends), the bar moving inside it
  assert seen_mid_piece[:5] == [2, 4, 6, 8, 9]
  assert seen_mid_piece[5:] == [12, 14, 16, 18, 20]
  assert jobs.read_records(jobs.shard_files(tmp_path, "p")[0])[0]["out"] == "TEXT 0"
  jobs.advance(3)  # outside a job: a no-op


def test_read_records_is_the_json_lines_reader(tmp_path, data_dir):
  """Any JSON-lines file (the OpenWebMath sample; one with blank lines), and a missing one with ``missing_ok``."""
  src = data_dir / "openwebmath" / "owm-sample-878.jsonl"
  recs = jobs.read_records(src)
  assert len(recs) == 878 and recs[0]["url"].startswith("http") and isinstance(recs[0]["text"], str)
  spaced = tmp_path / "spaced.jsonl"
  spaced.write_text("\n\n".join(src.read_text(encoding="utf-8").splitlines()[:5]) + "\n \n", encoding="utf-8")
  assert jobs.read_records(spaced) == recs[:5]
  assert jobs.read_records(tmp_path / "missing.jsonl", missing_ok=True) == []
  with pytest.raises(FileNotFoundError):
    jobs.read_records(tmp_path / "missing.jsonl")
