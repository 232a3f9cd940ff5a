"""The reference-loss job: aligned per-token losses equal to the model's own, independent of batching and
padding; sharded and resumable (interrupted + rerun is byte-identical); the seqio variant; clear errors.
(The real SmolLM2-135M reference runs end to end through `tokensift reference-losses` in test_trainer.py.)"""

import numpy as np
import pytest
import seqio

from tokensift.core import jobs, paths
from tokensift.rho1 import reference_losses as rl
from tokensift.rho1.selective_loss import token_cross_entropy

from test_feature_converters import tiny_llama

TASK = "owm_raw_smollm2"


@pytest.fixture(scope="module")
def scorer():
  model, params = tiny_llama(seed=1)
  return rl.ReferenceScorer(model, params, batch_tokens=256, max_length=48, length_multiple=16)


def _task_tokens(split, n, max_length=48):
  ds = seqio.get_mixture_or_task(TASK).get_dataset(sequence_length=None, split=split, shuffle=False)
  return [(ex["id"].decode(), ex["targets"][:max_length].tolist()) for ex in ds.take(n).as_numpy_iterator()]


def test_scorer_is_independent_of_batching_and_padding(scorer):
  import jax

  seqs = [[5, 6, 7], list(range(1, 40)), [9] * 17, list(range(100, 148))]
  together = scorer(seqs)
  alone = [scorer([s])[0] for s in seqs]
  for s, a, b in zip(seqs, together, alone):
    assert a.shape == (len(s),) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # ... and equal to the plain forward pass of the model on the unpadded sequence.
  t = np.asarray([seqs[1]], np.int32)
  ce = token_cross_entropy(scorer.module.apply({"params": scorer.params}, rl.shift_right(t), t), t)[0]
  np.testing.assert_allclose(together[1], np.asarray(jax.device_get(ce))[0], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="exceeds max_length=48"):
    scorer([list(range(1, 60))])


def test_job_writes_aligned_records_for_each_split(tmp_path, scorer):
  res = rl.compute_reference_losses(
    task=TASK,
    out_dir=tmp_path,
    splits=("train", "validation"),
    max_docs=5,
    max_length=48,
    scorer=scorer,
    progress=False,
    piece_size=2,
  )
  assert set(res) == {"train", "validation"}
  for split in ("train", "validation"):
    records = list(rl.read_reference_losses(tmp_path, split))
    want = _task_tokens(split, 5)
    assert [(r["id"], r["targets"]) for r in records] == want  # same documents, same order, same tokens
    for r in records:
      assert len(r["ref_losses"]) == len(r["targets"]) == min(48, len(r["targets"]))
      assert all(x >= 0 for x in r["ref_losses"])
    direct = scorer([r["targets"] for r in records])
    for r, d in zip(records, direct):
      np.testing.assert_array_equal(np.asarray(r["ref_losses"], np.float32), d)
    assert res[split].stats["tokens"] == sum(len(r["targets"]) for r in records)
  assert jobs.shard_files(tmp_path, "ref_losses_train")[0].name == "ref_losses_train-00000-of-00001.parquet"


def test_interrupted_job_reruns_byte_identical(tmp_path, scorer):
  kwargs = dict(task=TASK, splits=("validation",), max_docs=6, max_length=48, progress=False, piece_size=2)
  rl.compute_reference_losses(out_dir=tmp_path / "straight", scorer=scorer, **kwargs)

  class Dies:
    """The scorer, killed while scoring the third piece."""

    def __init__(self):
      self.calls = 0
      self.bos_id, self.max_length, self.module = scorer.bos_id, scorer.max_length, scorer.module

    def __call__(self, seqs):
      self.calls += 1
      if self.calls == 3:
        raise KeyboardInterrupt("killed")
      return scorer(seqs)

  with pytest.raises(KeyboardInterrupt):
    rl.compute_reference_losses(out_dir=tmp_path / "killed", scorer=Dies(), **kwargs)
  assert not jobs.shard_files(tmp_path / "killed", "ref_losses_validation")
  res = rl.compute_reference_losses(out_dir=tmp_path / "killed", scorer=scorer, **kwargs)
  assert res["validation"].resumed_pieces == 2
  a = (tmp_path / "straight" / "ref_losses_validation-00000-of-00001.parquet").read_bytes()
  b = (tmp_path / "killed" / "ref_losses_validation-00000-of-00001.parquet").read_bytes()
  assert a == b


def test_shards_partition_documents(tmp_path, scorer):
  """Shard i of 2 reads its own byte range of the OWM file (seqio shard_info through the document layer); the
  two shards' records are together the whole split's, each once."""
  recs = []
  for i in range(2):
    rl.compute_reference_losses(
      task=TASK,
      out_dir=tmp_path,
      splits=("validation",),
      max_length=48,
      scorer=scorer,
      shard=jobs.ShardSpec(i, 2),
      progress=False,
    )
  files = jobs.shard_files(tmp_path, "ref_losses_validation")
  assert len(files) == 2
  for f in files:
    recs += [(r["id"], r["targets"]) for r in jobs.read_records(f)]
  want = _task_tokens("validation", 10_000)
  assert sorted(recs) == sorted(want) and len(recs) == len({i for i, _ in recs})


def test_variant_task_and_errors(tmp_path, scorer):
  with pytest.raises(ValueError, match="vocab_size=1000"):
    small, small_params = tiny_llama(vocab=1000)
    rl.compute_reference_losses(
      task=TASK,
      out_dir=tmp_path / "x",
      splits=("validation",),
      max_docs=1,
      max_length=8,
      scorer=rl.ReferenceScorer(small, small_params, max_length=8),
      progress=False,
    )
  with pytest.raises(paths.ConfigError, match="register_reference_loss_task needs ref_dir"):
    rl.register_reference_loss_task(TASK, "")
  name = rl.register_reference_loss_task(TASK, str(tmp_path / "empty"), name="owm_ref_empty_test")
  task = seqio.get_mixture_or_task(name)
  assert set(task.output_features) == {"targets", "ref_losses"}
  assert task.output_features["targets"].vocabulary.vocab_size == 49152
  with pytest.raises(FileNotFoundError, match="tokensift reference-losses"):
    task.get_dataset(sequence_length={"targets": 8, "ref_losses": 8}, split="train")
  rl.compute_reference_losses(
    task=TASK, out_dir=tmp_path / "ok", splits=("validation",), max_docs=3, max_length=48, scorer=scorer, progress=False
  )
  name = rl.register_reference_loss_task(TASK, str(tmp_path / "ok"), name="owm_ref_ok_test")
  exs = list(
    seqio.get_mixture_or_task(name)
    .get_dataset(sequence_length={"targets": 32, "ref_losses": 32}, split="validation", shuffle=False)
    .as_numpy_iterator()
  )
  assert len(exs) == 3 and all(len(e["targets"]) == len(e["ref_losses"]) == 32 for e in exs)
  with pytest.raises(ValueError, match="config"):  # same dir, different settings: refused, never mixed
    rl.compute_reference_losses(
      task=TASK,
      out_dir=tmp_path / "ok",
      splits=("validation",),
      max_docs=3,
      max_length=40,
      scorer=scorer,
      progress=False,
    )


def test_files_tokenize_as_the_task_and_score_the_same(tmp_path, scorer, data_dir):
  """``--input`` files: the same documents as the task's validation split, tokenized with SmolLM2's tokenizer
  without seqio, give the task route's targets and losses (ids from the url field, as the OWM task's)."""
  import json
  from tokensift.core import docs, hf_tokenizer

  want = _task_tokens("validation", 4)
  by_url = {json.loads(line)["url"]: line for line in (data_dir / "openwebmath/owm-sample-878.jsonl").open()}
  src = tmp_path / "owm4.jsonl"
  src.write_text("".join(by_url[i] for i, _ in want))
  inp = docs.DocumentInput(files=(str(src),), id_field="url").validate()
  tok = hf_tokenizer.tokenizer_files(paths.smollm2_gguf())
  res = rl.compute_reference_losses(
    inp=inp,
    tokenizer=tok,
    out_dir=tmp_path / "files",
    splits=("validation",),
    max_length=48,
    scorer=scorer,
    progress=False,
  )
  got = list(rl.read_reference_losses(tmp_path / "files", "validation"))
  assert [(r["id"], r["targets"]) for r in got] == want
  rl.compute_reference_losses(
    task=TASK,
    out_dir=tmp_path / "task",
    splits=("validation",),
    max_docs=4,
    max_length=48,
    scorer=scorer,
    progress=False,
  )
  for a, b in zip(got, rl.read_reference_losses(tmp_path / "task", "validation")):
    np.testing.assert_array_equal(a["ref_losses"], b["ref_losses"])
  assert res["validation"].stats["tokens"] == sum(len(t) for _, t in want)
  with pytest.raises(ValueError, match="one split"):
    rl.compute_reference_losses(
      inp=inp, tokenizer=tok, out_dir=tmp_path / "x", splits=("train", "validation"), scorer=scorer, progress=False
    )
  with pytest.raises(ValueError, match="exactly one of task= and inp="):
    rl.compute_reference_losses(out_dir=tmp_path / "x", scorer=scorer)
