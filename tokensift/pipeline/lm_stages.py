"""Language-model stages: tokenize the refined pool, Rho-1 reference losses (selected documents + held-out
validation documents), train tiny decoders (SLM and CLM on the selection, CLM on the whole refined pool) with the
embedded trainer, and evaluate them on the same held-out documents.

Every run evaluates on identical tokens: the validation split of each training task reads the validation
documents' ``targets`` from the reference-loss files (SLM needs their reference losses; the CLM tasks ignore
them), so the validation-loss table compares like with like.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from tokensift.core import docs, jobs
from tokensift.pipeline.config import as_json
from tokensift.pipeline.context import Context
from tokensift.pipeline.corpus_stages import selected_ids
from tokensift.pipeline.stages import Stage

TOKENS_JOB = "tokens_train"


# ------------------------------------------------------------------------------------------ seqio tasks


def refined_task(ctx: Context) -> str:
  """The kept documents of the refine stage, tokenized with the training vocabulary (train split only)."""
  from tokensift.refine.tasks import register_refined_task

  name = f"{ctx.prefix}_refined_smollm2"
  register_refined_task(name, ctx.dir("refine"), vocab=_vocab(ctx), replace=True)
  return name


def _vocab(ctx: Context):
  import seqio
  import tokensift.tasks

  tokensift.tasks.register_all()
  return seqio.get_mixture_or_task(ctx.config.corpus.lm_task).output_features["targets"].vocabulary


def _token_source(train_files: Sequence[str], val_files: Sequence[str], val_split: str):
  """A seqio DataSource of pre-tokenized documents ``{id, targets}`` read from job output files."""
  import numpy as np

  from tokensift.tasks.sources import RecordFilesSource

  files = {"train": list(train_files), val_split: list(val_files)}
  return RecordFilesSource(tuple(files), files.__getitem__, {"targets": np.int32}, name="pipeline token files")


def training_tasks(ctx: Context) -> dict[str, str]:
  """{"selected": task with reference losses, "refined_pool": pre-tokenized refined pool}, both with the same
  validation split (re-registered on every call: cheap, and the registry is per process)."""
  import seqio

  from tokensift.rho1 import reference_losses as rl

  c = ctx.config.corpus
  ref_dir = ctx.dir("reference_losses")
  selected = rl.register_reference_loss_task(
    base_task=c.lm_task, ref_dir=str(ref_dir), name=f"{ctx.prefix}_sel_ref", splits=("train", c.validation_split)
  )
  name = f"{ctx.prefix}_pool_tokens"
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  source = _token_source(
    [str(f) for f in jobs.shard_files(ctx.dir("lm_data"), TOKENS_JOB)],
    [str(f) for f in jobs.shard_files(ref_dir, rl.job_name(c.validation_split))],
    c.validation_split,
  )
  interface: seqio.DataSourceInterface = source  # pyright: ignore[reportAssignmentType]  (seqio's DataSource.num_input_examples may return None, its protocol says int)
  seqio.TaskRegistry.add(
    name,
    source=interface,
    output_features={"targets": seqio.Feature(vocabulary=_vocab(ctx), add_eos=False, dtype="int32")},
    preprocessors=[],
    metric_fns=[],
  )
  return {"selected": selected, "refined_pool": name}


# ------------------------------------------------------------------------------------------ lm_data


def _lm_data_config(ctx: Context) -> dict[str, Any]:
  return {"lm_task": ctx.config.corpus.lm_task, "seq_len": ctx.config.lm.seq_len}


def _lm_data(ctx: Context, out: Path) -> dict[str, Any]:
  """The refined pool as training tokens (cut to the sequence length), as the reference-loss job tokenizes."""
  from tokensift.rho1 import reference_losses as rl

  task = refined_task(ctx)
  seq = ctx.config.lm.seq_len
  n = sum(1 for r in ctx.refined_records() if r["kept"])

  def process(batch: list[docs.Document]) -> list[dict[str, Any]]:
    return [{"id": d.id, "targets": d.meta["targets"]} for d in batch]

  res = jobs.run_sharded(
    name=TOKENS_JOB,
    out_dir=out,
    rows=rl.task_documents(task, "train", seq),
    process=process,
    piece_size=256,
    fmt="parquet",
    config=dict(_lm_data_config(ctx), source=str(ctx.dir("refine"))),
    summarize=lambda recs: {"tokens": sum(len(r["targets"]) for r in recs)},
    progress=ctx.progress,
    total=n,
  )
  stats = {k: v for k, v in res.stats.items() if k != "skipped_examples"}
  return dict(
    stats,
    docs_in=n,
    docs_out=stats["records"],
    tokens_in=sum(ctx.refined_tokens().values()),
    tokens_out=stats["tokens"],
  )


# ------------------------------------------------------------------------------------------ reference losses


def _reference_config(ctx: Context) -> dict[str, Any]:
  c = ctx.config.corpus
  r = ctx.config.reference
  return dict(
    model=r.model,
    batch_tokens=r.batch_tokens,
    dtype=r.dtype,
    seq_len=ctx.config.lm.seq_len,
    lm_task=c.lm_task,
    validation_split=c.validation_split,
    validation_docs=c.validation_docs,
  )


def _reference_losses(ctx: Context, out: Path) -> dict[str, Any]:
  from tokensift.rho1 import reference_losses as rl
  from tokensift.selection import variants

  c, ref = ctx.config.corpus, ctx.config.reference
  seq = ctx.config.lm.seq_len
  module, params, _ = ctx.reference_model()
  scorer = rl.ReferenceScorer(module, params, batch_tokens=ref.batch_tokens, max_length=seq)
  chosen = ctx.dir("select") / ctx.summaries["select"]["id_list"]
  variant = variants.register_variant(f"{ctx.prefix}_selected_smollm2", refined_task(ctx), chosen).name
  common: dict[str, Any] = dict(
    out_dir=out, model=ref.model, max_length=seq, dtype=ref.dtype, progress=ctx.progress, scorer=scorer
  )
  train = rl.compute_reference_losses(task=variant, splits=("train",), **common)["train"]
  val = rl.compute_reference_losses(task=c.lm_task, splits=(c.validation_split,), max_docs=c.validation_docs, **common)[
    c.validation_split
  ]
  n_sel = len(selected_ids(ctx))
  stats = {
    "train": {k: v for k, v in train.stats.items() if k != "skipped_examples"},
    "validation": {k: v for k, v in val.stats.items() if k != "skipped_examples"},
  }
  return dict(
    stats,
    docs_in=n_sel + c.validation_docs,
    docs_out=train.stats["records"] + val.stats["records"],
    tokens_in=None,
    tokens_out=train.stats["tokens"] + val.stats["tokens"],
  )


# ------------------------------------------------------------------------------------------ train

RUN_SPECS = {
  "slm_selected": ("slm", "selected"),
  "clm_selected": ("clm", "selected"),
  "clm_refined_pool": ("clm", "refined_pool"),
}


def network(ctx: Context):
  from tokensift.models import llama

  m = ctx.config.lm
  return llama.Llama(
    llama.LlamaConfig(
      vocab_size=_vocab(ctx).vocab_size,
      hidden_size=m.hidden_size,
      intermediate_size=m.intermediate_size,
      num_layers=m.num_layers,
      num_heads=m.num_heads,
      num_kv_heads=m.num_kv_heads,
      max_position_embeddings=m.seq_len,
      tie_word_embeddings=True,
    )
  )


def train_config(ctx: Context, run: str, tasks: dict[str, str]):
  """The embedded trainer's ``TrainConfig`` of one run: ``LMConfig.train`` with the run's fields set."""
  loss, data = RUN_SPECS[run]
  return ctx.config.lm.run_train_config(
    model_dir=str(ctx.dir("train") / run),
    task=tasks[data],
    loss_kind=loss,
    ref_losses=data == "selected",
    eval_split=ctx.config.corpus.validation_split,
    progress=ctx.progress,
  )


def _train_config(ctx: Context) -> dict[str, Any]:
  return as_json(ctx.config.lm)


def _train(ctx: Context, out: Path) -> dict[str, Any]:
  from tokensift.trainer import loop

  tasks = training_tasks(ctx)
  runs = {}
  for run in ctx.config.lm.runs:
    print(f"  training {run} ...", flush=True)
    res = loop.train(train_config(ctx, run, tasks), network(ctx))
    runs[run] = {
      "steps": res.step,
      "train": res.last_train,
      "eval": res.last_eval,
      "tokens_per_second": round(res.tokens_per_second, 1),
    }
  m = ctx.config.lm
  sel = ctx.summaries["reference_losses"]["train"]
  return {
    "runs": runs,
    "docs_in": sel["records"],
    "docs_out": sel["records"],
    "tokens_in": sel["tokens"],
    "tokens_out": m.train.train_steps * m.train.batch_size * m.seq_len,
  }


# ------------------------------------------------------------------------------------------ evaluate


def _evaluate_config(ctx: Context) -> dict[str, Any]:
  return {"token_view_doc": ctx.config.report.token_view_doc}


def _evaluate(ctx: Context, out: Path) -> dict[str, Any]:
  import math

  from tokensift.trainer.metrics import read_metrics

  c = ctx.config.corpus
  table = []
  for run in ctx.config.lm.runs:
    d = ctx.dir("train") / run
    evals, trains = read_metrics(d, "eval"), read_metrics(d, "train")
    loss, data = RUN_SPECS[run]
    final = evals[-1]["ce_unmasked"] if evals else None
    table.append(
      {
        "run": run,
        "loss": loss,
        "data": data,
        "steps": trains[-1]["step"] if trains else 0,
        "final_train_ce": trains[-1]["ce_unmasked"] if trains else None,
        "final_val_ce": final,
        "final_val_ppl": math.exp(final) if final is not None else None,
        "best_val_ce": min(e["ce_unmasked"] for e in evals) if evals else None,
      }
    )
  view = None
  if "slm_selected" in ctx.config.lm.runs:
    from tokensift.trainer import token_view

    tasks = training_tasks(ctx)
    view = token_view.write_view(
      train_config(ctx, "slm_selected", tasks),
      network(ctx),
      out / "token_view.html",
      split=c.validation_split,
      doc_index=ctx.config.report.token_view_doc,
    ).name
  jobs.atomic_write_bytes(out / "validation.json", json.dumps(table, indent=1).encode())
  val = ctx.summaries["reference_losses"]["validation"]
  return {
    "table": table,
    "token_view": view,
    "docs_in": val["records"],
    "docs_out": val["records"],
    "tokens_in": val["tokens"],
    "tokens_out": val["tokens"],
  }


def stages(ctx: Context) -> list[Stage]:
  if not ctx.config.lm.enabled:
    return []
  return [
    Stage("lm_data", ("refine",), _lm_data_config, _lm_data, "the refined pool as training tokens"),
    Stage(
      "reference_losses",
      ("select", "refine"),
      _reference_config,
      _reference_losses,
      "reference-model token losses of the selected and validation documents",
    ),
    Stage(
      "train", ("reference_losses", "lm_data"), _train_config, _train, "tiny decoders: " + ", ".join(ctx.config.lm.runs)
    ),
    Stage("evaluate", ("train",), _evaluate_config, _evaluate, "validation losses and the token-selection view"),
  ]
