"""Corpus scale in miniature (DESIGN §11): shard i of n opens only its own input files (16 files; the TFDS C4
sample), the n shards' outputs together equal the 1-shard output, killed-and-rerun shards are byte-identical, an
in-memory fsspec file system for input and output, and every bad input gives one line or a counted skip."""

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tokensift import cli
from tokensift.core import docs, jobs, storage

# ---------------------------------------------------------------------------------------- what gets opened

_OPENED: list[str] | None = None


def _audit(event, args):
  if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
    _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # every file the Python process opens (audit hooks stay for the process; gated above)


class opened_under:
  """Records the files under ``root`` that the process opens inside the ``with`` block."""

  def __init__(self, root):
    self.root = str(root)

  def __enter__(self):
    global _OPENED
    _OPENED = []
    return self

  def __exit__(self, *exc):
    global _OPENED
    self.paths = sorted({os.path.basename(p) for p in _OPENED if p.startswith(self.root)})
    _OPENED = None


def _process(batch):  # the job's work: deterministic, keeps the document (so outputs can be compared as sets)
  return [{"id": d.id, "text": d.text, "n": len(d.text)} for d in batch]


def _as_set(paths):
  return {json.dumps(r, sort_keys=True) for p in paths for r in jobs.read_records(p)}


@pytest.fixture(scope="module")
def corpus16(tmp_path_factory, data_dir):
  """16 input files of real documents: 12 JSON lines, 2 gzip JSON lines, 2 Parquet (3 row groups each)."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  d = tmp_path_factory.mktemp("corpus16")
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz") as f:
    rows = [json.loads(line) for line in f][:320]
  for k in range(16):
    part = [{"text": r["text"], "url": r["url"]} for r in rows[k * 20 : (k + 1) * 20]]
    if k < 12:
      (d / f"part-{k:02d}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    elif k < 14:
      with gzip.open(d / f"part-{k:02d}.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in part))
    else:
      pq.write_table(pa.Table.from_pylist(part), d / f"part-{k:02d}.parquet", row_group_size=7)
  return d


def _run(corpus, out, shard, **kw):
  return jobs.run_sharded(
    name="t",
    out_dir=out,
    rows=docs.DocumentInput(files=(str(corpus / "part-*"),)),
    process=_process,
    shard=shard,
    piece_size=8,
    progress=False,
    **kw,
  )


@pytest.mark.parametrize("n", [4, 16, 40])
def test_16_files_shard_opens_only_its_files_and_shards_union_to_the_whole(corpus16, tmp_path, n):
  names = sorted(os.listdir(corpus16))
  whole = _run(corpus16, tmp_path / "one", docs.ShardSpec(0, 1))
  assert whole.stats["records"] == 320
  assert whole.stats["bytes_read"] >= sum(os.path.getsize(corpus16 / f) for f in names)
  paths, bytes_read = [], 0
  for i in range(n):
    with opened_under(corpus16) as seen:
      res = _run(corpus16, tmp_path / f"n{n}", docs.ShardSpec(i, n))
    paths.append(res.path)
    bytes_read += res.stats["bytes_read"]
    if n <= 16:
      assert seen.paths == names[i::n], (i, seen.paths)  # whole files, strided
    else:  # 40 shards over 16 files: 3 parts per file (byte ranges, row-group ranges; gzip files whole)
      units = docs.plan_units(storage.expand(str(corpus16 / "part-*")), n)[i::n]
      own = {os.path.basename(u.url) for u in units}
      footers = {f for f in names if f.endswith(".parquet")}  # planning row-group splits reads their footers
      assert set(seen.paths) - footers == own - footers and len(own) <= 2
  assert _as_set(paths) == _as_set([whole.path])
  if n <= 16:  # whole files: the n shards together read the input once (with 40 shards, each of a small
    # Parquet file's 3 row-group units reads its footer, here most of the file: benchmarks/bench_shards.py measures
    # large files)
    assert bytes_read == whole.stats["bytes_read"]
  assert jobs.merged_stats(tmp_path / f"n{n}", "t")["records"] == 320


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from tokensift.core import docs, jobs
    def slow(batch):
      time.sleep(0.1)
      return [{"id": d.id, "text": d.text, "n": len(d.text)} for d in batch]
    jobs.run_sharded(name="t", out_dir=sys.argv[2], rows=docs.DocumentInput(files=(sys.argv[1] + "/part-*",)),
                     process=slow, shard=docs.ShardSpec(1, 4), piece_size=3, fmt=sys.argv[3], progress=False)
""")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_16_files_killed_shard_rerun_is_byte_identical(corpus16, tmp_path, fmt):
  ref = _run(corpus16, tmp_path / "ref", docs.ShardSpec(1, 4), fmt=fmt)
  script = tmp_path / "job.py"
  script.write_text(KILL_SCRIPT)
  out = tmp_path / "killed"
  cmd = [sys.executable, str(script), str(corpus16), str(out), fmt]
  proc = subprocess.Popen(cmd)
  pieces = out / ".t-00001-of-00004.pieces"
  deadline = time.time() + 120
  while time.time() < deadline and len(list(pieces.glob("piece-*.meta.json"))) < 4 and proc.poll() is None:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert 4 <= len(list(pieces.glob("piece-*.meta.json"))) < 27  # 80 documents in pieces of 3: killed mid-way
  subprocess.run(cmd, check=True)
  # the reference used piece_size 8, the killed run 3: outputs agree as records; the killed run agrees with its
  # own uninterrupted twin byte for byte
  assert _as_set([out / f"t-00001-of-00004.{fmt}"]) == _as_set([ref.path])
  twin = tmp_path / "twin"
  subprocess.run([sys.executable, str(script), str(corpus16), str(twin), fmt], check=True)
  name = f"t-00001-of-00004.{fmt}"
  assert (out / name).read_bytes() == (twin / name).read_bytes()
  assert (out / "t-00001-of-00004.done").read_bytes() == (twin / "t-00001-of-00004.done").read_bytes()


# ---------------------------------------------------------------------------------------- TFDS C4 sample


def _c4_subset_dir(tmp_path, data_dir, keep):
  """A TFDS data dir whose c4/en/3.0.1 holds the metadata and only the train files ``keep`` (symlinks into the
  read-only sample): reading any other file fails, so a shard that succeeds opened only its own files."""
  src = data_dir / "c4/tfds/c4/en/3.0.1"
  dst = tmp_path / "tfds" / "c4/en/3.0.1"
  dst.mkdir(parents=True)
  for f in src.iterdir():
    if not f.name.startswith("c4-train.tfrecord") or int(f.name.split("-")[2]) in keep:
      (dst / f.name).symlink_to(f)
  return tmp_path / "tfds"


@pytest.mark.parametrize("n,i", [(8, 3), (4, 1)])
def test_c4_tfds_shard_reads_only_its_files(data_dir, tmp_path, n, i):
  from tokensift.tasks import sources

  own = set(range(i, 8, n))
  source = sources.IdTfdsDataSource(
    "c4/en:3.0.1", lambda: str(_c4_subset_dir(tmp_path, data_dir, own)), splits=("train",)
  )
  ds = docs.source_dataset(source, "train", docs.ShardSpec(i, n))
  ids = [ex["id"].decode() for ex in ds.as_numpy_iterator()]
  assert len(ids) == 125 * len(own)  # the sample's train files hold 125 documents each
  assert {int(x.split("__")[0].split("-")[2]) for x in ids} == own
  # the same shard over the full directory gives the same documents
  full = [
    ex["id"].decode()
    for ex in docs.source_dataset(sources.c4_source(), "train", docs.ShardSpec(i, n)).as_numpy_iterator()
  ]
  assert full == ids


def test_c4_task_shards_union_and_killed_shard_rerun(tmp_path):
  inp = docs.DocumentInput(task="c4_en_raw", split="train")
  whole = jobs.run_sharded(
    name="c4", out_dir=tmp_path / "one", rows=inp, process=_process, progress=False, piece_size=100
  )
  assert whole.stats["records"] == 1000
  paths = [
    jobs.run_sharded(
      name="c4",
      out_dir=tmp_path / "four",
      rows=inp,
      process=_process,
      progress=False,
      shard=docs.ShardSpec(i, 4),
      piece_size=100,
    ).path
    for i in range(4)
  ]
  assert _as_set(paths) == _as_set([whole.path])

  # shard 2 of 4 killed (SIGKILL) mid-way and rerun: byte-identical to the uninterrupted shard
  script = tmp_path / "job.py"
  script.write_text(C4_KILL_SCRIPT)
  out = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, str(script), str(out)])
  pieces = out / ".c4-00002-of-00004.pieces"
  deadline = time.time() + 300
  while time.time() < deadline and len(list(pieces.glob("piece-*.meta.json"))) < 3 and proc.poll() is None:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert 3 <= len(list(pieces.glob("piece-*.meta.json"))) < 25  # 250 documents in pieces of 10: killed mid-way
  subprocess.run([sys.executable, str(script), str(out)], check=True)
  ref = jobs.run_sharded(
    name="c4",
    out_dir=tmp_path / "ref",
    rows=inp,
    process=_process,
    progress=False,
    shard=docs.ShardSpec(2, 4),
    piece_size=10,
  )
  assert (out / "c4-00002-of-00004.jsonl").read_bytes() == ref.path.read_bytes()


C4_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import tokensift.tasks  # registers c4_en_raw (the core reads tasks from seqio's registry, never imports them)
    from tokensift.core import docs, jobs
    def slow(batch):
      time.sleep(0.1)
      return [{"id": d.id, "text": d.text, "n": len(d.text)} for d in batch]
    jobs.run_sharded(name="c4", out_dir=sys.argv[1], rows=docs.DocumentInput(task="c4_en_raw", split="train"),
                     process=slow, shard=docs.ShardSpec(2, 4), piece_size=10, progress=False)
""")


# ---------------------------------------------------------------------------------------- memory://


def test_memory_filesystem_input_and_output(monkeypatch):
  import fsspec
  import pyarrow as pa
  import pyarrow.parquet as pq
  from fsspec.implementations.memory import MemoryFileSystem

  fs = fsspec.filesystem("memory")
  root = "/scale-test"
  if fs.exists(root):
    fs.rm(root, recursive=True)
  for k in range(3):
    fs.pipe(
      f"{root}/in/a-{k}.jsonl", "".join(json.dumps({"text": f"doc {k}-{j} " * 5}) + "\n" for j in range(10)).encode()
    )
  with fs.open(f"{root}/in/b.parquet", "wb") as f:
    pq.write_table(
      pa.table({"id": [f"p{j}" for j in range(12)], "text": [f"parquet {j}" for j in range(12)]}), f, row_group_size=4
    )
  opened = []
  real_open = MemoryFileSystem._open

  def spy(self, path, *a, **kw):
    opened.append(path)
    return real_open(self, path, *a, **kw)

  monkeypatch.setattr(MemoryFileSystem, "_open", spy)
  inp = docs.DocumentInput(files=(f"memory://{root}/in/*",))
  one = jobs.run_sharded(
    name="m", out_dir=f"memory://{root}/one", rows=inp, process=_process, progress=False, fmt="parquet", piece_size=5
  )
  assert one.path == f"memory://{root}/one/m-00000-of-00001.parquet" and one.stats["records"] == 42
  assert jobs.shard_files(f"memory://{root}/one", "m") == [one.path]
  outs = []
  for i in range(4):
    opened.clear()
    outs.append(
      jobs.run_sharded(
        name="m",
        out_dir=f"memory://{root}/four",
        rows=inp,
        process=_process,
        progress=False,
        fmt="parquet",
        piece_size=5,
        shard=docs.ShardSpec(i, 4),
      ).path
    )
    inputs = sorted({p.rsplit("/", 1)[1] for p in opened if "/in/" in p})
    assert inputs == [["a-0.jsonl"], ["a-1.jsonl"], ["a-2.jsonl"], ["b.parquet"]][i]
  assert _as_set(outs) == _as_set([one.path])
  assert not fs.exists(f"{root}/four/.m-00000-of-00004.pieces") and not fs.exists(f"{root}/four/m-00000-of-00004.lock")

  calls = []

  def crash(batch):
    calls.append(1)
    if len(calls) == 3:
      raise RuntimeError("simulated crash")
    return _process(batch)

  with pytest.raises(RuntimeError):
    jobs.run_sharded(
      name="m", out_dir=f"memory://{root}/crash", rows=inp, process=crash, progress=False, fmt="parquet", piece_size=5
    )
  again = jobs.run_sharded(
    name="m", out_dir=f"memory://{root}/crash", rows=inp, process=_process, progress=False, fmt="parquet", piece_size=5
  )
  assert again.resumed_pieces == 2
  assert fs.cat(f"{root}/crash/m-00000-of-00001.parquet") == fs.cat(f"{root}/one/m-00000-of-00001.parquet")
  fs.rm(root, recursive=True)


# ---------------------------------------------------------------------------------------- bad inputs


def test_truncated_gzip_keeps_rows_before_the_cut_and_counts_the_error(tmp_path, capsys):
  lines = "".join(json.dumps({"id": f"d{i}", "text": f"document {i} " * 40}) + "\n" for i in range(200))
  data = gzip.compress(lines.encode())
  (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
  report = docs.ReadReport()
  got = [d.id for d in docs.documents_only(docs.file_rows(str(tmp_path / "cut.jsonl.gz")), report)]
  assert got and got == [f"d{i}" for i in range(len(got))] and len(got) < 200
  (reason,) = report.skipped
  assert reason.startswith("truncated or corrupt file (EOFError")
  out = tmp_path / "out"
  assert cli.main(["refine", "--input", str(tmp_path / "cut.jsonl.gz"), "--out", str(out), "--no_progress"]) == 0
  assert f"{len(got)} refined" in capsys.readouterr().out
  assert len(jobs.read_records(out / "refine-00000-of-00001.jsonl")) == len(got)
  assert not list(out.glob(".*pieces"))  # no stale work dir


def test_directory_as_input_is_a_one_line_error(tmp_path, capsys):
  assert cli.main(["refine", "--input", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
  err = capsys.readouterr().err
  assert "is a directory" in err and "/*.jsonl" in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "o").exists()


def test_misspelled_task_leaves_nothing_behind(tmp_path, capsys):
  out = tmp_path / "out"
  for cmd in (
    ["score", "--task", "c4_en_rw", "--split", "validation"],
    ["embed", "--task", "c4_en_rw"],
    ["refine", "--task", "c4_en_rw", "--split", "validation"],
    ["reference-losses", "--task", "c4_en_rw"],
  ):
    assert cli.main([*cmd, "--out", str(out), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'c4_en_rw'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
  assert cli.main(["refine", "--task", "c4_en_raw", "--split", "validation", "--out", str(out), "--no_progress"]) == 0
  assert "200 refined" in capsys.readouterr().out


def test_empty_input_writes_an_empty_file(tmp_path, capsys):
  (tmp_path / "empty.jsonl").write_text("")
  assert (
    cli.main(
      [
        "refine",
        "--input",
        str(tmp_path / "empty.jsonl"),
        "--out",
        str(tmp_path / "o"),
        "--no_progress",
        "--format",
        "parquet",
      ]
    )
    == 0
  )
  assert jobs.read_records(tmp_path / "o" / "refine-00000-of-00001.parquet") == []


def test_second_run_of_a_locked_shard_is_a_one_line_error(tmp_path, capsys):
  (tmp_path / "in.jsonl").write_text(json.dumps({"text": "some words here"}) + "\n")
  out = tmp_path / "o"
  out.mkdir()
  holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    import socket

    (out / "refine-00000-of-00001.lock").write_text(f"{socket.gethostname()} {holder.pid}")
    assert cli.main(["refine", "--input", str(tmp_path / "in.jsonl"), "--out", str(out), "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "refine-00000-of-00001.lock" in err and len(err.strip().splitlines()) == 1
  finally:
    holder.kill()
    holder.wait()
  # the holder is gone (killed): its lock is taken over
  assert cli.main(["refine", "--input", str(tmp_path / "in.jsonl"), "--out", str(out), "--no_progress"]) == 0


def test_repeated_ids_are_counted_never_renamed(tmp_path):
  rows = [{"url": "u1", "text": "first"}, {"url": "u1#2", "text": "a real url#2"}, {"url": "u1", "text": "again"}]
  (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  report = docs.ReadReport()
  got = list(docs.documents_only(docs.file_rows(str(tmp_path / "r.jsonl"), id_field="url"), report))
  assert [(d.id, d.text) for d in got] == [("u1", "first"), ("u1#2", "a real url#2")]
  assert report.skipped == {"repeated id": 1}
