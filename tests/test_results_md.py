"""benchmarks/results.py: ``--results`` replaces one benchmark's section of RESULTS.md, idempotently, and nothing
else."""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
_spec = importlib.util.spec_from_file_location("benchmarks_results", BENCH / "results.py")
results = importlib.util.module_from_spec(_spec)  # benchmarks/results.py, without putting benchmarks/ on sys.path
_spec.loader.exec_module(results)

WHEN = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)


def sections(text: str) -> dict[str, str]:
  """{name: text of '## name' up to the next '## '}, plus '' for the preamble."""
  parts = re.split(r"^(?=## )", text, flags=re.MULTILINE)
  out = {"": parts[0]}
  for part in parts[1:]:
    out[part.split("\n", 1)[0][3:].strip()] = part
  return out


@pytest.fixture
def results_copy(tmp_path):
  path = tmp_path / "RESULTS.md"
  shutil.copy(results.RESULTS_MD, path)
  return path


def test_record_replaces_one_section_idempotently_and_leaves_the_others(results_copy):
  before = sections(results_copy.read_text())
  assert {"bench_shards", "bench_beam", "main_job"} <= set(before)
  output = "   n   id  shard docs\n   1  pos      20,000\n"
  results.record("bench_shards", output, path=results_copy, command="python benchmarks/bench_shards.py", when=WHEN)
  once = results_copy.read_text()
  after = sections(once)
  assert list(after) == list(before)  # same sections, same order
  assert all(after[k] == before[k] for k in before if k != "bench_shards")
  new = after["bench_shards"]
  assert new != before["bench_shards"] and "28,482" not in new and "1  pos      20,000" in new
  assert "Measured 2026-12-07 12:00 UTC on " in new and f"Python {sys.version_info.major}." in new and "jax " in new
  assert "Command: `python benchmarks/bench_shards.py`" in new

  results.record("bench_shards", output, path=results_copy, command="python benchmarks/bench_shards.py", when=WHEN)
  assert results_copy.read_text() == once  # a second identical call changes nothing


def test_the_last_section_and_a_new_one(results_copy):
  before = sections(results_copy.read_text())
  last = list(before)[-1]
  results.record(last, "x", path=results_copy, when=WHEN)
  results.record(
    "bench_new", [{"n": 1, "docs/s": "28,482"}, {"n": 4, "docs/s": "27,219"}], path=results_copy, when=WHEN
  )
  text = results_copy.read_text()
  after = sections(text)
  assert list(after) == list(before) + ["bench_new"]
  assert all(after[k] == before[k] for k in before if k != last)
  assert after["bench_new"].endswith("| n | docs/s |\n|---|---|\n| 1 | 28,482 |\n| 4 | 27,219 |\n")
  twice = text
  results.record(
    "bench_new", [{"n": 1, "docs/s": "28,482"}, {"n": 4, "docs/s": "27,219"}], path=results_copy, when=WHEN
  )
  assert results_copy.read_text() == twice


def test_bad_section_names_and_empty_rows_are_errors(results_copy):
  with pytest.raises(ValueError, match="'two words'"):
    results.record("two words", "x", path=results_copy)
  with pytest.raises(ValueError, match="no rows"):
    results.record("bench_x", [], path=results_copy)


def test_the_flag_records_what_the_run_printed(results_copy, capsys):
  parser = argparse.ArgumentParser()
  results.add_results_flag(parser)
  assert parser.parse_args([]).results is False
  assert results.record_results("bench_shards", path=results_copy) is None  # no flag: nothing written
  assert results_copy.read_bytes() == results.RESULTS_MD.read_bytes()

  stdout = sys.stdout
  assert parser.parse_args(["--results"]).results is True
  print("throughput 123 docs/s")
  assert results.record_results("bench_shards", path=results_copy) == results_copy
  assert sys.stdout is stdout
  assert "throughput 123 docs/s" in capsys.readouterr().out  # still printed
  assert "```text\nthroughput 123 docs/s\n```" in sections(results_copy.read_text())["bench_shards"]


def test_every_argparse_benchmark_takes_results():
  scripts = sorted(p for p in BENCH.glob("bench_*.py") if "argparse" in p.read_text())
  assert len(scripts) >= 13
  for p in scripts:
    text = p.read_text()
    assert "add_results_flag(" in text and f'record_results("{p.stem}")' in text, p.name
  # bench_shards imports nothing heavy at the top: its --help shows the flag
  out = subprocess.run(
    [sys.executable, str(BENCH / "bench_shards.py"), "--help"], capture_output=True, text=True, check=True
  ).stdout
  assert "--results" in out and "RESULTS.md" in out
