"""Every t5x launch in gin_configs/t5x/ as a user runs it, with real t5x (runs where t5x is importable; CI's t5x
stage installs it with ../shared/t5x/install.sh and fails on any skip):

- the launch matrix: each launch trains 2 steps with ``python -m t5x.train`` on 8 fake CPU devices, then
  ``t5x.eval`` (the task's seqio metrics) and ``t5x.infer`` (score mode; predict mode for the prefix and
  span-corruption tasks) read its checkpoint; one launch resumes to step 4, one trains on the 2-way model-parallel
  preset;
- the seqio cache: ``cache_tasks_main``'s pipeline caches the task, and the launch trains with
  ``USE_CACHED_TASKS=True`` from that cache;
- every gin file of the built wheel parses against t5x's configurables (launches with their entry script, presets
  and model sizes after a launch), and the wheel ships every gin file of the repository.

Shapes are tiny (sequences of 32-64 tokens, batches of 8) so the matrix fits CI's budget; the code path is the
real one (tokensift's t5x model classes, feature converters, partitioner and the tasks' own data).
"""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

t5x = pytest.importorskip("t5x")

REPO = Path(__file__).resolve().parent.parent
DECODER_LEN = ["--gin.SEQ_LEN=32"]
SPAN_LEN = ["--gin.INPUTS_LEN=64", "--gin.TARGETS_LEN=16"]
# launch -> (sequence-length bindings, reference losses it needs, predict-mode infer file and its lengths)
LAUNCHES = {
  "c4_clm": (DECODER_LEN, None, None),
  "c4_slm": (DECODER_LEN, "c4_en_raw_smollm2", None),
  "owm_clm": (DECODER_LEN, None, ("owm_predict", ["--gin.INPUTS_LEN=32", "--gin.TARGETS_LEN=8"])),
  "owm_slm": (DECODER_LEN, "owm_raw_smollm2", None),
  "c4_span_clm": (SPAN_LEN, None, ("c4_span_predict", ["--gin.INPUTS_LEN=32", "--gin.TARGETS_LEN=8"])),
  "c4_span_slm": (SPAN_LEN, "c4_en_raw_span_corruption", None),
}


def _t5x(*args, eight_devices=True):
  """Runs ``python -m t5x.<entry> ...`` from the repository root as the launch files' headers show; returns its
  log (t5x logs to stderr)."""
  env = dict(
    os.environ,
    HF_HUB_OFFLINE="1",
    JAX_PLATFORMS="cpu",
    XLA_FLAGS="--xla_force_host_platform_device_count=8" if eight_devices else "",
  )
  out = subprocess.run(
    [sys.executable, "-m", *args, f"--gin_search_paths={REPO}"],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert out.returncode == 0, f"{args[0]} failed:\n{out.stderr[-4000:]}"
  return out.stderr


def _tiny_llama(seed):
  import jax
  from flax import linen as nn
  from tokensift.models.llama import Llama, LlamaConfig

  model = Llama(
    LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, num_kv_heads=1)
  )
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.ones((1, 8), np.int32))["params"])
  rng = np.random.default_rng(seed)
  return model, jax.tree.map(lambda s: (rng.normal(size=s.shape) * 0.5).astype(np.float32), nn.unbox(shapes))


def _tiny_t5(seed):
  import jax
  from tokensift.models.t5 import T5, T5Config

  module = T5(
    T5Config(vocab_size=32896, d_model=16, num_heads=2, head_dim=8, d_ff=32, num_encoder_layers=1, num_decoder_layers=1)
  )
  return module, module.init(jax.random.PRNGKey(seed), np.ones((1, 8), np.int32), np.ones((1, 8), np.int32))["params"]


@pytest.fixture(scope="module")
def ref_dirs(tmp_path_factory, data_dir):
  """Reference losses of tiny random reference models for the three SLM launches' base tasks (both splits: t5x
  trains on train and evaluates on validation), written by the reference-losses jobs."""
  from tokensift.rho1 import encdec_reference_losses as erl
  from tokensift.rho1 import reference_losses as rl

  out = {}
  for task in ("c4_en_raw_smollm2", "owm_raw_smollm2"):
    model, params = _tiny_llama(seed=3)
    scorer = rl.ReferenceScorer(model, params, batch_tokens=256, max_length=32, length_multiple=32)
    out[task] = tmp_path_factory.mktemp(f"ref_{task}")
    rl.compute_reference_losses(task=task, out_dir=out[task], max_docs=16, max_length=32, scorer=scorer, progress=False)
  module, params = _tiny_t5(seed=1)
  task = "c4_en_raw_span_corruption"
  out[task] = tmp_path_factory.mktemp("ref_span")
  erl.compute_encdec_reference_losses(
    task=task,
    out_dir=out[task],
    scorer=erl.EncDecReferenceScorer(module, params, 64, 16, batch_size=8),
    feature_lengths={"inputs": 64, "targets": 16},
    max_examples=16,
  )
  return out


@pytest.mark.parametrize("launch", sorted(LAUNCHES))
def test_launch_trains_evaluates_and_infers_on_8_devices(launch, tmp_path, ref_dirs):
  lengths, ref_task, predict = LAUNCHES[launch]
  run = tmp_path / "run"
  ref = [f"--gin.REF_DIR='{ref_dirs[ref_task]}'"] if ref_task else []
  train = [
    "t5x.train",
    f"--gin_file=gin_configs/t5x/{launch}.gin",
    f"--gin.MODEL_DIR='{run}'",
    "--gin.BATCH_SIZE=8",
    "--gin.train.eval_period=2",
    "--gin.train.eval_steps=1",
    *lengths,
    *ref,
  ]
  log = _t5x(*train, "--gin.TRAIN_STEPS=2")
  assert "tokensift PjitPartitioner CPU mesh: {'data': 8, 'model': 1}" in log
  assert "Finished." in log and (run / "checkpoint_2").is_dir()
  if ref_task:  # Rho-1's selection at the launch's SLM_RATIO (0.6) of the batch's real target tokens
    fractions = [float(f) for f in re.findall(r"slm/selected_fraction=([0-9.]+)", log)]
    assert fractions and all(abs(f - 0.6) < 0.05 for f in fractions), fractions
  ckpt = f"--gin.CHECKPOINT_PATH='{run / 'checkpoint_2'}'"
  log = _t5x(
    "t5x.eval",
    f"--gin_file=gin_configs/t5x/eval/{launch}.gin",
    ckpt,
    f"--gin.EVAL_OUTPUT_DIR='{tmp_path / 'eval'}'",
    "--gin.utils.DatasetConfig.batch_size=8",
    "--gin.seqio.Evaluator.num_examples=16",
    *lengths,
  )
  assert "/perplexity" in log  # the task's seqio metrics (tasks/metrics.py)
  if "span" in launch:
    assert "token_accuracy" in log
  _t5x(
    "t5x.infer",
    f"--gin_file=gin_configs/t5x/infer/{launch}.gin",
    ckpt,
    f"--gin.INFER_OUTPUT_DIR='{tmp_path / 'score'}'",
    *lengths,
  )
  assert list((tmp_path / "score").glob("*.jsonl*"))
  if predict:
    name, predict_lengths = predict
    _t5x(
      "t5x.infer",
      f"--gin_file=gin_configs/t5x/infer/{name}.gin",
      ckpt,
      f"--gin.INFER_OUTPUT_DIR='{tmp_path / 'predict'}'",
      *predict_lengths,
    )
    assert list((tmp_path / "predict").glob("*.jsonl*"))
  if launch == "c4_span_clm":  # resume: a second train continues from checkpoint_2 to step 4
    log = _t5x(*train, "--gin.TRAIN_STEPS=4")
    assert "checkpoint_2" in log and (run / "checkpoint_4").is_dir()
  if launch == "c4_clm":  # the 2-way model-parallel preset, passed after the launch as its header says
    mp2 = [a for a in train if not a.startswith("--gin.MODEL_DIR")]
    log = _t5x(
      *mp2,
      f"--gin.MODEL_DIR='{tmp_path / 'mp2'}'",
      "--gin_file=gin_configs/partitioning/tpu_model_parallel_2.gin",
      "--gin.TRAIN_STEPS=1",
    )
    assert "tokensift PjitPartitioner CPU mesh: {'data': 4, 'model': 2}" in log
    assert (tmp_path / "mp2" / "checkpoint_1").is_dir()


def test_seqio_cache_then_cached_launch(tmp_path, data_dir):
  """cache_tasks_main's pipeline (Beam, in-process local runner) caches c4_en_raw_smollm2; the C4 CLM launch then
  trains with USE_CACHED_TASKS=True from that cache (t5x's --seqio_additional_cache_dirs)."""
  import apache_beam as beam
  import seqio
  from absl import flags
  from seqio.scripts import cache_tasks_main
  from tokensift.core import beam_util

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  cache = tmp_path / "cache"
  with beam.Pipeline(options=beam_util.pipeline_options("local", 1)) as p:
    cache_tasks_main.run_pipeline(p, ["c4_en_raw_smollm2"], str(cache))
  info = list(cache.rglob("train.tfrecord-*"))
  assert info, sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))[:20]
  run = tmp_path / "run"
  log = _t5x(
    "t5x.train",
    "--gin_file=gin_configs/t5x/c4_clm.gin",
    f"--gin.MODEL_DIR='{run}'",
    *DECODER_LEN,
    "--gin.BATCH_SIZE=8",
    "--gin.TRAIN_STEPS=2",
    "--gin.train.eval_period=2",
    "--gin.train.eval_steps=1",
    "--gin.USE_CACHED_TASKS=True",
    f"--seqio_additional_cache_dirs={cache}",
  )
  # with use_cached=True seqio reads only the cache (an uncached task raises), so the checkpoint is the proof
  assert (run / "checkpoint_2").is_dir() and "Finished." in log
  seqio.set_global_cache_dirs([])


def _wheel_gin_files(tmp_path) -> Path:
  """Builds the wheel (no dependencies) and extracts its gin files; returns the extracted gin root."""
  subprocess.run(
    [
      sys.executable,
      "-m",
      "pip",
      "wheel",
      "-q",
      "--no-deps",
      "--no-build-isolation",
      "-w",
      str(tmp_path / "wheel"),
      str(REPO),
    ],
    check=True,
    capture_output=True,
    timeout=600,
  )
  (wheel,) = (tmp_path / "wheel").glob("tokensift-*.whl")
  with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("tokensift/gin_configs/") and n.endswith(".gin")]
    z.extractall(tmp_path / "site", members=names)
  return tmp_path / "site" / "tokensift" / "gin_configs"


def test_every_gin_file_in_the_wheel_parses_against_t5x(tmp_path):
  """Each launch parses with its entry script as ``__main__`` (as ``python -m t5x.train`` runs it); partitioning
  presets and model sizes parse after a launch, as their headers say to pass them; embedded-trainer and pipeline
  files parse against tokensift's own configurables. Unknown configurables or macros fail the parse."""
  import gin
  import t5x.eval as t5x_eval
  import t5x.infer as t5x_infer
  import t5x.train as t5x_train

  gin_root = _wheel_gin_files(tmp_path)
  shipped = sorted(str(p.relative_to(gin_root)) for p in gin_root.rglob("*.gin"))
  assert shipped == sorted(str(p.relative_to(REPO / "gin_configs")) for p in (REPO / "gin_configs").rglob("*.gin"))
  # 'include gin_configs/...' lines resolve against the folder holding gin_configs/; t5x's own run files
  # ('t5x/configs/runs/...') against the folder holding the t5x package
  search = [str(gin_root.parent), str(Path(t5x.__file__).resolve().parent.parent)]
  entry = {"t5x/eval": t5x_eval, "t5x/infer": t5x_infer, "t5x": t5x_train}

  def parse(files, main_module=None):
    saved = sys.modules["__main__"]
    if main_module is not None:
      sys.modules["__main__"] = main_module
    gin.clear_config(clear_constants=True)
    try:
      for path in search:
        gin.add_config_file_search_path(path)
      gin.parse_config_files_and_bindings([str(f) for f in files], [], skip_unknown=False, finalize_config=False)
    except Exception as e:  # noqa: BLE001  the file names in the failure, then the error
      pytest.fail(f"{[str(Path(f).relative_to(gin_root)) for f in files]}: {type(e).__name__}: {e}")
    finally:
      sys.modules["__main__"] = saved
      gin.clear_config(clear_constants=True)

  launches = sorted((gin_root / "t5x").rglob("*.gin"))
  parsed = 0
  for f in launches:
    folder = str(f.parent.relative_to(gin_root))
    if f.name in ("decoder_only.gin", "encoder_decoder.gin"):  # wiring included by every launch: parsed there
      continue
    parse([f], entry[folder])
    parsed += 1
  base = gin_root / "t5x" / "c4_clm.gin"
  for f in sorted((gin_root / "partitioning").glob("*.gin")) + sorted((gin_root / "models").glob("llama*.gin")):
    parse([base, f], t5x_train)
    parsed += 1
  for f in sorted((gin_root / "models").glob("t5*.gin")):
    parse([gin_root / "t5x" / "c4_span_clm.gin", f], t5x_train)
    parsed += 1
  for f in sorted((gin_root / "local").glob("*.gin")) + sorted((gin_root / "pipeline").glob("*.gin")):
    parse([f])
    parsed += 1
  assert parsed == len(shipped) - 2
