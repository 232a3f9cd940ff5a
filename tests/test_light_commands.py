"""Commands that read files start light: ``refine``, ``score``, ``embed``, ``reference-losses`` with ``--input`` and
``topk`` / ``select`` on their own output directories run where TensorFlow and seqio cannot be imported (GPU images
with jax/flax/transformers and no TF), and ``refine`` with rules imports no JAX either. One subprocess runs them all
on real C4 documents (tiny random Llama for score / reference losses, the real all-MiniLM-L6-v2 for embed) with
``sys.modules[name] = None`` for the TF packages, and checks after each command that none of them got in."""

import gzip
import json
import os
import subprocess
import sys

from test_askllm_job import write_tiny_llama

SCRIPT = r"""
import json, sys
BLOCKED = ("tensorflow", "seqio", "tensorflow_datasets", "tensorflow_text")
for name in BLOCKED:
  sys.modules[name] = None  # any import of them (or of a module that imports them) fails
from tokensift.cli import main

def run(*argv, jax_allowed=True):
  rc = main(list(argv))
  loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED and sys.modules[n] is not None)
  print(json.dumps({"command": argv[0], "rc": rc, "tf_loaded": loaded, "jax": "jax" in sys.modules}), flush=True)
  assert rc == 0 and not loaded, (argv[0], rc, loaded)
  assert jax_allowed or "jax" not in sys.modules, argv[0]

inp, model, out = sys.argv[1:4]
run("refine", "--input", inp, "--id_field", "url", "--out", out + "/refine", "--no_progress", jax_allowed=False)
run("score", "--input", inp, "--id_field", "url", "--model", model, "--out", out + "/score", "--max_length", "160",
    "--min_bucket", "32", "--no_progress", "--compilation_cache", "none")
run("topk", out + "/score", "--rates", "50")
run("embed", "--input", inp, "--id_field", "url", "--out", out + "/embed", "--max_length", "32", "--no_progress")
run("select", out + "/embed", "--out", out + "/select", "--rates", "50", "--no_progress")
run("reference-losses", "--input", inp, "--id_field", "url", "--model", model, "--out", out + "/ref",
    "--max_length", "48", "--tokens_per_batch", "256", "--no_progress")
"""


def test_file_commands_run_without_tensorflow_or_seqio(tmp_path, data_dir):
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz", "rt") as f:
    rows = [json.loads(next(f)) for _ in range(6)]
  inp = tmp_path / "c4.jsonl"
  inp.write_text("".join(json.dumps({"url": r["url"], "text": r["text"][:600]}) + "\n" for r in rows))
  model = write_tiny_llama(tmp_path / "tiny-llama")
  out = tmp_path / "out"
  proc = subprocess.run(
    [sys.executable, "-c", SCRIPT, str(inp), str(model), str(out)],
    capture_output=True,
    text=True,
    env={**os.environ, "TOKENSIFT_DATA_DIR": str(data_dir)},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  done = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"command"')]
  assert [d["command"] for d in done] == ["refine", "score", "topk", "embed", "select", "reference-losses"]
  assert not done[0]["jax"]  # the rule refiner needs no JAX

  from tokensift.core import jobs

  urls = [r["url"] for r in rows]
  refined = jobs.read_records(out / "refine" / "refine-00000-of-00001.jsonl")
  assert [r["id"] for r in refined] == urls and all(r["raw_text"] for r in refined)
  scores = jobs.read_records(out / "score" / "score-00000-of-00001.jsonl")
  assert [r["id"] for r in scores] == urls and all(0 < r["score"] < 1 for r in scores)
  best = sorted(scores, key=lambda r: (-r["score"], r["id"]))[:3]
  assert (out / "score/selections/askllm_r50.txt").read_text().split() == [r["id"] for r in best]
  from tokensift.selection import embed_job

  ids, emb = embed_job.load_embeddings(out / "embed")
  assert ids == urls and emb.shape == (6, 384)
  assert len((out / "select/density_r50.txt").read_text().split()) == 3
  from tokensift.rho1 import reference_losses as rl

  ref = list(rl.read_reference_losses(out / "ref", "train"))
  assert [r["id"] for r in ref] == urls
  assert all(len(r["targets"]) == len(r["ref_losses"]) <= 48 for r in ref)
