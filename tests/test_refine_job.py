"""The refine job: records, summary, CLI, SIGKILL + resume byte-identical on the C4 and OWM samples, tasks over
its output."""

import errno
import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import seqio

from tokensift import cli
from tokensift.core import docs, jobs
from tokensift.refine import executor, job, rules

REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def _sample_lines(data_dir, which):
  if which == "c4":
    with gzip.open(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
      return [line if line.endswith("\n") else line + "\n" for line in f]
  with open(data_dir / "openwebmath" / "owm-sample-878.jsonl") as f:
    return list(f)


def _cli(*args):
  return [sys.executable, "-m", "tokensift.cli", "refine", *map(str, args)]


def test_records_and_summary():
  batch = [
    docs.Document(
      "a",
      "Home | About | Contact\n"
      + "\n".join(f"The report for day {i} was accurate and complete with the data." for i in range(8)),
    ),
    docs.Document("b", "too short"),
    docs.Document("c", "\n".join(f"Line {i} has a lone \ud800 surrogate in the text." for i in range(30))),
  ]
  recs = job.refine_documents(batch, job.RuleProgrammer(), count_tokens=lambda xs: [len(x.split()) for x in xs])
  assert [r["id"] for r in recs] == ["a", "b", "c"]
  assert list(recs[0]) == ["id", "text", "raw_text", "kept", "doc_program", "chunk_program", "errors", "rules", "stats"]
  assert recs[0]["kept"] and recs[0]["rules"] == ["boilerplate"] and "Home" not in recs[0]["text"]
  assert recs[0]["chunk_program"] == "remove_lines(line_start=0, line_end=0)"
  assert recs[0]["stats"]["tokens_after"] == recs[0]["stats"]["words_after"]
  assert not recs[1]["kept"] and recs[1]["rules"] == ["too_short"] and recs[1]["doc_program"] == "drop_doc()"
  assert recs[2]["stats"]["unicode_fixes"] == 30 and "\ufffd" in recs[2]["raw_text"]
  s = job.summarize(recs)
  assert (s["documents"], s["kept"], s["dropped"], s["drop.drop_doc"], s["rule.boilerplate"]) == (3, 2, 1, 1, 1)
  assert s["words_before"] == sum(r["stats"]["words_before"] for r in recs)
  text = job.format_summary(s)
  assert "1 dropped" in text and "top rules fired (documents): boilerplate 1" in text


def test_cli_on_owm_prints_summary_and_matches_library(data_dir, tmp_path, capsys):
  path = data_dir / "openwebmath" / "owm-sample-878.jsonl"
  assert cli.main(["refine", "--input", str(path), "--out", str(tmp_path), "--no_progress", "--format", "parquet"]) == 0
  out = capsys.readouterr().out
  assert "878 refined" in out and "top rules fired" in out and "words:" in out
  recs = jobs.read_records(tmp_path / "refine-00000-of-00001.parquet")
  assert len(recs) == 878
  cfg = rules.RuleConfig.math()  # profile auto -> math for OpenWebMath
  for rec, doc in zip(recs[:50], docs.documents_only(docs.file_rows(str(path)), docs.ReadReport())):
    rp = rules.write_program(doc.text, cfg)
    assert (rec["id"], rec["doc_program"], rec["chunk_program"]) == (doc.id, rp.doc_program, rp.chunk_program)
    assert rec["text"] == executor.execute(doc.text, rp.doc_program, rp.chunk_program).text


def test_cli_errors_are_clear(tmp_path, capsys):
  assert cli.main(["refine", "--input", str(tmp_path / "nope*.jsonl"), "--out", str(tmp_path)]) == 2
  assert "no input file matches" in capsys.readouterr().err
  assert cli.main(["refine", "--task", "no_such_task", "--out", str(tmp_path)]) == 2
  assert "unknown task 'no_such_task'" in capsys.readouterr().err
  assert cli.main(["refine", "--input", "x", "--out", str(tmp_path), "--shard", "2/2"]) == 2
  assert "invalid shard" in capsys.readouterr().err


def _open_fifo_writer(path, proc, timeout=120):
  t0 = time.time()
  while True:
    try:
      return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
      if e.errno != errno.ENXIO:
        raise
    if proc.poll() is not None or time.time() - t0 > timeout:
      raise AssertionError(f"refine process never opened its input (rc={proc.poll()})")
    time.sleep(0.05)


@pytest.mark.parametrize("which,fmt", [("c4", "parquet"), ("owm", "jsonl")])
def test_sigkill_mid_job_and_rerun_is_byte_identical(data_dir, tmp_path, which, fmt):
  """The killed run reads a FIFO that the test feeds, so the kill lands at a known point: after 3 finished
  pieces, with a 4th piece half read. The rerun reads the same path as a regular file."""
  lines = _sample_lines(data_dir, which)
  (tmp_path / "ref").mkdir()
  (tmp_path / "ref" / "in.jsonl").write_text("".join(lines))

  def args(inp, out):
    return ["--input", inp, "--out", out, "--piece_size", 50, "--format", fmt, "--no_progress"]

  subprocess.run(
    _cli(*args(tmp_path / "ref" / "in.jsonl", tmp_path / "ref_out")), check=True, env=ENV, cwd=REPO, capture_output=True
  )

  (tmp_path / "k").mkdir()
  fifo = tmp_path / "k" / "in.jsonl"
  os.mkfifo(fifo)
  out = tmp_path / "killed_out"
  proc = subprocess.Popen(_cli(*args(fifo, out)), env=ENV, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  fd = _open_fifo_writer(fifo, proc)
  os.set_blocking(fd, True)
  os.write(fd, "".join(lines[:175]).encode())
  pieces = out / ".refine-00000-of-00001.pieces"
  t0 = time.time()
  while len(list(pieces.glob("piece-*.meta.json"))) < 3:
    assert proc.poll() is None and time.time() - t0 < 120, proc.stderr.read() if proc.poll() is not None else ""
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  os.close(fd)
  assert proc.returncode == -signal.SIGKILL
  assert not list(out.glob("*.done")) and len(list(pieces.glob("piece-*.meta.json"))) == 3

  fifo.unlink()
  fifo.write_text("".join(lines))
  rerun = subprocess.run(_cli(*args(fifo, out)), check=True, env=ENV, cwd=REPO, capture_output=True, text=True)
  assert "resumed 3 pieces" in rerun.stdout and "top rules fired" in rerun.stdout
  name = f"refine-00000-of-00001.{fmt}"
  assert (out / name).read_bytes() == (tmp_path / "ref_out" / name).read_bytes()
  # position ids ({file}@{byte offset}): the FIFO and the file share the name, so the ids agree
  want = [d.id for d in docs.documents_only(docs.file_rows(str(tmp_path / "ref" / "in.jsonl")), docs.ReadReport())]
  assert [r["id"] for r in jobs.read_records(out / name)] == want and len(want) == len(lines)


class _CrashAfter:
  """A rule programmer that dies on its n-th call (a crash in the middle of a job)."""

  def __init__(self, n):
    self.inner, self.calls, self.n, self.name = job.RuleProgrammer(), 0, n, "rules:web"

  def __call__(self, texts):
    self.calls += 1
    if self.calls == self.n:
      raise RuntimeError("simulated crash")
    return self.inner(texts)


def test_task_input_sharded_resume_and_refined_task(data_dir, tmp_path):
  rows = docs.DocumentInput(task="c4_en_raw", split="validation")
  assert rows.total() == 200
  kw = dict(rows=rows, piece_size=16, progress=False, config={"task": "c4_en_raw"})
  ref = [
    job.run_refine(out_dir=tmp_path / "ref", programmer=job.RuleProgrammer(), shard=jobs.ShardSpec(i, 2), **kw)
    for i in range(2)
  ]
  with pytest.raises(RuntimeError, match="simulated"):
    job.run_refine(out_dir=tmp_path / "run", programmer=_CrashAfter(4), shard=jobs.ShardSpec(1, 2), **kw)
  res = job.run_refine(out_dir=tmp_path / "run", programmer=job.RuleProgrammer(), shard=jobs.ShardSpec(1, 2), **kw)
  assert res.resumed_pieces == 3
  assert res.path.read_bytes() == ref[1].path.read_bytes()
  ids = [r["id"] for i in range(2) for r in jobs.read_records(ref[i].path)]
  source_ids = [
    e["id"].decode()
    for e in seqio.get_mixture_or_task("c4_en_raw").source.get_dataset("validation", shuffle=False).as_numpy_iterator()
  ]
  # shard i of 2 reads TFDS file i of 2 (seqio shard_info), so shard 0 starts with the source's first rows
  assert sorted(ids) == sorted(source_ids) and ids[:3] == source_ids[:3]
  assert {r["id"].split("__")[0] for r in jobs.read_records(ref[1].path)} == {"c4-validation.tfrecord-00001-of-00002"}
  merged = jobs.merged_stats(tmp_path / "ref", "refine")
  assert merged["documents"] == 200 and merged["kept"] + merged["dropped"] == 200

  from tokensift.refine import tasks as refine_tasks

  task = refine_tasks.register_refined_task("test_refined_c4", tmp_path / "ref", "c4sp", replace=True)
  got = [
    (e["id"].decode(), e["text"].decode())
    for e in task.get_dataset(sequence_length={"targets": 32}, split="train", shuffle=False).as_numpy_iterator()
  ]
  kept = [(r["id"], r["text"]) for i in range(2) for r in jobs.read_records(ref[i].path) if r["kept"]]
  assert got == kept and len(got) == merged["kept"]
  seqio.TaskRegistry.remove("test_refined_c4")
  empty = refine_tasks.register_refined_task("test_refined_none", tmp_path / "nothing", "c4sp", replace=True)
  with pytest.raises(FileNotFoundError, match="nothing"):
    empty.get_dataset(sequence_length={"targets": 32}, split="train")
  seqio.TaskRegistry.remove("test_refined_none")
