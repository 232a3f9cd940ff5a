"""The embedded trainer: stopped and resumed runs continue the same loss curve; SLM on the OpenWebMath sample
with SmolLM2-135M reference losses runs end to end through the CLI (reference-losses, train, token-view);
optimizers and schedules; config errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from tokensift import cli
from tokensift.rho1 import reference_losses as rl
from tokensift.models.llama import Llama, LlamaConfig
from tokensift.trainer import inputs, loop, optim
from tokensift.trainer.config import LossConfig, OptimizerConfig, TrainConfig
from tokensift.trainer.metrics import read_metrics

from test_feature_converters import tiny_llama

TASK = "owm_raw_smollm2"
# The resume tests train on OpenWebMath in the 26-piece test SentencePiece model: identical mechanics, steps
# ~100x cheaper than with a 49152-token softmax (the SmolLM2 vocabulary is exercised end to end below).
TINY_TASK, TINY_VOCAB = "owm_raw_tiny26", 26


def register_tiny_task() -> str:
  from tokensift.tasks import registry, sources, vocabularies

  return registry.add_task(
    TINY_TASK, sources.owm_source(), vocabularies.SentencePieceFileVocabulary(vocabularies.TINY_SPM)
  ).name


@pytest.fixture(scope="module")
def ref_task(tmp_path_factory, data_dir):
  register_tiny_task()
  model, params = tiny_llama(vocab=TINY_VOCAB, seed=2)
  scorer = rl.ReferenceScorer(model, params, batch_tokens=512, max_length=48, length_multiple=48)
  out = tmp_path_factory.mktemp("ref")
  rl.compute_reference_losses(task=TINY_TASK, out_dir=out, max_docs=12, max_length=48, scorer=scorer, progress=False)
  rl.register_reference_loss_task(TINY_TASK, str(out), name="owm_ref_trainer_test")
  return "owm_ref_trainer_test", str(out)


def _network():
  return Llama(
    LlamaConfig(vocab_size=TINY_VOCAB, hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, num_kv_heads=1)
  )


@pytest.fixture(scope="module")
def xla_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("xla_cache"))


def _config(model_dir, task, cache=None, **kw):
  base = dict(
    model_dir=str(model_dir),
    task=task,
    compilation_cache_dir=cache,
    feature_lengths={"targets": 64, "ref_losses": 64},
    batch_size=8,
    train_steps=8,
    eval_batches=1,
    checkpoint_every=2,
    log_every=1,
    shuffle_buffer=16,
    progress=False,
    loss=LossConfig(kind="slm", slm_ratio=0.6),
    optimizer=OptimizerConfig(learning_rate=1e-2, warmup_steps=2, schedule="cosine"),
  )
  base.update(kw)
  return TrainConfig(**base)


_KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from test_trainer import _config, _network, register_tiny_task
from tokensift.rho1 import reference_losses as rl
from tokensift.trainer import loop
rl.register_reference_loss_task(register_tiny_task(), {ref!r}, name="owm_ref_trainer_test")
loop.train(_config({run!r}, "owm_ref_trainer_test", {cache!r}), _network())
"""


def _sigkill_after_checkpoint(run: Path, code: str, step: int) -> None:
  proc = subprocess.Popen(
    [sys.executable, "-c", code], env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
  )
  deadline = time.time() + 600
  while not (run / "checkpoints" / str(step)).is_dir():
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    assert time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL


def _tensorboard_scalars(logdir: Path) -> dict[str, dict[int, float]]:
  """``{tag: {step: value}}`` read back from the TensorBoard event files under ``logdir`` (last write wins)."""
  import tensorflow as tf

  out: dict[str, dict[int, float]] = {}
  for path in sorted(logdir.glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        out.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
  return out


def test_stopped_or_killed_and_resumed_runs_continue_the_same_loss_curve(tmp_path, ref_task, xla_cache):
  """Three runs of the same 8-step config: uninterrupted; stopped after step 3 (last checkpoint: 2) and resumed;
  killed with SIGKILL right after its step-4 checkpoint and resumed. All log exactly the same losses."""
  assert jax.device_count() == 8  # batch sharded over 8 fake devices
  name, ref_dir = ref_task
  straight = loop.train(_config(tmp_path / "a", name, xla_cache), _network())
  assert straight.step == 8 and straight.resumed_from is None
  cfg = _config(tmp_path / "b", name, xla_cache)  # the persistent compilation cache spares recompiling
  assert loop.train(cfg, _network(), stop_at=3).step == 3
  resumed = loop.train(cfg, _network())
  assert resumed.resumed_from == 2 and resumed.step == 8
  code = _KILLED_RUN.format(tests=str(Path(__file__).parent), ref=ref_dir, run=str(tmp_path / "c"), cache=xla_cache)
  _sigkill_after_checkpoint(tmp_path / "c", code, 4)
  assert max(r["step"] for r in read_metrics(tmp_path / "c")) < 8  # it really died mid-run
  killed = loop.train(_config(tmp_path / "c", name, xla_cache), _network())
  assert killed.resumed_from in (4, 6) and killed.step == 8
  # both resumes restored the input position from the checkpoint (no replay of earlier batches)
  assert straight.input_resume is None and resumed.input_resume == killed.input_resume == "restored"

  a = read_metrics(tmp_path / "a")
  assert [r["step"] for r in a] == list(range(1, 9))
  for other in ("b", "c"):
    for ra, rb in zip(a, read_metrics(tmp_path / other), strict=True):
      assert ra == rb, f"run {other}: step {ra['step']} differs after resume"
    assert read_metrics(tmp_path / other, "eval") == read_metrics(tmp_path / "a", "eval")
  losses = [r["loss"] for r in a]
  assert losses[-1] < losses[0]  # it learns
  assert all(abs(r["selected_fraction"] - 0.6) < 0.01 for r in a)
  assert all(r["excess_selected"] > r["excess_unselected"] for r in a)
  assert read_metrics(tmp_path / "a", "eval")[-1]["step"] == 8
  # TensorBoard events (clu.metric_writers): every logged train step's loss, and the eval loss at step 8
  events = _tensorboard_scalars(tmp_path / "a" / "train")
  assert sorted(events["loss"]) == [r["step"] for r in a]
  np.testing.assert_allclose([events["loss"][r["step"]] for r in a], [r["loss"] for r in a], rtol=1e-6)
  assert 8 in _tensorboard_scalars(tmp_path / "a" / "eval")["loss"]
  assert any(p.name.startswith("jit__train_step") for p in Path(xla_cache).iterdir())
  with pytest.raises(ValueError, match="data order"):
    loop.train(_config(tmp_path / "b", name, seed=1), _network())


def _counted_examples(counters: list):
  """An examples_fn: the materialized examples, counting every example the pipeline pulls from them."""
  import tensorflow as tf

  def fn(config):
    count = tf.Variable(0, dtype=tf.int64)
    counters.append(count)
    ds = tf.data.Dataset.load(str(inputs.materialize_examples(config, inputs.get_task(config.task)) / "data"))

    def counted(ex):
      with tf.control_dependencies([count.assign_add(1)]):
        return {k: tf.identity(v) for k, v in ex.items()}

    opts = tf.data.Options()  # the counter is state outside tf.data: checkpoints leave it out (with a warning)
    opts.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.WARN
    return ds.map(counted).with_options(opts)

  return fn


def _same(a, b) -> bool:
  return len(a) == len(b) and all(
    x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b)
  )


def test_input_position_restores_in_constant_time(tmp_path, ref_task):
  """The input position after k = 300 batches (2,400+ examples read) comes back from a checkpoint of the
  iterator; the restored input reads only what its next batches need (bounded by the shuffle buffer and a few
  batches, whatever k is) and yields the same batches as the uninterrupted one."""
  name, _ = ref_task
  cfg = _config(tmp_path, name)
  counters: list = []
  run = inputs.TrainInput(cfg, False, _counted_examples(counters))
  assert run.checkpointable, run.why_not
  k = 300
  for _ in range(k):
    next(run)
  pulled = int(counters[-1].numpy())
  path = run.checkpoint.write(str(tmp_path / "input" / "iterator"))
  size = sum(f.stat().st_size for f in (tmp_path / "input").iterdir())
  expected = [next(run) for _ in range(40)]
  del run
  resumed = inputs.TrainInput(cfg, False, _counted_examples(counters))
  resumed.checkpoint.read(path).assert_consumed()
  got = [next(resumed) for _ in range(3)]
  reads = int(counters[-1].numpy())
  got += [next(resumed) for _ in range(37)]
  assert _same(got, expected)
  assert pulled >= k * cfg.batch_size  # a replay reads at least one example per packed row of the k batches
  # Rows hold one document each here (OWM documents are longer than 64 tokens), so 3 batches + 2 prefetched + 1
  # in flight need at most 6 * batch_size examples beyond the restored buffers (measured: 0, the packer's
  # window and the shuffle buffer come back with the checkpoint).
  assert max(int(b["decoder_segment_ids"].max()) for b in expected) == 1
  assert reads <= cfg.shuffle_buffer + 6 * cfg.batch_size, (reads, pulled)
  # For its 40 batches the restored input reads about 40 batches' worth of examples (a replay: >= (k + 40) * 8)
  assert reads < int(counters[-1].numpy()) <= (40 + 6) * cfg.batch_size + cfg.shuffle_buffer
  assert size < 1_000_000, size  # the shuffle buffer, the packer's window and 2 prefetched batches


def test_uncheckpointable_input_replays_the_same_batches(tmp_path, ref_task):
  """cache_examples=False streams the task's Python-generator source, which tf.data cannot checkpoint: the input
  says why and a resume replays; it yields the same batches as the materialized (checkpointed) input."""
  name, _ = ref_task
  cached = inputs.TrainInput(_config(tmp_path, name), False)
  streamed = inputs.TrainInput(_config(tmp_path, name, cache_examples=False), False)
  assert cached.checkpointable and not streamed.checkpointable
  assert "PyFunc" in streamed.why_not or "stateful" in streamed.why_not, streamed.why_not
  first = [next(cached) for _ in range(6)]
  assert _same([next(streamed) for _ in range(6)], first)
  streamed.replay(4)
  assert _same([next(streamed) for _ in range(2)], first[4:])


def test_slm_end_to_end_with_smollm2_reference_through_the_cli(tmp_path, data_dir):
  """Reference losses of the real SmolLM2-135M (same tokenizer) over a handful of OpenWebMath documents,
  then a tiny decoder trained on them with SLM, then the token-selection view."""
  ref = tmp_path / "ref"
  assert (
    cli.main(
      [
        "reference-losses",
        "--task",
        TASK,
        "--out",
        str(ref),
        "--max_docs",
        "4",
        "--max_length",
        "32",
        "--tokens_per_batch",
        "128",
        "--no_progress",
      ]
    )
    == 0
  )
  for split in ("train", "validation"):
    stats = json.loads((ref / f"ref_losses_{split}-00000-of-00001.done").read_text())["stats"]
    assert stats["records"] == 4
    # A real LM predicts math web text far better than chance (ln 49152 = 10.8 nats/token).
    assert 0.5 < stats["mean_ref_loss"] < 6.0, stats
  run = tmp_path / "run"
  gin = [
    "--gin_file",
    "gin_configs/local/owm_slm_tiny.gin",
    "--model_dir",
    str(run),
    "--ref_dir",
    str(ref),
    "--gin",
    "TRAIN_STEPS = 3",
    "--gin",
    "SEQ_LEN = 32",
    "--gin",
    "tc.TrainConfig.eval_batches = 1",
    "--gin",
    "tc.TrainConfig.log_every = 1",
    "--gin",
    "tc.TrainConfig.progress = False",
  ]
  assert cli.main(["train", *gin]) == 0
  records = read_metrics(run)
  assert [r["step"] for r in records] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) and abs(r["selected_fraction"] - 0.6) < 0.02 for r in records)
  assert read_metrics(run, "eval")[-1]["step"] == 3
  assert (run / "checkpoints" / "3").is_dir()
  page = tmp_path / "view.html"
  assert cli.main(["token-view", *gin, "--out", str(page), "--doc", "1"]) == 0
  text = page.read_text()
  assert text.count('class="sel"') > 0 and text.count('class="uns"') > 0
  assert "reference loss" in text and "of 32 tokens selected" in text


def test_schedules_and_optimizers():
  cos = optim.make_schedule(
    OptimizerConfig(learning_rate=1.0, warmup_steps=10, schedule="cosine", end_fraction=0.1), 110
  )
  assert float(cos(0)) == 0.0 and abs(float(cos(10)) - 1.0) < 1e-6 and abs(float(cos(110)) - 0.1) < 1e-6
  assert float(cos(5)) == pytest.approx(0.5)
  lin = optim.make_schedule(OptimizerConfig(learning_rate=2.0, schedule="linear", end_fraction=0.0), 100)
  assert float(lin(50)) == pytest.approx(1.0)
  rsqrt = optim.make_schedule(OptimizerConfig(learning_rate=1.0, schedule="rsqrt", warmup_steps=4), 100)
  assert float(rsqrt(4)) == pytest.approx(1.0) and float(rsqrt(16)) == pytest.approx(0.5)
  assert float(optim.make_schedule(OptimizerConfig(schedule="constant", learning_rate=0.3), 10)(7)) == pytest.approx(
    0.3
  )
  params = {"w": np.ones((4, 3), np.float32), "b": np.ones((3,), np.float32)}
  for name in ("adamw", "adafactor"):
    tx, _ = optim.make_optimizer(
      OptimizerConfig(name=name, learning_rate=0.05, schedule="constant", weight_decay=0.1), 50
    )
    state, p = tx.init(params), params
    loss = lambda q: sum(jax.numpy.sum(x**2) for x in jax.tree.leaves(q))

    @jax.jit
    def step(p, state):
      updates, state = tx.update(jax.grad(loss)(p), state, p)
      return optax.apply_updates(p, updates), state

    for _ in range(20):
      p, state = step(p, state)
    assert float(loss(p)) < 0.8 * float(loss(params)), name


def test_config_errors(tmp_path):
  with pytest.raises(ValueError, match="kind='mse'"):
    LossConfig(kind="mse")
  with pytest.raises(ValueError, match="slm_ratio=0.0"):
    LossConfig(slm_ratio=0.0)
  with pytest.raises(ValueError, match="name='sgd'"):
    OptimizerConfig(name="sgd")
  with pytest.raises(ValueError, match="model_dir is empty"):
    TrainConfig(model_dir="", task="x", feature_lengths={"targets": 8})
  with pytest.raises(ValueError, match="needs a 'targets' length"):
    TrainConfig(model_dir="d", task="x", feature_lengths={"inputs": 8})
  with pytest.raises(ValueError, match="batch_size=6 is not divisible"):
    loop.train(_config(tmp_path, TASK, batch_size=6), _network())
  with pytest.raises(ValueError, match="unknown seqio task"):
    loop.train(_config(tmp_path, "no_such_task"), _network())
  assert cli.main(["train", "--gin_file", "gin_configs/local/missing.gin"]) == 2
