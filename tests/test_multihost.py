"""Multi-host JAX on one machine: 2 processes (coordinator on 127.0.0.1, gloo CPU collectives, 2 fake CPU devices
each) run `tokensift score` and `tokensift embed`; each reads its own split, writes its shard + marker, process 0
writes the job's hosts file; the records equal a 1-process run's."""

import gzip
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tokensift.core import jobs
from test_askllm_job import write_tiny_llama

N_DOCS = 24


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return dict(
    os.environ,
    XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    JAX_PLATFORMS="cpu",
    JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
    TF_CPP_MIN_LOG_LEVEL="2",
    PYTHONUNBUFFERED="1",
  )


def _run(cmd_args, processes: int, timeout=240):
  base = [sys.executable, "-m", "tokensift.cli", *map(str, cmd_args), "--no_progress"]
  if processes == 1:
    out = subprocess.run(base, env=_env(2), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return
  port = _free_port()
  procs = [
    subprocess.Popen(
      base
      + [
        "--distributed",
        "--coordinator_address",
        f"127.0.0.1:{port}",
        "--num_processes",
        str(processes),
        "--process_id",
        str(i),
      ],
      env=_env(2),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(processes)
  ]
  try:
    outs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (o, e) in zip(procs, outs):
    assert p.returncode == 0, e[-3000:]
  return outs


@pytest.fixture(scope="module")
def inputs(data_dir, tmp_path_factory):
  path = tmp_path_factory.mktemp("mh") / "docs.jsonl"
  with gzip.open(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
    rows = [json.loads(next(f)) for _ in range(N_DOCS)]
  path.write_text("".join(json.dumps({"id": f"d{k:02d}", "text": r["text"][:600]}) + "\n" for k, r in enumerate(rows)))
  return path


def _records(out, name):
  return [r for f in jobs.finished_files(out, name) for r in jobs.read_records(f)]


def _check_hosts(out, name, outs):
  files = sorted(p.name for p in out.glob(f"{name}-*-of-*.done"))
  assert files == [f"{name}-00000-of-00002.done", f"{name}-00001-of-00002.done"]
  info = json.loads((out / f"{name}.hosts.json").read_text())
  assert info["processes"] == 2 and info["stats"]["shards"] == 2
  assert "all 2 hosts finished" in outs[0][0] and "all 2 hosts finished" not in outs[1][0]
  # each host read only its own split: the two shards hold disjoint, non-empty halves
  per = [jobs.read_records(out / f"{name}-0000{i}-of-00002.{'jsonl'}") for i in range(2)]
  assert all(per) and not {r["id"] for r in per[0]} & {r["id"] for r in per[1]}
  return info


def test_score_two_processes_equal_one(inputs, tmp_path):
  model = write_tiny_llama(tmp_path / "tiny-llama")
  args = [
    "score",
    "--input",
    inputs,
    "--model",
    model,
    "--max_length",
    "160",
    "--min_bucket",
    "32",
    "--max_batch",
    "4",
    "--compilation_cache",
    "none",
    "--format",
    "jsonl",
  ]
  _run([*args, "--out", tmp_path / "one"], 1)
  outs = _run([*args, "--out", tmp_path / "two"], 2)
  info = _check_hosts(tmp_path / "two", "score", outs)
  one, two = _records(tmp_path / "one", "score"), _records(tmp_path / "two", "score")
  assert [r["id"] for r in one] == [r["id"] for r in two] == [f"d{k:02d}" for k in range(N_DOCS)]
  assert [r["tokens"] for r in one] == [r["tokens"] for r in two]
  np.testing.assert_allclose([r["logp_yes"] for r in one], [r["logp_yes"] for r in two], rtol=1e-5, atol=1e-6)
  assert info["stats"]["records"] == N_DOCS


def test_embed_two_processes_equal_one(inputs, tmp_path):
  args = ["embed", "--input", inputs, "--max_length", "32", "--format", "jsonl"]
  _run([*args, "--out", tmp_path / "one"], 1)
  outs = _run([*args, "--out", tmp_path / "two"], 2)
  _check_hosts(tmp_path / "two", "embed", outs)
  one, two = _records(tmp_path / "one", "embed"), _records(tmp_path / "two", "embed")
  assert [r["id"] for r in one] == [r["id"] for r in two] and len(one) == N_DOCS
  np.testing.assert_allclose(
    np.array([r["embedding"] for r in one]), np.array([r["embedding"] for r in two]), rtol=1e-5, atol=1e-6
  )


def test_refine_with_a_model_two_processes_equal_one(inputs, tmp_path):
  """The refining model's generation (ProX programs from a tiny random Llama with SmolLM2's tokenizer and chat
  template) as a multi-host job: 2 processes write the 1-process records."""
  model = write_tiny_llama(tmp_path / "tiny-refiner", seed=3)
  args = [
    "refine",
    "--input",
    inputs,
    "--programmer",
    model,
    "--max_new_tokens",
    "6",
    "--doc_max_new_tokens",
    "4",
    "--chunk_tokens",
    "96",
    "--doc_prompt_tokens",
    "160",
    "--max_batch",
    "4",
  ]
  _run([*args, "--out", tmp_path / "one"], 1)
  outs = _run([*args, "--out", tmp_path / "two"], 2)
  _check_hosts(tmp_path / "two", "refine", outs)
  one, two = _records(tmp_path / "one", "refine"), _records(tmp_path / "two", "refine")
  assert [r["id"] for r in one] == [r["id"] for r in two] and len(one) == N_DOCS
  assert [(r["doc_program"], r["chunk_program"], r["text"]) for r in one] == [
    (r["doc_program"], r["chunk_program"], r["text"]) for r in two
  ]


def test_reference_losses_two_processes_equal_one(tmp_path):
  """Rho-1 reference losses (a tiny random Llama with SmolLM2's tokenizer) over the OpenWebMath validation split
  as a multi-host job: 2 processes write the 1-process records."""
  model = write_tiny_llama(tmp_path / "tiny-ref", seed=5)
  args = [
    "reference-losses",
    "--task",
    "owm_raw_smollm2",
    "--split",
    "validation",
    "--model",
    model,
    "--max_length",
    "48",
    "--tokens_per_batch",
    "1024",
  ]
  _run([*args, "--out", tmp_path / "one"], 1)
  _run([*args, "--out", tmp_path / "two"], 2)
  name = "ref_losses_validation"
  assert json.loads((tmp_path / "two" / f"{name}.hosts.json").read_text())["processes"] == 2
  one, two = _records(tmp_path / "one", name), _records(tmp_path / "two", name)
  assert len(one) > 10 and sorted(r["id"] for r in one) == sorted(r["id"] for r in two)
  by_id = {r["id"]: r for r in two}
  for r in one:
    assert list(r["targets"]) == list(by_id[r["id"]]["targets"])
    np.testing.assert_allclose(r["ref_losses"], by_id[r["id"]]["ref_losses"], rtol=1e-5, atol=1e-5)
