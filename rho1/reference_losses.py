"""Reference token losses for Rho-1 SLM, computed offline once and stored aligned with the training tokens.

L_ref(x_i) = -log P_ref(x_i | x_<i) (DESIGN §6). The reference model sees exactly the decoder inputs the trained
model sees under seqio's LM feature converter: the targets shifted right with ``bos_id`` (0) at the start of each
document. Packed training segments restart positions and attend within the segment only, so a document's
offline losses are also its losses inside any packed batch.

Job (``tokensift reference-losses``): a seqio task's tokenized documents, split by split, through
``tokensift.core.jobs.run_sharded`` (sharded, resumable, byte-identical after SIGKILL + rerun). Output files
``{out_dir}/ref_losses_{split}-{i:05d}-of-{n:05d}.parquet`` with records ``{id, targets: [int], ref_losses:
[float]}`` (one loss per target token, documents truncated to ``max_length`` tokens).

Files (``tokensift reference-losses --input``, ``compute_reference_losses(inp=...)``): documents read through the
document layer and tokenized with the reference model's own tokenizer as the ``_smollm2`` tasks tokenize them
(``tokenizers`` without special tokens, then EOS); no seqio or TensorFlow is imported. One output split, named by
``splits`` (default ``train``).

Task variant (``register_reference_loss_task``): a seqio task whose source is those files, with output features
``targets`` (the base task's vocabulary) and ``ref_losses`` (float32); pack it with
``feature_converters.SelectiveLMFeatureConverter``. It streams the files, so no id join is held in memory.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from tokensift.core import docs, jobs, paths

JOB_PREFIX = "ref_losses"
PIECE_SIZE = 64


def job_name(split: str) -> str:
  return f"{JOB_PREFIX}_{split}"


# --------------------------------------------------------------------------------------------- computation


def shift_right(targets: np.ndarray, bos_id: int = 0) -> np.ndarray:
  """Decoder inputs for ``targets int[batch, length]``: ``[bos, t0, ..., t_{n-2}]`` per row."""
  inputs = np.zeros_like(targets)
  inputs[:, 1:] = targets[:, :-1]
  inputs[:, 0] = bos_id
  return inputs


def bucket_length(n: int, multiple: int, max_length: int) -> int:
  """Padded length for an ``n``-token document: the next multiple of ``multiple`` (at most ``max_length``)."""
  return min(max_length, multiple * max(1, math.ceil(n / multiple)))


@dataclasses.dataclass
class ReferenceScorer:
  """A decoder-only reference model that maps token sequences to per-token losses.

  ``module`` has the t5x decoder-only signature (``models.llama.Llama``); ``params`` are placed on ``mesh``
  (default: every device on accelerators, the first device on CPU, where fake devices share the cores and
  would only replicate the params; batch over 'data'). Documents are padded to multiples of ``length_multiple``
  and batched to ``batch_tokens`` tokens, so a job compiles one program per bucket length.
  """

  module: Any
  params: Any
  batch_tokens: int = 4096
  length_multiple: int = 64
  max_length: int = 2048
  bos_id: int = 0
  mesh: Any = None

  def __post_init__(self):
    import jax
    from tokensift.models import partitioning

    if self.mesh is None:
      devices = jax.local_devices()  # per-host mesh: multi-host runs score each host's split (tokensift.core.multihost)
      self.mesh = partitioning.make_mesh(
        partitioning.MeshConfig(), devices[:1] if devices[0].platform == "cpu" else devices
      )
    shardings = jax.tree.map(lambda _: jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec()), self.params)
    self.params = partitioning.place_params(self.params, shardings)
    self._batch_sharding = partitioning.batch_sharding(self.mesh, 2)
    self._fn = jax.jit(self._losses, out_shardings=self._batch_sharding)

  def _losses(self, params, inputs, targets):
    from tokensift.rho1.selective_loss import token_cross_entropy

    logits = self.module.apply({"params": params}, inputs, targets)
    ce, _ = token_cross_entropy(logits, targets)
    return ce

  def rows_for(self, length: int) -> int:
    data = self.mesh.shape["data"]
    rows = max(1, self.batch_tokens // length)
    return data * max(1, math.ceil(rows / data))

  def __call__(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Token lists (each at most ``max_length`` long, no 0 inside) -> float32 losses, one per token."""
    import jax

    out: list[np.ndarray | None] = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
    groups: dict[int, list[int]] = {}
    for i in order:
      n = len(sequences[i])
      if n > self.max_length:
        raise ValueError(f"sequence of {n} tokens exceeds max_length={self.max_length}")
      groups.setdefault(bucket_length(n, self.length_multiple, self.max_length), []).append(i)
    for length, members in sorted(groups.items()):
      rows = self.rows_for(length)
      for start in range(0, len(members), rows):
        chunk = members[start : start + rows]
        targets = np.zeros((rows, length), np.int32)
        for r, i in enumerate(chunk):
          targets[r, : len(sequences[i])] = sequences[i]
        inputs = shift_right(targets, self.bos_id)
        with jax.set_mesh(self.mesh):
          ce = self._fn(
            self.params, jax.device_put(inputs, self._batch_sharding), jax.device_put(targets, self._batch_sharding)
          )
        ce = np.asarray(ce)
        for r, i in enumerate(chunk):
          out[i] = ce[r, : len(sequences[i])].astype(np.float32)
        jobs.advance(len(chunk))  # the job's bar moves per batch
    return out  # type: ignore[return-value]


def load_reference_scorer(model: str, *, dtype: str = "float32", **kwargs) -> tuple[ReferenceScorer, Any]:
  """``model``: 'smollm2' (the offline SmolLM2-135M GGUF), an HF Llama directory or a ``.gguf`` file.

  Returns (scorer, LoadedModel).
  """
  from tokensift.models.llama_loaders import load_llama

  path = paths.smollm2_gguf() if model == "smollm2" else Path(model)
  loaded = load_llama(path, dtype=dtype)
  return ReferenceScorer(loaded.module, loaded.params, **kwargs), loaded


# ----------------------------------------------------------------------------------------------------- job


def task_documents(
  task_name: str, split: str, max_length: int, max_docs: int | None = None
) -> Callable[[jobs.ShardSpec], Iterator[docs.Document | docs.Skip]]:
  """Rows for the job: shard ``i/n`` of the task's tokenized ``targets`` (truncated to ``max_length``) in its
  fixed order, read through seqio's ``shard_info`` (``docs.source_dataset``'s rule: TFDS reads only the shard's
  files). Ids follow the document layer's rule (the source's ``id``). ``max_docs`` caps each shard."""
  import seqio

  docs.task_source(task_name, split)  # ValueError naming an unknown task or split, now

  def rows(shard: jobs.ShardSpec = jobs.ShardSpec()):
    task = seqio.get_mixture_or_task(task_name)
    info = seqio.ShardInfo(shard.index, shard.count) if shard.count > 1 else None
    ds = task.get_dataset(sequence_length=None, split=split, shuffle=False, use_cached=False, shard_info=info)
    items = _token_rows(ds, f"{task_name}:{split}:{shard.index}/{shard.count}", max_length, max_docs)
    yield from docs.unique_ids(items)

  return rows


def file_documents(
  inp: docs.DocumentInput, tokenizer, max_length: int, max_docs: int | None = None
) -> Callable[[jobs.ShardSpec], Iterator[docs.Document | docs.Skip]]:
  """Rows for the job from files: each document's ``text`` encoded by ``tokenizer`` (``hf_tokenizer.TokenizerFiles``)
  without special tokens plus its EOS, as the ``_smollm2`` tasks' ``targets`` (``seqio.Feature(add_eos=True)``),
  truncated to ``max_length``; the same skip rules as task rows. ``max_docs`` caps each shard."""
  from tokenizers import Tokenizer

  encoder = Tokenizer.from_file(str(tokenizer.tokenizer_json))
  eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]

  def rows(shard: jobs.ShardSpec = jobs.ShardSpec()):
    kept = 0
    for item in inp.rows(shard):
      if isinstance(item, docs.Skip):
        yield item
        continue
      if max_docs is not None and kept >= max_docs:
        return
      kept += 1
      tokens = np.asarray(encoder.encode(item.text, add_special_tokens=False).ids + eos, np.int32)[:max_length]
      yield _token_row(item.id, tokens)

  return rows


def _token_row(doc_id: str, tokens: np.ndarray) -> docs.Document | docs.Skip:
  if tokens.size == 0:
    return docs.Skip("no tokens", doc_id)
  if np.any(tokens == 0):
    return docs.Skip("token id 0 (padding) inside the document", doc_id)
  return docs.Document(doc_id, "", {"targets": tokens.tolist()})


def _token_rows(ds, where: str, max_length: int, max_docs: int | None) -> Iterator[docs.Document | docs.Skip]:
  for pos, ex in enumerate(ds.as_numpy_iterator()):
    if max_docs is not None and pos >= max_docs:
      return
    doc_id = ex["id"].decode("utf-8") if "id" in ex else f"{where}:{pos}"
    yield _token_row(doc_id, np.asarray(ex["targets"], np.int32)[:max_length])


def _process(scorer: ReferenceScorer) -> Callable[[list[docs.Document]], list[dict[str, Any]]]:
  def process(batch: list[docs.Document]) -> list[dict[str, Any]]:
    losses = scorer([d.meta["targets"] for d in batch])
    return [
      {"id": d.id, "targets": d.meta["targets"], "ref_losses": [float(x) for x in loss]}
      for d, loss in zip(batch, losses)
    ]

  return process


def _summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
  """One piece's additive summary (``jobs.merge_stats`` adds pieces; ``_finish`` rounds and adds the mean)."""
  return {"tokens": sum(len(r["targets"]) for r in records), "sum_ref_loss": sum(sum(r["ref_losses"]) for r in records)}


def _finish(stats: dict[str, Any]) -> dict[str, Any]:
  total = stats.get("sum_ref_loss", 0.0)
  return dict(stats, sum_ref_loss=round(total, 4), mean_ref_loss=round(total / max(1, stats.get("tokens", 0)), 6))


def compute_reference_losses(
  *,
  task: str | None = None,
  out_dir: str | Path,
  model: str = "smollm2",
  splits: Sequence[str] = ("train", "validation"),
  shard: jobs.ShardSpec = jobs.ShardSpec(),
  max_length: int = 1024,
  max_docs: int | None = None,
  batch_tokens: int = 4096,
  piece_size: int = PIECE_SIZE,
  dtype: str = "float32",
  progress: bool = True,
  scorer: ReferenceScorer | None = None,
  inp: docs.DocumentInput | None = None,
  tokenizer=None,
) -> dict[str, jobs.ShardResult]:
  """Runs shard ``shard`` of the reference-loss job for each split of ``task``, or for the files of ``inp`` (one
  split, ``splits[0]``, names the output; tokenized with the model's tokenizer, or ``tokenizer``:
  ``hf_tokenizer.TokenizerFiles``); returns {split: ShardResult}.

  The reference model's vocabulary must be the task's (same tokenizer): a vocab-size mismatch is an error.
  """
  if (task is None) == (inp is None):
    raise ValueError("compute_reference_losses: give exactly one of task= and inp=")
  if inp is not None:
    if len(splits) != 1:
      raise ValueError(f"reference losses of files write one split; got splits={list(splits)} (pass one name)")
    vocab_size = None
  else:
    assert task is not None  # exactly one of task= and inp= (checked above)
    import seqio

    for split in splits:  # unknown task or split: a one-line error before anything is loaded or written
      docs.task_source(task, split)
    vocab_size = seqio.get_mixture_or_task(task).output_features["targets"].vocabulary.vocab_size
  if scorer is None:
    scorer, loaded = load_reference_scorer(model, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length)
    model_vocab = loaded.config.vocab_size
    tokenizer = tokenizer or loaded.tokenizer
  else:
    model_vocab = getattr(getattr(scorer.module, "config", None), "vocab_size", vocab_size)
    if max_length > scorer.max_length:
      raise ValueError(f"max_length={max_length} exceeds the scorer's max_length={scorer.max_length}")
  tokenizer_json = None
  if inp is not None:
    if tokenizer is None:
      raise ValueError(f"reference model {model!r} carries no tokenizer: pass tokenizer= to read files")
    from tokenizers import Tokenizer

    tokenizer_json = str(tokenizer.tokenizer_json)
    vocab_size = Tokenizer.from_file(tokenizer_json).get_vocab_size(with_added_tokens=True)
    source = inp.describe()
    row_fn = lambda split: file_documents(inp, tokenizer, max_length, max_docs)
  else:
    assert task is not None
    source, task_name = task, task
    row_fn = lambda split: task_documents(task_name, split, max_length, max_docs)
  if task is not None and model_vocab != vocab_size:
    raise ValueError(
      f"reference model {model!r} has vocab_size={model_vocab} but task {task!r} uses "
      f"{vocab_size} tokens: the reference must share the training tokenizer"
    )
  if task is None and vocab_size is not None and model_vocab is not None and vocab_size > model_vocab:
    raise ValueError(
      f"reference model {model!r} has vocab_size={model_vocab} but its tokenizer "
      f"{tokenizer_json!r} has {vocab_size} tokens"
    )
  config = {
    "task" if task else "input": source,
    "model": str(model),
    "max_length": max_length,
    "max_docs": max_docs,
    "dtype": dtype,
    "bos_id": scorer.bos_id,
  }
  results = {}
  for split in splits:
    results[split] = jobs.run_sharded(
      name=job_name(split),
      out_dir=out_dir,
      rows=row_fn(split),
      process=_process(scorer),
      shard=shard,
      piece_size=piece_size,
      fmt="parquet",
      config=dict(config, split=split),
      summarize=_summarize,
      finish=_finish,
      progress=progress,
    )
  return results


def read_reference_losses(out_dir: str | os.PathLike, split: str) -> Iterator[dict[str, Any]]:
  """Records ``{id, targets, ref_losses}`` of a finished job split, in shard order."""
  files = jobs.shard_files(out_dir, job_name(split))
  if not files:
    raise FileNotFoundError(
      f"no finished reference-loss shards for split {split!r} in {str(out_dir)!r}; run "
      f"`tokensift reference-losses --out {out_dir} --split {split} ...` first"
    )
  for f in files:
    yield from jobs.iter_records(f)


# ------------------------------------------------------------------------------------------- seqio variant


def _ref_source(out_dir: str, splits: Sequence[str]):
  """Examples ``{id, targets, ref_losses}`` streamed from the job's shard files (one seqio shard per file)."""
  import numpy as np

  from tokensift.tasks.sources import RecordFilesSource

  return RecordFilesSource(
    splits,
    lambda split: jobs.shard_files(out_dir, job_name(split)),
    {"targets": np.int32, "ref_losses": np.float32},
    name=f"reference losses in {out_dir!r}",
    missing=lambda split: (
      f"no finished reference-loss shards for split {split!r} in {out_dir!r}; run "
      f"`tokensift reference-losses --out {out_dir} --split {split}` first"
    ),
  )


def register_ref_task(
  *,
  caller: str,
  base_task: str,
  ref_dir: str,
  name: str | None,
  token_features: Sequence[str],
  source: Callable[[str], Any],
  hint: str,
  postprocess: bool = False,
) -> str:
  """The task registration shared by the decoder-only and encoder-decoder reference-loss jobs: checks ``ref_dir``
  (a ``paths.ConfigError`` naming ``caller`` and ``hint`` when empty), registers the package's tasks, looks up
  ``base_task`` and (re-)registers ``name`` (default ``{base_task}_ref``) over ``source(ref_dir)`` with int32
  ``token_features`` in the base task's vocabularies plus a float32 ``ref_losses`` ([length], one per target
  token); ``postprocess``: keep the base task's postprocessor. Returns the name."""
  import seqio
  import tokensift.tasks

  if not ref_dir:
    raise paths.ConfigError(f"{caller} needs ref_dir ({hint}); in gin: REF_DIR = '/path'")
  tokensift.tasks.register_all()
  base = seqio.get_mixture_or_task(base_task)
  if not isinstance(base, seqio.Task):
    raise ValueError(f"{base_task!r} is a mixture, not a task: name one of its tasks")
  name = name or f"{base_task}_ref"
  features = {
    f: seqio.Feature(vocabulary=base.output_features[f].vocabulary, add_eos=False, dtype="int32")
    for f in token_features
  }
  features["ref_losses"] = seqio.Feature(vocabulary=seqio.PassThroughVocabulary(size=0), add_eos=False, dtype="float32")
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(
    name,
    source=source(str(ref_dir)),
    output_features=features,
    preprocessors=[],
    postprocess_fn=base.postprocessor if postprocess else None,
    metric_fns=[],
  )
  return name


def register_reference_loss_task(
  base_task: str = "owm_raw_smollm2",
  ref_dir: str = "",
  name: str | None = None,
  splits: Sequence[str] = ("train", "validation"),
) -> str:
  """Registers (or re-registers) the seqio task ``name`` (default ``{base_task}_ref``) over the reference-loss
  files in ``ref_dir``; returns its name (so gin can bind ``MIXTURE_OR_TASK_NAME = @register_...()``)."""
  return register_ref_task(
    caller="register_reference_loss_task",
    base_task=base_task,
    ref_dir=ref_dir,
    name=name,
    token_features=("targets",),
    source=lambda d: _ref_source(d, splits),
    hint="the `tokensift reference-losses` --out",
  )
