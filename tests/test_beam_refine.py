"""The refine job as a Beam pipeline (local in-process runner) writes the same shard files and markers as the
single-process job, on the OpenWebMath JSON lines, the C4 gzip sample and the c4_en_raw task; a restart skips
finished shards and refuses another config."""

import functools
import json

import pytest

pytest.importorskip("apache_beam")

from tokensift import cli
from tokensift.core import docs, jobs
from tokensift.refine import beam_refine, executor, job, rules


def _single(inp, out, n, fmt, profile, config):
  for i in range(n):
    job.run_refine(
      rows=inp,
      out_dir=out,
      programmer=job.RuleProgrammer(rules.RuleConfig.named(profile)),
      shard=docs.ShardSpec(i, n),
      fmt=fmt,
      piece_size=100,
      config=config,
      progress=False,
    )


def _beam(inp, out, n, fmt, profile, config, workers):
  return beam_refine.run_refine_beam(
    inp=inp,
    out_dir=str(out),
    programmer_factory=functools.partial(job.RuleProgrammer, rules.RuleConfig.named(profile)),
    programmer_name=f"rules:{profile}",
    shards=n,
    fmt=fmt,
    piece_size=100,
    config=config,
    workers=workers,
  )


@pytest.mark.parametrize(
  "which,n,fmt,workers", [("owm", 3, "jsonl", 2), ("c4", 2, "parquet", 1), ("c4_task", 2, "jsonl", 1)]
)
def test_beam_refine_writes_the_single_process_files(data_dir, tmp_path, which, n, fmt, workers):
  if which == "owm":
    inp = docs.DocumentInput(files=(str(data_dir / "openwebmath" / "owm-sample-878.jsonl"),), id_field="url")
    profile = "math"
  elif which == "c4_task":  # the seqio task's source, sharded by its shard_info (2 TFRecord files)
    inp = docs.DocumentInput(task="c4_en_raw", split="validation")
    profile = "web"
  else:  # one gzip file: whole units, so shard 1 is empty (an empty shard is committed too)
    inp = docs.DocumentInput(files=(str(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz"),))
    profile = "web"
  config = {"input": inp.describe(), "profile": profile, "vocab": None}
  _single(inp, tmp_path / "one", n, fmt, profile, config)
  committed = _beam(inp, tmp_path / "beam", n, fmt, profile, config, workers)
  assert sorted(committed) == list(range(n))
  one_files = jobs.finished_files(tmp_path / "one", "refine")
  beam_files = jobs.finished_files(tmp_path / "beam", "refine")
  assert [f.name for f in one_files] == [f.name for f in beam_files]
  total = 0
  for a, b in zip(one_files, beam_files):
    ra, rb = jobs.read_records(a), jobs.read_records(b)
    assert ra == rb
    total += len(ra)
    if fmt == "jsonl":
      assert a.read_bytes() == b.read_bytes()
    marker = a.name.rsplit(".", 1)[0] + ".done"
    assert json.loads((tmp_path / "one" / marker).read_text()) == json.loads((tmp_path / "beam" / marker).read_text())
  assert total == {"owm": 878, "c4": 1000, "c4_task": 200}[which]
  assert not list((tmp_path / "beam").glob(".*pieces"))  # pieces removed after the commit
  # restart: every shard is finished, nothing runs; another config is refused before any work
  assert _beam(inp, tmp_path / "beam", n, fmt, profile, config, workers) == {}
  with pytest.raises(ValueError, match="was written with config"):
    _beam(inp, tmp_path / "beam", n, fmt, profile, dict(config, vocab="c4sp"), workers)


def test_cli_runner_local_matches_single_process(data_dir, tmp_path, capsys):
  path = str(data_dir / "openwebmath" / "owm-sample-878.jsonl")
  assert (
    cli.main(
      [
        "refine",
        "--input",
        path,
        "--id_field",
        "url",
        "--out",
        str(tmp_path / "one"),
        "--no_progress",
        "--piece_size",
        "300",
      ]
    )
    == 0
  )
  assert (
    cli.main(
      [
        "refine",
        "--input",
        path,
        "--id_field",
        "url",
        "--out",
        str(tmp_path / "beam"),
        "--no_progress",
        "--piece_size",
        "300",
        "--runner",
        "local",
        "--beam_workers",
        "1",
      ]
    )
    == 0
  )
  out = capsys.readouterr().out
  assert "refine (Beam, local): 1 shards committed" in out and "876 refined" in out and "'repeated id': 2" in out
  for f in ("refine-00000-of-00001.jsonl", "refine-00000-of-00001.done"):
    assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "beam" / f).read_bytes()
  assert cli.main(["refine", "--input", path, "--out", str(tmp_path / "x"), "--shard", "2/4", "--runner", "local"]) != 0
  assert "give --shards 4" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_exec_config_is_part_of_the_marker(data_dir, tmp_path):
  inp = docs.DocumentInput(files=(str(data_dir / "openwebmath" / "owm-sample-878.jsonl"),), id_field="url")
  beam_refine.run_refine_beam(
    inp=inp,
    out_dir=str(tmp_path),
    programmer_factory=job.RuleProgrammer,
    programmer_name="rules:web",
    exec_config=executor.ExecConfig(min_words=50),
    workers=1,
  )
  stats = jobs.merged_stats(tmp_path, "refine")
  marker = json.loads((tmp_path / "refine-00000-of-00001.done").read_text())
  assert marker["config"]["exec"]["min_words"] == 50 and stats["documents"] == 876
  assert stats["dropped"] > 8  # more than the 8 dropped with the default 10-word rule
