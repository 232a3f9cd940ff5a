"""Evidence stages (DESIGN §12): the known-answer corpus the document stages read, reference-model perplexity
of every document (the paper's perplexity-filtering baseline and Rho-1's token losses), the seeded training
ablations, and every method's detection figures against the corpus labels."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from tokensift.core import docs, jobs
from tokensift.pipeline import known_answer as ka
from tokensift.pipeline.config import as_json
from tokensift.pipeline.context import Context
from tokensift.pipeline.stages import Stage


# --------------------------------------------------------------------------------------------- corpus


def _corpus_config(ctx: Context) -> dict[str, Any]:
  c = ctx.config.corpus
  return {
    "task": c.task,
    "split": c.split,
    "input": c.input,
    "max_docs": c.max_docs,
    "profile": c.profile,
    "known_answer": as_json(ctx.config.known_answer),
  }


def _corpus(ctx: Context, out: Path) -> dict[str, Any]:
  rows, _ = ctx.source_rows()
  real = list(docs.documents_only(rows(docs.ShardSpec()), docs.ReadReport()))
  documents, labels = ka.build_corpus(
    [d.text for d in real], [d.id for d in real], ctx.config.known_answer, ctx.config.corpus.profile
  )
  ka.write_corpus(out, documents, labels)
  return dict(ka.summarize(labels), docs_in=len(real), docs_out=len(documents))


# --------------------------------------------------------------------------------------------- perplexity


def _labels(ctx: Context) -> dict[str, dict[str, Any]]:
  if "labels" not in ctx.cache:
    path = ctx.dir("corpus") / "labels.jsonl"
    ctx.cache["labels"] = {r["id"]: r for r in jobs.read_records(path, missing_ok=True)}
  return ctx.cache["labels"]


def _perplexity_config(ctx: Context) -> dict[str, Any]:
  r = ctx.config.reference
  out = {"kind": r.kind, "doc_tokens": ctx.config.ablation.doc_tokens, "lm_task": ctx.config.corpus.lm_task}
  if r.kind == "pretrained":
    out.update(model=r.model, batch_tokens=r.batch_tokens, dtype=r.dtype)
  return out


def _tokenize(tokenizer, text: str, limit: int, spans: list) -> tuple[list[int], list[int], list[int]]:
  """(first ``limit`` token ids, noise flag of each, end character offset of each: non-decreasing)."""
  enc = tokenizer.encode(text, add_special_tokens=False)
  ids, offs = enc.ids[:limit], enc.offsets[:limit]
  noise = [int(any(s < e2 and e > s2 for s2, e2, _ in spans) and e > s) for s, e in offs]
  ends = list(itertools.accumulate((e for _, e in offs), max))
  return ids, noise, ends


def _perplexity(ctx: Context, out: Path) -> dict[str, Any]:
  """The units the ablations train on: the first ``ablation.doc_tokens`` SmolLM2 tokens (ids, noise flags, end
  offsets and the text they cover) of every raw corpus document and of every refined document whose text
  changed; with ``ReferenceConfig.kind = 'pretrained'`` also the pretrained reference model's token losses (else
  zeros: the trained reference, stage ``reference``, scores the units itself). The held-out documents need none
  (see ``validation_rows``)."""
  import json

  from tokensift.rho1 import reference_losses as rl
  from tokensift.tasks import vocabularies

  limit = ctx.config.ablation.doc_tokens
  tokenizer = vocabularies.smollm2().tokenizer
  labels = _labels(ctx)
  items = []  # (source, id, text, spans)
  raw_rows, _ = ctx.pool_rows()
  raw = {d.id: d.text for d in docs.documents_only(raw_rows(docs.ShardSpec()), docs.ReadReport())}
  items += [("raw", i, t, (labels.get(i) or {}).get("spans", [])) for i, t in raw.items()]
  for r in ctx.refined_records():
    if r["kept"] and r["text"] != raw.get(str(r["id"])):
      items.append(("refined", str(r["id"]), r["text"], []))  # spans are not tracked through edits
  toks = [_tokenize(tokenizer, t, limit, sp) for _, _, t, sp in items]
  keep = [k for k, (ids, _, _) in enumerate(toks) if ids]
  if ctx.config.reference.kind == "pretrained":
    module, params, _ = ctx.reference_model()
    scorer = rl.ReferenceScorer(module, params, batch_tokens=ctx.config.reference.batch_tokens, max_length=limit)
    losses = scorer([toks[k][0] for k in keep])
  else:
    losses = [[0.0] * len(toks[k][0]) for k in keep]
  rows = [
    {
      "source": items[k][0],
      "id": items[k][1],
      "tokens": toks[k][0],
      "noise": toks[k][1],
      "ref_losses": [round(float(x), 5) for x in loss],
      "ends": toks[k][2],
      "text": items[k][2][: toks[k][2][-1]],
    }
    for k, loss in zip(keep, losses)
  ]
  jobs.atomic_write_bytes(out / "token_losses.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
  tokens = sum(len(r["tokens"]) for r in rows)
  return {
    "docs_in": len(items),
    "docs_out": len(rows),
    "tokens_in": tokens,
    "tokens_out": tokens,
    "by_source": {s: sum(r["source"] == s for r in rows) for s in ("raw", "refined")},
  }


# --------------------------------------------------------------------------------------------- ablations


def validation_rows(ctx: Context) -> list[dict[str, Any]]:
  """The clean held-out documents every ablation run is evaluated on: the first ``ablation.validation_docs``
  of the task's validation split, first ``ablation.validation_doc_tokens`` SmolLM2 tokens of each and the text
  they cover (evaluation needs no reference losses, so these cost no reference-model time)."""
  from tokensift.tasks import vocabularies

  c, a = ctx.config.corpus, ctx.config.ablation
  tokenizer = vocabularies.smollm2().tokenizer
  rows = []
  for t in ctx.task_texts(c.task, c.validation_split, a.validation_docs):
    ids, noise, ends = _tokenize(tokenizer, t, a.validation_doc_tokens, [])
    if ids:
      rows.append({"tokens": ids, "ref_losses": [0.0] * len(ids), "noise": noise, "ends": ends, "text": t[: ends[-1]]})
  return rows


def _reference_stage_config(ctx: Context) -> dict[str, Any]:
  c, a = ctx.config.corpus, ctx.config.ablation
  return dict(
    as_json(ctx.config.reference),
    architecture={
      k: getattr(a, k)
      for k in (
        "hidden_size",
        "intermediate_size",
        "num_layers",
        "num_heads",
        "num_kv_heads",
        "tie_embeddings",
        "seq_len",
        "batch_size",
        "learning_rate",
        "warmup_steps",
        "eval_every",
        "max_vocab",
        "vocabulary",
        "doc_tokens",
        "validation_docs",
        "validation_doc_tokens",
      )
    },
    task=c.task,
    validation_split=c.validation_split,
  )


def reference_texts(ctx: Context) -> tuple[list[tuple[str, str]], dict[str, Any]]:
  """The trained reference model's text ``[(id, text)]`` (``ReferenceConfig``) without any document of the real
  pool or of the validation documents (``reference_model.disjoint``), and where it came from with the counts."""
  from tokensift.core import paths
  from tokensift.pipeline import reference_model as rm

  r, c, a = ctx.config.reference, ctx.config.corpus, ctx.config.ablation
  if r.train_files:
    files = tuple(f if "://" in f or Path(f).is_absolute() else str(paths.data_dir() / f) for f in r.train_files)
    inp = docs.DocumentInput(files=files).validate()
    rows = itertools.islice(inp.rows(docs.ShardSpec()), r.train_docs)
    source = "files " + ", ".join(r.train_files)
  else:
    task = r.train_task or c.task
    rows_fn, _ = ctx.task_rows(task, r.train_split, None)
    rows = itertools.islice(rows_fn(docs.ShardSpec()), r.train_docs)
    source = f"{task}:{r.train_split}"
  candidates = [(d.id, d.text) for d in docs.documents_only(rows, docs.ReadReport())]
  pool_rows, _ = ctx.source_rows()
  pool = [(d.id, d.text) for d in docs.documents_only(pool_rows(docs.ShardSpec()), docs.ReadReport())]
  validation = ctx.task_texts(c.task, c.validation_split, max(a.validation_docs, c.validation_docs))
  kept, counts = rm.disjoint(candidates, pool, validation)
  return kept, dict(counts, source=source, docs=len(kept))


def _reference_stage(ctx: Context, out: Path) -> dict[str, Any]:
  """Trains the reference model (``pipeline.reference_model``) and writes its log perplexity of every unit row
  of the perplexity stage (``doc_losses.jsonl``), its params and the compact vocabulary."""
  import json

  from tokensift.pipeline import ablation_data as ad
  from tokensift.pipeline import evidence
  from tokensift.pipeline import reference_model as rm
  from tokensift.tasks import vocabularies

  a, r = ctx.config.ablation, ctx.config.reference
  texts, src = reference_texts(ctx)
  tokenizer = vocabularies.smollm2().tokenizer
  train = []
  for _, t in texts:
    ids, noise, ends = _tokenize(tokenizer, t, a.doc_tokens, [])
    if ids:
      train.append({"tokens": ids, "ref_losses": [0.0] * len(ids), "noise": noise, "ends": ends, "text": t[: ends[-1]]})
  tl = evidence.token_losses(ctx)
  keys = list(tl)
  units = ad.unit_docs(a, [tl[k] for k in keys])
  by_key = dict(zip(keys, units))
  pool = {"contaminated": [by_key[k] for k in keys if k[0] == "raw"]}
  pool["refined_pool"] = [
    by_key[("refined", i)] if ("refined", i) in by_key else by_key[("raw", i)] for i in evidence.refined_pool_ids(ctx)
  ]
  mapping = ad.vocabulary_mapping(a, pool)
  params, res, trainer = rm.train_reference(
    a, r.steps, ad.unit_docs(a, train), ad.unit_docs(a, validation_rows(ctx)), mapping, out / "run", seed=r.seed
  )
  lp = rm.doc_log_ppl(trainer, params, units, mapping)
  rows = [
    {"source": s, "id": i, "log_ppl": None if not np.isfinite(v) else float(v), "units": len(u["tokens"])}
    for (s, i), v, u in zip(keys, lp.tolist(), units)
  ]
  jobs.atomic_write_bytes(out / rm.DOC_LOSSES_FILE, "".join(json.dumps(x) + "\n" for x in rows).encode())
  rm.save(out, params, mapping)
  summary = {k: v for k, v in res.items() if k not in ("train_curve", "slm_selection")}
  summary.update(text=src, units_name=ad.UNITS[a.vocabulary])
  jobs.atomic_write_bytes(out / "reference.json", json.dumps(summary).encode())
  return dict(
    summary,
    final_val_ce=res["final_val_ce"][0] if res["final_val_ce"] else None,
    docs_in=src["candidates"],
    docs_out=len(train),
    tokens_in=res["units"],
    tokens_out=res["units"],
  )


def _ablations_config(ctx: Context) -> dict[str, Any]:
  c = ctx.config.corpus
  return dict(
    as_json(ctx.config.ablation),
    selection_seed=ctx.config.selection.seed,
    task=c.task,
    validation_split=c.validation_split,
  )


def _ablations(ctx: Context, out: Path) -> dict[str, Any]:
  import json

  from tokensift.pipeline import ablations, evidence, evidence_summary

  ids, rows = evidence.data_sets(ctx)
  val = validation_rows(ctx)
  ref = {}
  if ctx.config.reference.kind == "trained":
    from tokensift.pipeline import reference_model as rm

    params, mapping = rm.load(ctx.dir("reference"))
    ref = {"reference": params, "mapping": mapping}
  res = ablations.run_ablations(ctx.config.ablation, rows, val, out / "runs", **ref)
  res["reference"] = {"kind": ctx.config.reference.kind}
  if ref:
    res["reference"].update(json.loads((ctx.dir("reference") / "reference.json").read_text()))
  else:
    res["reference"]["model"] = ctx.config.reference.model
  res["ids"] = ids
  jobs.atomic_write_bytes(out / "ablations.json", json.dumps(res).encode())
  table = evidence_summary.ablation_table(res)
  return {
    "table": table,
    "docs_in": len(ids["contaminated"]),
    "docs_out": len(ids["contaminated"]),
    "tokens_in": sum(len(r["tokens"]) for r in rows["contaminated"]),
    "tokens_out": None,
  }


def read_ablations(ctx: Context) -> dict[str, Any] | None:
  path = ctx.dir("ablations") / "ablations.json"
  if not path.exists():
    return None
  import json

  return json.loads(path.read_text())


# --------------------------------------------------------------------------------------------- detection


def _detection_config(ctx: Context) -> dict[str, Any]:
  return {"rate": ctx.config.ablation.rate}


def _detection(ctx: Context, out: Path) -> dict[str, Any]:
  import json

  from tokensift.pipeline import evidence

  labels = _labels(ctx)
  res: dict[str, Any] = {"corpus": ka.summarize(list(labels.values()))}
  for stage, name in (("refine", "prox_refiner"), ("refine_rules", "prox_rules")):
    got = evidence.prox_detection(ctx, stage, labels)
    if got:
      res[name] = got
  res["real_dropped"] = evidence.real_dropped(ctx, labels)  # the refiner's share of real documents dropped, the rules'
  res["selection"] = evidence.selection_detection(ctx, labels)
  res["density"] = evidence.density_detection(ctx, labels)
  abl = read_ablations(ctx)
  if abl:
    res["slm"] = evidence.slm_detection(abl, ctx.config.ablation.slm_ratio)
  jobs.atomic_write_bytes(out / "detection.json", json.dumps(res, indent=1).encode())
  return dict(res, docs_in=len(labels), docs_out=len(labels))


def stages(ctx: Context) -> list[Stage]:
  """The stage that comes first (``corpus``; only with ``known_answer.enabled``)."""
  if not ctx.config.known_answer.enabled:
    return []
  return [
    Stage(
      "corpus", (), _corpus_config, _corpus, "known-answer corpus: the real sample + labelled synthetic corruptions"
    )
  ]


def late_stages(ctx: Context) -> list[Stage]:
  """After ``select``: perplexity, the seeded ablations, and (known-answer corpus only) the detection figures."""
  out = []
  trained = ctx.config.reference.kind == "trained"
  if ctx.config.ablation.enabled:
    out += [
      Stage(
        "perplexity",
        ("refine", "select"),
        _perplexity_config,
        _perplexity,
        "the ablations' units of every document (SmolLM2 tokenizer; the reference stage scores them)"
        if trained
        else "the ablations' units + pretrained reference-model token losses (perplexity baseline, Rho-1)",
      ),
    ]
    if trained:
      out.append(
        Stage(
          "reference",
          ("perplexity",),
          _reference_stage_config,
          _reference_stage,
          "Rho-1 reference model: the ablation models' kind, trained on clean held-out text",
        )
      )
    out += [
      Stage(
        "ablations",
        ("perplexity", "score", "density", "select") + (("reference",) if trained else ()),
        _ablations_config,
        _ablations,
        f"tiny decoders x {ctx.config.ablation.seeds} seeds on each data set",
      ),
    ]
  if ctx.config.known_answer.enabled and ctx.config.ablation.enabled:
    deps = ("corpus", "refine", "ablations") + (("refine_rules",) if ctx.config.refine.compare_rules else ())
    out.append(Stage("detection", deps, _detection_config, _detection, "every method against the corpus labels"))
  return out
