"""ASK-LLM distilled onto the DENSITY embeddings: a cheap head predicts the judge's score from the embedding
every document already has (the practice of FineWeb-Edu's classifier, Marin's Datashop, NeMo Curator).

Fitting (``distill``): the ASK-LLM score job's records (``score_job``: ``{id, score, logp_yes, logp_no, ...}``)
joined on document id with the embed job's output (``embed_job``: ``{id, embedding [d], ...}``). The target is
in logit space: ``logit`` (default) = logit of P("yes") = ``logp_yes - log(1 - exp(logp_yes))``; ``normalized`` =
logit of yes / (yes + no) = ``logp_yes - logp_no``. Records without a finite target (missing, NaN, P(yes) = 1) are
counted (``nan_scores``) and skipped. A deterministic held-out split: a document is held out when the hash of
``(seed, id)`` falls below ``holdout`` percent, so the split does not depend on order or sharding. The head
(``distill_head``: ridge or a small MLP) is fitted on the rest and written to ``out_dir``:

- ``head.safetensors``: float64 params; ``head.json``: the config (head kind, target, embedding model and
  dimension, judge, penalty, document counts, the params' sha256);
- ``fidelity.json``: on the held-out documents, Spearman and Kendall tau of the head against the judge's target
  (scipy.stats) and the top-k overlap at the paper's rates (``keep_count`` on the held-out count).

Scoring (``score_embeddings``): a map over the embed job's output through ``jobs.run_sharded`` (sharded,
resumable, byte-identical after a kill + rerun; multi-host as the other jobs: ``multihost.host_shard``). Shard ``i``
of ``n`` reads only its own split of the embed job's files (``EmbeddingRows``: the document layer's units, whole
files when there are >= n, else Parquet row-group ranges or JSON-lines byte ranges, read by ``docs.read_units``
with this module's row converter), in unit order; every shard in one Beam pipeline: ``beam_distill``. Records
have the judge's schema, so ``topk``, ``select`` and the variants take either::

  {"id", "score" (= sigmoid(head): the P("yes") or the share the head predicts), "logp_yes", "logp_no" (None),
   "tokens", "truncated" (from the embed job), "head_logit", "scorer" ("distilled:<params sha256[:16]>")}

An embed job whose model differs from the head's is refused (ValueError naming both).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tokensift.core import jobs, storage
from tokensift.selection import distill_head
from tokensift.selection.keep import PAPER_RATES, check_rate, keep_count

TARGETS = ("logit", "normalized")
HEAD_FILE, CONFIG_FILE, REPORT_FILE = "head.safetensors", "head.json", "fidelity.json"
SCORE_JOB = "score"  # the judge's job name: topk and select read head scores exactly as judge scores


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """head: the head (``distill_head.HeadConfig``). target: ``logit`` or ``normalized`` (module docstring).
  holdout: percent of documents held out for the fidelity report. rates: the top-k overlap rates (percent)."""

  head: distill_head.HeadConfig = distill_head.HeadConfig()
  target: str = "logit"
  holdout: float = 20.0
  seed: int = 0
  rates: tuple[float, ...] = PAPER_RATES

  def __post_init__(self):
    if self.target not in TARGETS:
      raise ValueError(f"target {self.target!r}: use one of {TARGETS}")
    if check_rate(self.holdout, "holdout") >= 100:
      raise ValueError(f"holdout {self.holdout!r} must be below 100 percent (some documents must train the head)")
    for r in self.rates:
      check_rate(r, "rate")


# ------------------------------------------------------------------------------------------------ data


def judge_target(record: Mapping[str, Any], target: str = "logit") -> float:
  """The head's regression target for one score record (NaN when it has none; see the module docstring)."""
  ly, ln = record.get("logp_yes"), record.get("logp_no")
  if not isinstance(ly, (int, float)) or math.isnan(ly):
    return math.nan
  if target == "logit":
    return float(ly - math.log(-math.expm1(ly))) if ly < 0 else math.nan
  if not isinstance(ln, (int, float)) or math.isnan(ln):
    return math.nan
  return float(ly - ln)


def judge_targets(records: Iterable[Mapping[str, Any]], target: str = "logit") -> tuple[list[str], np.ndarray, dict]:
  """(ids, float64 [n] targets, counts) of score records: the first record of a repeated id; records without a
  finite target are counted in ``nan_scores`` and skipped."""
  ids, ys, seen = [], [], set()
  nan = repeated = 0
  for r in records:
    doc_id = str(r.get("id"))
    if doc_id in seen:
      repeated += 1
      continue
    seen.add(doc_id)
    y = judge_target(r, target)
    if not math.isfinite(y):
      nan += 1
      continue
    ids.append(doc_id)
    ys.append(y)
  return ids, np.asarray(ys, np.float64), {"nan_scores": nan, "repeated_ids": repeated}


def join(
  score_ids: Sequence[str], y: np.ndarray, emb_ids: Sequence[str], x: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
  """Documents both judged and embedded, in the scores' order: (ids, x [m, d], y [m]). ValueError when none."""
  pos = {i: k for k, i in enumerate(emb_ids)}
  keep = [k for k, i in enumerate(score_ids) if i in pos]
  if not keep:
    raise ValueError(
      f"no document id is both scored ({len(score_ids)} ids, e.g. {list(score_ids[:2])}) and embedded "
      f"({len(emb_ids)} ids, e.g. {list(emb_ids[:2])}): were both jobs run on the same input?"
    )
  ids = [score_ids[k] for k in keep]
  return ids, x[[pos[i] for i in ids]], y[keep]


def id_hash(ids: Sequence[str], key: str) -> np.ndarray:
  """float64 [n] in [0, 1): blake2b of ``(key, id)`` per document, a uniform draw fixed by the id alone (no
  dependence on order or sharding); distinct keys give independent draws."""
  u = [int.from_bytes(hashlib.blake2b(f"{key}\x00{i}".encode(), digest_size=8).digest(), "big") / 2.0**64 for i in ids]
  return np.asarray(u, np.float64)


def heldout_mask(ids: Sequence[str], percent: float, seed: int = 0) -> np.ndarray:
  """bool [n]: documents held out, by a hash of ``(seed, id)`` below ``percent``% (order- and shard-free)."""
  return id_hash(ids, str(seed)) < percent / 100.0


def fidelity(pred: np.ndarray, truth: np.ndarray, rates: Sequence[float] = PAPER_RATES) -> dict[str, Any]:
  """Spearman and Kendall tau of ``pred`` against ``truth`` ([n] each) and the top-k overlap (|head's top k ∩
  judge's top k| / k, k = keep_count(n, rate)) at each rate."""
  from scipy import stats

  pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
  n = pred.size
  out: dict[str, Any] = {"docs": n, "spearman": None, "kendall": None, "topk_overlap": {}}
  if n >= 2:
    out["spearman"] = float(stats.spearmanr(pred, truth).statistic)  # pyright: ignore[reportAttributeAccessIssue]  (scipy's result object)
    out["kendall"] = float(stats.kendalltau(pred, truth).statistic)  # pyright: ignore[reportAttributeAccessIssue]  (scipy's result object)
  idx = np.arange(n)
  by_pred, by_truth = np.lexsort((idx, -pred)), np.lexsort((idx, -truth))
  for r in rates:
    k = keep_count(n, r)
    out["topk_overlap"][f"{r:g}"] = len(set(by_pred[:k].tolist()) & set(by_truth[:k].tolist())) / k if k else None
  return out


def job_config(path: str | os.PathLike, name: str) -> dict[str, Any]:
  """The config stored in a finished job's first completion marker ({} for a single file or no marker)."""
  fs, p = storage.url_to_fs(str(path))
  markers = storage.listdir(str(path), f"{name}-*-of-*.done") if fs.isdir(p) else []
  return json.loads(storage.read_bytes(markers[0])).get("config", {}) if markers else {}


# ------------------------------------------------------------------------------------------------- fitting


@dataclasses.dataclass(frozen=True)
class Head:
  """A fitted head: its params (``distill_head``) and config (``head.json``)."""

  params: dict[str, np.ndarray]
  config: dict[str, Any]

  @property
  def scorer(self) -> str:
    return f"distilled:{self.config['params_sha256'][:16]}"

  def logits(self, x: np.ndarray) -> np.ndarray:
    return distill_head.predict(self.params, x)


def _params_hash(params: Mapping[str, np.ndarray]) -> str:
  h = hashlib.sha256()
  for k in sorted(params):
    h.update(k.encode() + np.ascontiguousarray(params[k], np.float64).tobytes())
  return h.hexdigest()


def fit_head(
  ids: Sequence[str], x: np.ndarray, y: np.ndarray, cfg: DistillConfig = DistillConfig()
) -> tuple[Head, dict[str, Any]]:
  """Fits the head on the documents not held out; returns (head, fidelity report on the held-out ones)."""
  held = heldout_mask(ids, cfg.holdout, cfg.seed)
  if held.all() or (~held).sum() < 3:
    raise ValueError(
      f"{int((~held).sum())} of {len(ids)} documents left to train after holding out "
      f"{cfg.holdout:g}%: judge more documents"
    )
  params, info = distill_head.fit(x[~held], y[~held], cfg.head)
  config = {
    "head": cfg.head.kind,
    "target": cfg.target,
    "dim": int(x.shape[1]),
    "train_docs": int((~held).sum()),
    "heldout_docs": int(held.sum()),
    "holdout": cfg.holdout,
    "seed": cfg.seed,
    **info,
    "head_config": dataclasses.asdict(cfg.head),
    "params_sha256": _params_hash(params),
  }
  head = Head(params, config)
  report: dict[str, Any] = fidelity(head.logits(x[held]), y[held], cfg.rates) if held.any() else {"docs": 0}
  report["train"] = fidelity(head.logits(x[~held]), y[~held], ())
  return head, report


def distill(
  scores: str | os.PathLike,
  embeddings: str | os.PathLike,
  out_dir: str | os.PathLike,
  cfg: DistillConfig = DistillConfig(),
) -> tuple[Head, dict[str, Any]]:
  """Fits a head from a judge's score job (dir or file) and an embed job; writes ``head.safetensors``,
  ``head.json`` and ``fidelity.json`` into ``out_dir``; returns (head, report)."""
  from tokensift.selection import embed_job, topk

  s_ids, y, counts = judge_targets(topk.load_score_records(scores), cfg.target)
  e_ids, x = embed_job.load_embeddings(embeddings)
  ids, xj, yj = join(s_ids, y, e_ids, x)
  head, report = fit_head(ids, xj, yj, cfg)
  emb_cfg, judge_cfg = job_config(embeddings, embed_job.JOB_NAME), job_config(scores, SCORE_JOB)
  config = dict(
    head.config,
    embedding_model=emb_cfg.get("model"),
    embedding_max_length=emb_cfg.get("max_length"),
    judge=judge_cfg.get("model"),
    judge_max_length=judge_cfg.get("max_length"),
    scores=str(scores),
    embeddings=str(embeddings),
  )
  report.update(
    counts,
    judged=len(s_ids) + counts["nan_scores"],
    embedded=len(e_ids),
    joined=len(ids),
    scored_not_embedded=len(s_ids) - len(ids),
    judge=config["judge"],
    head=cfg.head.kind,
  )
  head = Head(head.params, config)
  write_head(out_dir, head, report)
  return head, report


def write_head(out_dir: str | os.PathLike, head: Head, report: dict[str, Any] | None = None) -> Path:
  """Writes ``head.safetensors`` (the config also in its metadata), ``head.json`` and, when given, ``fidelity.json``
  into ``out_dir`` (each atomically); returns the directory."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  tmp = out / f".{HEAD_FILE}.tmp-{os.getpid()}"
  meta = json.dumps(head.config, sort_keys=True, default=str)
  distill_head.save_params(tmp, head.params, {"config": meta})
  os.replace(tmp, out / HEAD_FILE)
  jobs.atomic_write_bytes(out / CONFIG_FILE, json.dumps(head.config, indent=1, sort_keys=True, default=str).encode())
  if report is not None:
    jobs.atomic_write_bytes(out / REPORT_FILE, json.dumps(report, indent=1, sort_keys=True, default=str).encode())
  return out


def load_head(head_dir: str | os.PathLike) -> Head:
  """The head a ``distill`` run wrote (FileNotFoundError naming a missing file)."""
  d = Path(head_dir)
  for f in (HEAD_FILE, CONFIG_FILE):
    if not (d / f).is_file():
      raise FileNotFoundError(f"{str(d / f)!r} does not exist: is {str(d)!r} a `distill` output directory?")
  config = json.loads((d / CONFIG_FILE).read_text())
  params = distill_head.load_params(d / HEAD_FILE)
  if _params_hash(params) != config.get("params_sha256"):
    raise ValueError(f"{str(d / HEAD_FILE)!r} does not match the params hash in {str(d / CONFIG_FILE)!r}")
  return Head(params, config)


# ------------------------------------------------------------------------------------------------- scoring


def head_records(batch: list, head: Head) -> list[dict[str, Any]]:
  """Judge-schema records for one piece of embedded documents (``Document.meta``: embedding, tokens, truncated)."""
  if not batch:
    return []
  z = head.logits(np.stack([d.meta["embedding"] for d in batch]))
  out = []
  for d, v in zip(batch, z.tolist()):
    log_yes = -math.log1p(math.exp(-v)) if v > -30 else v  # log sigmoid
    out.append(
      {
        "id": d.id,
        "score": math.exp(log_yes),
        "logp_yes": log_yes,
        "logp_no": None,
        "tokens": d.meta.get("tokens"),
        "truncated": d.meta.get("truncated"),
        "head_logit": v,
        "scorer": head.scorer,
      }
    )
  return out


def embedding_units(embeddings: str | os.PathLike, count: int) -> list:
  """The embed job's output files cut into input units for ``count`` shards, as the document layer cuts its inputs
  (``docs.plan_units``: whole files when there are at least ``count``, else Parquet row-group ranges (the embed job
  writes one row group per piece) or JSON-lines byte ranges). Shard ``i`` reads ``docs.shard_units(units, i)``."""
  from tokensift.core import docs
  from tokensift.selection import embed_job

  files = [str(f) for f in embed_job.embedding_files(embeddings)]
  return docs.plan_units([(f, f.rstrip("/").rsplit("/", 1)[-1]) for f in files], count)


class EmbeddingRows:
  """Rows for ``run_sharded`` from an embed job's output: shard ``i/n`` reads only its own units
  (``embedding_units``) in unit order, each row a ``Document(id, "", {embedding, tokens, truncated})``; an id seen
  again in the shard is a counted skip (``docs.unique_ids``). ``bytes_read``: the input bytes the shard read.
  ValueError naming a row whose embedding has another dimension, nulls or non-finite values."""

  def __init__(self, embeddings: str | os.PathLike, dim: int, shard: jobs.ShardSpec = jobs.ShardSpec()):
    from tokensift.core import docs

    self.embeddings, self.dim, self.shard = str(embeddings), int(dim), shard
    self.units = docs.shard_units(embedding_units(embeddings, shard.count), shard)
    self._counter = [0]

  @property
  def bytes_read(self) -> int:
    return self._counter[0]

  def __iter__(self):
    from tokensift.core import docs

    items = docs.read_units(self.units, counter=self._counter, convert=self._row)
    return iter(docs.unique_ids(items))

  def _row(self, row: Any, where: str, default_id: str):
    from tokensift.core import docs

    if not isinstance(row, dict) or row.get("id") in (None, ""):
      return docs.Skip("missing field 'id'", where)
    doc_id, vec = str(row["id"]), row.get("embedding")
    arr = np.asarray(vec, np.float32) if isinstance(vec, list) else None  # (a null element becomes NaN)
    if arr is None or arr.shape != (self.dim,) or not np.isfinite(arr).all():
      shape = None if arr is None else arr.shape
      raise ValueError(
        f"embedding of {doc_id!r} in {self.embeddings!r} ({where}) has shape {shape} or null or non-finite "
        f"values; the head needs [{self.dim}] finite"
      )
    return docs.Document(doc_id, "", {"embedding": arr, "tokens": row.get("tokens"), "truncated": row.get("truncated")})


def embedding_rows(embeddings: str | os.PathLike, dim: int):
  """``shard -> EmbeddingRows(embeddings, dim, shard)``: the ``rows`` callable of ``run_sharded``."""
  return lambda shard=jobs.ShardSpec(): EmbeddingRows(embeddings, dim, shard)


def check_embedding_model(head: Head, embeddings: str | os.PathLike) -> None:
  """ValueError naming both models when the embed job's model is not the one the head was fitted on."""
  from tokensift.selection import embed_job

  got, want = job_config(embeddings, embed_job.JOB_NAME).get("model"), head.config.get("embedding_model")
  if got is not None and want is not None and str(got) != str(want):
    raise ValueError(
      f"embeddings in {str(embeddings)!r} come from model {got!r} but the head was fitted on "
      f"{want!r}: embed with the head's model"
    )


def score_embeddings(
  head_dir: str | os.PathLike,
  embeddings: str | os.PathLike,
  out_dir: str | os.PathLike,
  *,
  shard: jobs.ShardSpec = jobs.ShardSpec(),
  piece_size: int = 4096,
  fmt: str = "jsonl",
  progress: bool = True,
) -> jobs.ShardResult:
  """Shard ``shard`` of the scoring job: the head over an embed job's output into ``out_dir`` (``score-*`` files,
  the judge's schema plus ``scorer``; see the module docstring)."""
  head = load_head(head_dir)
  check_embedding_model(head, embeddings)
  return jobs.run_sharded(
    name=SCORE_JOB,
    out_dir=out_dir,
    rows=embedding_rows(embeddings, head.config["dim"]),
    process=lambda batch: head_records(batch, head),
    shard=shard,
    piece_size=piece_size,
    fmt=fmt,
    config=score_config(head, embeddings),
    summarize=_summarize,
    finish=_finish,
    progress=progress,
  )


def score_config(head: Head, embeddings: str | os.PathLike) -> dict[str, Any]:
  """The config ``score_embeddings`` stores in its markers (a rerun with another is refused)."""
  return {"scorer": head.scorer, "head": head.config, "embeddings": str(embeddings)}


def embed_and_score(
  head_dir: str | os.PathLike,
  rows,
  out_dir: str | os.PathLike,
  embed_cfg=None,
  *,
  shard: jobs.ShardSpec = jobs.ShardSpec(),
  piece_size: int = 256,
  fmt: str = "jsonl",
  input_desc: str = "",
  progress: bool = True,
  total: int | None = None,
  embedder=None,
) -> jobs.ShardResult:
  """Documents -> head scores in one pass (no embed job output kept): shard ``shard`` of ``rows`` (a
  ``docs.DocumentInput`` or a callable ``shard -> rows``) embedded with ``embed_cfg`` (an
  ``embed_job.EmbedJobConfig``; default: the model the head was fitted on) and scored. Same records as
  ``score_embeddings``; ValueError naming both models when the embedder is not the head's."""
  from tokensift.core import docs
  from tokensift.selection import embed_job

  head = load_head(head_dir)
  if embed_cfg is None:
    embed_cfg = embed_job.EmbedJobConfig(
      model=head.config.get("embedding_model"), max_length=head.config.get("embedding_max_length")
    )
  embedder = embedder or embed_job.Embedder(embed_cfg)
  want = head.config.get("embedding_model")
  if want is not None and str(embedder.model) != str(want):
    raise ValueError(f"the embedder loads model {str(embedder.model)!r} but the head was fitted on {want!r}")

  def process(batch):
    recs = embed_job.records_for(batch, embedder, embed_cfg.output_dtype)
    return head_records(
      [
        docs.Document(
          r["id"],
          "",
          {"embedding": np.asarray(r["embedding"], np.float32), "tokens": r["tokens"], "truncated": r["truncated"]},
        )
        for r in recs
      ],
      head,
    )

  config = {"scorer": head.scorer, "head": head.config, "embed": embed_job.job_config(embed_cfg, embedder, input_desc)}
  return jobs.run_sharded(
    name=SCORE_JOB,
    out_dir=out_dir,
    rows=rows,
    process=process,
    shard=shard,
    piece_size=piece_size,
    fmt=fmt,
    config=config,
    summarize=_summarize,
    finish=_finish,
    progress=progress,
    total=total,
  )


def _summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
  return {"sum_score": math.fsum(r["score"] for r in records)}


def _finish(stats: dict[str, Any]) -> dict[str, Any]:
  n = stats.get("records", 0)
  return dict(stats, mean_score=stats.get("sum_score", 0.0) / n if n else 0.0)
