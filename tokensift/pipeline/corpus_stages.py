"""Document-level stages: train and evaluate the ProX refiner, refine the pool (rules and refiner), ASK-LLM
score, embed, DENSITY, select. Each is a thin adapter over the package's job or pure function; the jobs write
their own piece/shard markers inside the stage folder (``tokensift.core.jobs.run_sharded``), so a killed stage
resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokensift.core import jobs
from tokensift.pipeline import distill_stages
from tokensift.pipeline.config import as_json
from tokensift.pipeline.context import Context, llama_cache_key
from tokensift.pipeline.stages import Stage


# --------------------------------------------------------------------------------------------- refiner


def _refiner_train_config(ctx: Context) -> dict[str, Any]:
  r, t = ctx.config.refiner, ctx.config.refiner_tasks()
  out = {
    "task": t["train_task"],
    "split": t["train_split"],
    "docs": r.train_docs,
    "training": as_json(r.training),
    "tokenizer": r.tokenizer,
  }
  if _corrupt_training(ctx):
    c = ctx.config.corpus
    out["corrupted"] = {
      "known_answer": as_json(ctx.config.known_answer),
      "profile": c.profile,
      "pool": [c.task, c.split, c.input, c.max_docs],
    }
  return out


def _corrupt_training(ctx: Context) -> bool:
  return ctx.config.refiner.corrupt_training and ctx.config.known_answer.enabled


def refiner_train_texts(ctx: Context) -> tuple[list[str], int, dict[str, Any]]:
  """(the refiner's SFT documents, how many were read, extra summary): the first ``train_docs`` of the training
  task's split (``PipelineConfig.refiner_tasks``: the corpus task unless set); with ``_corrupt_training`` those
  outside the pool, corrupted (``known_answer.refiner_training_texts``)."""
  r, t = ctx.config.refiner, ctx.config.refiner_tasks()
  texts = ctx.task_texts(t["train_task"], t["train_split"], r.train_docs)
  n_in = len(texts)
  extra: dict[str, Any] = {"task": t["train_task"], "split": t["train_split"]}
  if _corrupt_training(ctx):
    from tokensift.core import docs
    from tokensift.pipeline import known_answer as ka

    rows, _ = ctx.source_rows()
    pool = [d.text for d in docs.documents_only(rows(docs.ShardSpec()), docs.ReadReport())]
    texts, extra["corrupted"] = ka.refiner_training_texts(
      texts, pool, ctx.config.known_answer, ctx.config.corpus.profile
    )
  return texts, n_in, extra


def _refiner_train(ctx: Context, out: Path) -> dict[str, Any]:
  from tokensift.refine import refiner_training as rt

  r = ctx.config.refiner
  texts, n_in, extra = refiner_train_texts(ctx)
  summary = rt.run_refiner_training(texts, r.training, out, tokenizer=r.tokenizer, progress=ctx.progress)
  return dict(summary, **extra, docs_in=n_in, docs_out=len(texts))


def refiner_programmer(ctx: Context):
  """The trained refiner as a ``ModelProgrammer`` (loaded once per process)."""
  if "refiner" not in ctx.cache:
    from tokensift.refine import refiner_training as rt
    from tokensift.refine.model_programmer import ModelProgrammer

    r = ctx.config.refiner
    ctx.cache["refiner"] = ModelProgrammer.from_path(
      ctx.dir("refiner_train") / "model", config=rt.programmer_config(r.training, batch_size=r.batch_size)
    )
  return ctx.cache["refiner"]


def _refiner_eval_config(ctx: Context) -> dict[str, Any]:
  r, t = ctx.config.refiner, ctx.config.refiner_tasks()
  return {
    "task": t["eval_task"],
    "split": t["eval_split"],
    "docs": r.eval_docs,
    "batch_size": r.batch_size,
    "profile": r.training.profile,
  }


def _refiner_eval(ctx: Context, out: Path) -> dict[str, Any]:
  from tokensift.refine import refiner_eval as rev

  r, t = ctx.config.refiner, ctx.config.refiner_tasks()
  texts = ctx.task_texts(t["eval_task"], t["eval_split"], r.eval_docs)
  result = rev.evaluate_refiner(texts, refiner_programmer(ctx), profile=r.training.profile)
  jobs.atomic_write_bytes(
    out / "programs.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in result.pop("programs")).encode()
  )
  jobs.atomic_write_bytes(out / "f1.json", json.dumps(result, indent=1).encode())
  return dict(result, docs_in=len(texts), docs_out=len(texts))


# --------------------------------------------------------------------------------------------- refine


def _refine_stats(stats: dict[str, Any]) -> dict[str, Any]:
  out = {k: v for k, v in stats.items() if k != "skipped_examples"}
  out.update(
    docs_in=stats["documents"] + sum(stats.get("skipped", {}).values()),
    docs_out=stats["kept"],
    tokens_in=stats.get("tokens_before"),
    tokens_out=stats.get("tokens_after"),
  )
  return out


def _run_refine(ctx: Context, out: Path, programmer, extra: dict[str, Any]) -> dict[str, Any]:
  from tokensift.refine import job

  rows, total = ctx.pool_rows()
  c = ctx.config.corpus
  res = job.run_refine(
    rows=rows,
    out_dir=out,
    programmer=programmer,
    piece_size=ctx.config.refine.piece_size,
    count_tokens=ctx.token_counter(),
    total=total,
    progress=ctx.progress,
    config={"task": c.task, "split": c.split, "max_docs": c.max_docs, "vocab": "smollm2", **extra},
  )
  return _refine_stats(res.stats)


def _rules_config(ctx: Context) -> dict[str, Any]:
  c = ctx.config.corpus
  return {
    "task": c.task,
    "split": c.split,
    "max_docs": c.max_docs,
    "profile": c.profile,
    "input": c.input,
    "known_answer": as_json(ctx.config.known_answer),
    "piece_size": ctx.config.refine.piece_size,
  }


def _refine_rules(ctx: Context, out: Path) -> dict[str, Any]:
  from tokensift.refine import job, rules

  return _run_refine(ctx, out, job.RuleProgrammer(rules.RuleConfig.named(ctx.config.corpus.profile)), {})


def _refine_config(ctx: Context) -> dict[str, Any]:
  r = ctx.config.refine
  return dict(
    _rules_config(ctx),
    programmer=r.programmer,
    max_new_tokens=r.max_new_tokens,
    refiner_batch=ctx.config.refiner.batch_size if r.programmer == "refiner" else None,
  )


def _refine(ctx: Context, out: Path) -> dict[str, Any]:
  r = ctx.config.refine
  if r.programmer == "rules":
    return _refine_rules(ctx, out)
  if r.programmer == "refiner":
    return _run_refine(ctx, out, refiner_programmer(ctx), {"refiner": str(ctx.dir("refiner_train") / "model")})
  from tokensift.refine.model_programmer import ModelProgrammer, ModelProgrammerConfig

  mcfg = ModelProgrammerConfig(max_new_tokens=r.max_new_tokens) if r.max_new_tokens else ModelProgrammerConfig()
  return _run_refine(ctx, out, ModelProgrammer.from_path(r.programmer, config=mcfg), {"model": r.programmer})


# --------------------------------------------------------------------------------------------- selection


def _refined_input(ctx: Context) -> tuple[int, int]:
  toks = ctx.refined_tokens()
  return len(toks), sum(toks.values())


def _score_config(ctx: Context) -> dict[str, Any]:
  s = ctx.config.score
  out = {"job": as_json(s.job), "piece_size": s.piece_size}  # head, holdout: the distill stage's
  return dict(out, judge_docs=s.judge_docs) if s.judge_docs is not None else out  # unset: earlier runs' fingerprint


def _score(ctx: Context, out: Path) -> dict[str, Any]:
  """The judge (ASK-LLM) on the refined documents, or on the part ``ScoreConfig.judge_docs`` chooses
  (``distill_stages.judged_ids``)."""
  from tokensift.core import docs
  from tokensift.pipeline.distill_stages import judged_ids
  from tokensift.selection import score_job

  s = ctx.config.score
  cfg = s.job
  scorer = score_job.build_scorer(cfg)
  if score_job.detect_architecture(cfg.resolved_model()) == "decoder_only":  # reused for reference losses
    ctx.cache[llama_cache_key(cfg.resolved_model())] = (scorer.module, scorer.params, scorer.module.config.vocab_size)
  n, tokens = _refined_input(ctx)
  toks = ctx.refined_tokens()
  judged = judged_ids(list(toks), s.judge_docs)
  rows = ctx.refined_rows()
  res = score_job.run_score_job(
    cfg,
    jobs.in_memory_rows(lambda: (d for d in rows(docs.ShardSpec()) if isinstance(d, docs.Document) and d.id in judged)),
    str(out),
    input_desc=f"pipeline refine stage {ctx.prefix}",
    piece_size=s.piece_size,
    progress=ctx.progress,
    total=len(judged),
    scorer=scorer,
  )
  stats = {k: v for k, v in res.stats.items() if k != "skipped_examples"}
  judged_tokens = sum(toks[i] for i in judged)
  return dict(
    stats, judged=len(judged), docs_in=n, docs_out=stats["records"], tokens_in=tokens, tokens_out=judged_tokens
  )


def _embed_config(ctx: Context) -> dict[str, Any]:
  return as_json(ctx.config.embed)


def _embed(ctx: Context, out: Path) -> dict[str, Any]:
  from tokensift.selection import embed_job

  e = ctx.config.embed
  cfg = e.job
  n, tokens = _refined_input(ctx)
  res = embed_job.run_embed_job(
    cfg,
    ctx.refined_rows(),
    str(out),
    input_desc=f"pipeline refine stage {ctx.prefix}",
    piece_size=e.piece_size,
    progress=ctx.progress,
    total=n,
  )
  stats = {k: v for k, v in res.stats.items() if k != "skipped_examples"}
  return dict(stats, docs_in=n, docs_out=stats["records"], tokens_in=tokens, tokens_out=tokens)


def _select_cfg(ctx: Context, **overrides):
  from tokensift.selection import select_job

  s = ctx.config.selection
  kw = dict(
    method=s.method,
    rates=(float(s.rate),),
    askllm_fraction=s.askllm_fraction,
    kernel=s.kernel,
    bandwidth=s.bandwidth,
    seed=s.seed,
  )
  return select_job.SelectConfig(**{**kw, **overrides})


def _density_config(ctx: Context) -> dict[str, Any]:
  s = ctx.config.selection
  return {"kernel": s.kernel, "bandwidth": s.bandwidth}


def _density(ctx: Context, out: Path) -> dict[str, Any]:
  """Log density of every embedded document within all of them (DENSITY's score; the report's histograms)."""
  import numpy as np
  import pyarrow as pa
  import pyarrow.parquet as pq

  from tokensift.selection import embed_job, select_job

  ids, x = embed_job.load_embeddings(ctx.dir("embed"))
  logs, how = select_job.density_scores(x, _select_cfg(ctx, method="ips", askllm_fraction=None))
  tmp = out / ".density.parquet.tmp"
  pq.write_table(pa.table({"id": ids, "log_density": np.asarray(logs, np.float64)}), tmp)
  tmp.replace(out / "density.parquet")
  return dict(
    how, docs_in=len(ids), docs_out=len(ids), mean_log_density=float(np.mean(logs)), std_log_density=float(np.std(logs))
  )


def _selection_config(ctx: Context) -> dict[str, Any]:
  return as_json(ctx.config.selection)


def _select(ctx: Context, out: Path) -> dict[str, Any]:
  from tokensift.selection import select_job

  cfg = _select_cfg(ctx)
  sel = select_job.select(
    ctx.dir("embed"), out, cfg, askllm_scores=distill_stages.askllm_scores(ctx), progress=ctx.progress
  )
  ((path, k),) = sel.lists.values()
  toks = ctx.refined_tokens()
  from tokensift.selection.variants import read_id_list

  chosen = read_id_list(path)
  summary = {k2: v for k2, v in sel.summary.items() if k2 not in ("config",)}
  return dict(
    summary,
    id_list=path.name,
    docs_in=sel.summary["documents"],
    docs_out=k,
    tokens_in=sum(toks.values()),
    tokens_out=sum(toks.get(i, 0) for i in chosen),
  )


def selected_ids(ctx: Context) -> list[str]:
  from tokensift.selection.variants import read_id_list

  return read_id_list(ctx.dir("select") / ctx.summaries["select"]["id_list"])


def stages(ctx: Context) -> list[Stage]:
  cfg = ctx.config
  out = []
  corpus = ("corpus",) if cfg.known_answer.enabled else ()  # the known-answer corpus is the pool
  if cfg.refiner.enabled:
    out += [
      Stage(
        "refiner_train",
        (),
        _refiner_train_config,
        _refiner_train,
        "SFT of the ProX refining model on rule-programmer pairs",
      ),
      Stage(
        "refiner_eval",
        ("refiner_train",),
        _refiner_eval_config,
        _refiner_eval,
        "refiner vs rule programmer: doc keep/drop F1, removed-line F1",
      ),
    ]
  if cfg.refine.compare_rules and cfg.refine.programmer != "rules":
    out.append(Stage("refine_rules", corpus, _rules_config, _refine_rules, "the pool refined by the rule programmer"))
  refine_deps = corpus + (("refiner_train",) if cfg.refine.programmer == "refiner" else ())
  out += [
    Stage("refine", refine_deps, _refine_config, _refine, f"the pool refined by {cfg.refine.programmer}"),
    Stage("score", ("refine",), _score_config, _score, "ASK-LLM P(yes) of the refined documents the judge scores"),
    Stage("embed", ("refine",), _embed_config, _embed, "sentence embeddings of every refined document"),
  ]
  if distill_stages.enabled(ctx):
    out.append(
      Stage(
        "distill",
        ("score", "embed"),
        distill_stages.config,
        distill_stages.run,
        f"ASK-LLM distilled: a head fitted on the {cfg.score.judge_docs} judged documents scores the rest",
      )
    )
  scores = ("distill",) if distill_stages.enabled(ctx) else ("score",)
  out += [
    Stage("density", ("embed",), _density_config, _density, "DENSITY: kernel sums over the embeddings"),
    Stage("select", scores + ("embed",), _selection_config, _select, "ASK-LLM pool + DENSITY sampling -> id list"),
  ]
  return out
