"""Resumable sharded offline jobs (refine, score, embed, reference losses).

Conventions (DESIGN §2, §11; after datatrove executors and t5x ``infer``'s ``shard_id/num_shards``):

- a job runs as shard ``i`` of ``n`` and reads **only its own split** of the input: ``rows`` is a
  ``docs.DocumentInput`` (or a callable ``shard -> rows``) that yields that shard's rows only (files, row groups,
  byte ranges or seqio ``shard_info``; see ``tokensift.core.docs``);
- inside a shard, rows are processed in pieces of ``piece_size`` rows; each finished piece is written (in the
  output format) and then its small ``.meta.json`` (skip counts and the piece's summary), so a run killed at any
  point (SIGKILL) loses at most the piece in flight; a rerun skips the finished pieces, then the finished shard;
- when every piece is done the shard file ``{name}-{i:05d}-of-{n:05d}.{jsonl|parquet}`` is assembled by
  *streaming* the pieces (JSON lines copied; Parquet through one ``ParquetWriter``, one row group per piece) and
  the stats are merged from the pieces' summaries, so a shard's peak memory is one piece, whatever its size; then
  the completion marker ``....done`` is written: it is the commit (on object stores too). The output of a
  killed-and-rerun job is byte-identical to an uninterrupted one as long as ``process`` is deterministic;
- a lock file ``{stem}.lock`` (host and pid) keeps a second process off a running shard; a lock left by a killed
  process on the same host is taken over;
- outputs go through ``tokensift.core.storage`` (fsspec): ``out_dir`` may be a local path or a URL (``gs://``,
  ``memory://``).
"""

from __future__ import annotations

import contextvars
import json
import shutil
import time
from typing import Any, Callable, Iterable

from tokensift.core import storage
from tokensift.core.docs import Document, DocumentInput, ReadReport, ShardSpec, Skip  # ShardSpec re-exported

Record = dict[str, Any]
atomic_write_bytes = storage.atomic_write_bytes  # the one atomic writer (local rename / object upload)
FORMATS = ("jsonl", "parquet")


def _jsonl_bytes(records: Iterable[Record]) -> bytes:
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def read_records(path, *, missing_ok: bool = False) -> list[Record]:
  """Records of a job output file or any JSON-lines file (``.jsonl`` or ``.parquet``; local path or URL): the
  project's one reader of JSON lines (blank lines skipped). ``missing_ok``: ``[]`` for a path that does not exist
  (else FileNotFoundError)."""
  if missing_ok and not storage.exists(str(path)):
    return []
  return list(iter_records(path))


def iter_records(path) -> Iterable[Record]:
  """Records of a job output file, streamed (Parquet a record batch at a time)."""
  url = str(path)
  if url.endswith(".parquet"):
    import pyarrow.parquet as pq

    with storage.open_file(url) as f:
      for batch in pq.ParquetFile(f).iter_batches(batch_size=1024):
        yield from batch.to_pylist()
    return
  with storage.open_file(url) as f:
    for line in f:
      if line.strip():
        yield json.loads(line)


def merge_stats(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
  """Adds two summaries: numbers add, dicts merge recursively, lists become their sorted union, other values
  stay when equal (else both are listed)."""
  out = dict(a)
  for k, v in b.items():
    if k not in out:
      out[k] = v
    elif isinstance(v, bool) or isinstance(out[k], bool):
      out[k] = out[k] if out[k] == v else sorted({out[k], v})
    elif isinstance(v, (int, float)) and isinstance(out[k], (int, float)):
      out[k] = out[k] + v
    elif isinstance(v, dict) and isinstance(out[k], dict):
      out[k] = merge_stats(out[k], v)
    elif isinstance(v, list) and isinstance(out[k], list):
      out[k] = sorted(set(out[k]) | set(v))
    elif out[k] != v:
      out[k] = sorted({json.dumps(out[k]), json.dumps(v)})
  return out


class ShardResult:
  """What one shard produced: its output file (``Path`` locally, else URL), stats, and whether this call did the
  work."""

  def __init__(self, path, stats: dict[str, Any], resumed_pieces: int = 0, skipped_done: bool = False):
    self.path, self.stats, self.resumed_pieces, self.skipped_done = path, stats, resumed_pieces, skipped_done


def shard_files(out_dir, name: str, fmt: str | None = None) -> list:
  """The finished shard files of a job (those with a completion marker), in shard order."""
  files = []
  for marker in storage.listdir(str(out_dir), f"{name}-*-of-*.done"):
    info = json.loads(storage.read_bytes(marker))
    files.append(storage.as_local_or_url(storage.join(str(out_dir), info["file"])))
  if fmt:
    files = [f for f in files if str(f).endswith("." + fmt)]
  return files


def _shard_numbers(f) -> tuple[int, int]:
  """(index, count) of a shard file named ``...-{index}-of-{count}.*``."""
  import re

  m = re.search(r"-(\d+)-of-(\d+)\.", str(f))
  if m is None:
    raise ValueError(f"{str(f)!r} is not a shard file (no -INDEX-of-COUNT. in its name)")
  return int(m.group(1)), int(m.group(2))


def finished_files(path, name: str, what: str = "job output") -> list:
  """The output files of a finished job directory (every shard, in order), or ``[path]`` for one file.

  Raises FileNotFoundError for a missing path and ValueError naming unfinished shards or mixed shard counts.
  """
  url = str(path)
  fs, p = storage.url_to_fs(url)
  if not fs.exists(p):
    raise FileNotFoundError(f"{what} {url!r} do not exist")
  if fs.isfile(p):
    return [storage.as_local_or_url(url)]
  files = shard_files(url, name)
  if not files:
    raise ValueError(f"{url!r} holds no finished {name!r} shard (no {name}-*-of-*.done marker)")
  numbers = [_shard_numbers(f) for f in files]
  counts = {count for _, count in numbers}
  if len(counts) != 1:
    raise ValueError(f"{url!r} mixes {name} jobs with different shard counts {sorted(counts)}")
  n = counts.pop()
  have = {index for index, _ in numbers}
  missing = sorted(set(range(n)) - have)
  if missing:
    raise ValueError(f"{name} job in {url!r} is unfinished: shards {missing} of {n} have no .done marker")
  return files


def _piece_url(work: str, k: int, ext: str) -> str:
  return storage.join(work, f"piece-{k:06d}.{ext}")


def _write_piece(url: str, records: list[Record], fmt: str, schema) -> None:
  if fmt == "jsonl":
    storage.atomic_write_bytes(url, _jsonl_bytes(records))
    return
  import pyarrow as pa
  import pyarrow.parquet as pq

  table = pa.Table.from_pylist(records, schema=schema) if (records or schema is not None) else pa.table({})
  with storage.AtomicOutput(url) as f:
    pq.write_table(table, f, compression="zstd")


def _assemble(final: str, pieces: list[str], fmt: str, schema) -> None:
  """Streams the pieces into ``final`` (one piece in memory at a time)."""
  if fmt == "jsonl":
    with storage.AtomicOutput(final) as out:
      for p in pieces:
        with storage.open_file(p) as f:
          shutil.copyfileobj(f, out, 1 << 20)  # pyright: ignore[reportArgumentType]  (opened "rb": bytes to bytes)
    return
  import pyarrow as pa
  import pyarrow.parquet as pq

  if schema is None:
    schemas = []
    for p in pieces:
      with storage.open_file(p) as f:
        s = pq.read_schema(f)
      if len(s):
        schemas.append(s)
    schema = pa.unify_schemas(schemas) if schemas else pa.schema([("id", pa.string())])
  with storage.AtomicOutput(final) as out:
    writer = pq.ParquetWriter(out, schema, compression="zstd")
    for p in pieces:
      with storage.open_file(p) as f:
        table = pq.read_table(f)
      if table.num_rows:
        writer.write_table(table.select(schema.names).cast(schema))
    writer.close()


def work_dir(out_dir: str, stem: str) -> str:
  """The directory of a running shard's pieces."""
  return storage.join(out_dir, f".{stem}.pieces")


def write_piece(
  work: str, k: int, records: list[Record], report_piece: ReadReport, *, fmt: str, schema, summarize, config_json: str
) -> None:
  """Writes piece ``k`` of a shard (records, then its ``.meta.json``: the commit of the piece). The first piece
  creates the work dir and its ``config.json``. Used by ``run_sharded`` and by the Beam refine pipeline."""
  if k == 0:  # the work dir appears with the first piece: a failed start leaves nothing behind
    storage.makedirs(work)
    storage.atomic_write_bytes(storage.join(work, "config.json"), config_json.encode())
  _write_piece(_piece_url(work, k, fmt), records, fmt, schema)
  meta = {
    "records": len(records),
    "skips": report_piece.to_dict(),
    "summary": summarize(records) if summarize is not None else {},
  }
  storage.atomic_write_bytes(_piece_url(work, k, "meta.json"), json.dumps(meta).encode())


def piece_done(work: str, k: int) -> bool:
  return storage.exists(_piece_url(work, k, "meta.json"))


def commit_shard(
  out_dir: str, stem: str, n_pieces: int, *, fmt: str, schema, config_json: str, finish=None
) -> dict[str, Any]:
  """Merges the stats of a shard's ``n_pieces`` finished pieces, assembles the shard file, writes the completion
  marker and removes the pieces; returns the stats stored in the marker."""
  work = work_dir(out_dir, stem)
  report = ReadReport()
  n_records = 0
  summary: dict[str, Any] = {}
  for k in range(n_pieces):
    meta = json.loads(storage.read_bytes(_piece_url(work, k, "meta.json")))
    n_records += meta["records"]
    for reason, c in meta["skips"]["skipped"].items():
      report.skipped[reason] += c
    report.examples.extend(meta["skips"]["examples"][: max(0, 20 - len(report.examples))])
    summary = merge_stats(summary, meta["summary"])
  stats = {
    "records": n_records,
    "skipped": dict(sorted(report.skipped.items())),
    "skipped_examples": report.examples,
    **summary,
  }
  if finish is not None:
    stats = finish(stats)
  _assemble(storage.join(out_dir, f"{stem}.{fmt}"), [_piece_url(work, k, fmt) for k in range(n_pieces)], fmt, schema)
  info = {"file": f"{stem}.{fmt}", "config": json.loads(config_json), "stats": stats}
  storage.atomic_write_bytes(storage.join(out_dir, f"{stem}.done"), json.dumps(info, indent=1, sort_keys=True).encode())
  if storage.exists(work):
    storage.remove(work, recursive=True)
  return stats


# The running job's progress callback (set by run_sharded while a piece is processed).
_ADVANCE: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar(
  "tokensift_job_advance", default=None
)


def advance(num_docs: int) -> None:
  """Reports ``num_docs`` more documents of the current piece done (a job's ``process`` calls it as each model
  batch finishes), so the progress bar moves per document, not per piece. A no-op outside ``run_sharded``."""
  callback = _ADVANCE.get()
  if callback is not None:
    callback(int(num_docs))


def run_sharded(
  *,
  name: str,
  out_dir,
  rows,
  process: Callable[[list[Document]], list[Record]],
  shard: ShardSpec = ShardSpec(),
  piece_size: int = 256,
  fmt: str = "jsonl",
  config: dict[str, Any] | None = None,
  summarize: Callable[[list[Record]], dict[str, Any]] | None = None,
  finish: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
  schema=None,
  progress: bool = True,
  total: int | None = None,
) -> ShardResult:
  """Runs one shard of a job, resuming from finished pieces; see the module docstring.

  Args:
    name: job name; output files are ``{name}-{i:05d}-of-{n:05d}.*`` in ``out_dir``.
    rows: a ``docs.DocumentInput``, or a callable ``shard -> iterable`` over this shard's rows only, in a
      deterministic order (it may have a ``bytes_read`` attribute, reported in the returned stats).
    process: maps a list of documents (one piece, in order) to output records (any number, in order).
    config: what the job was run with; stored in the marker, and a rerun with a different config into the
      same directory is refused (so stale pieces are never mixed with new ones).
    summarize: optional records of one piece -> dict; the pieces' dicts are added (``merge_stats``) into the
      shard stats, then ``finish`` (optional) derives ratios such as means.
    schema: the Parquet schema of the records (``pyarrow.Schema``); without it, the pieces' unified schema. An
      empty input writes an empty file with this schema.
    total: number of input rows (all shards), for the progress bar.
  """
  if fmt not in FORMATS:
    raise ValueError(f"unknown output format {fmt!r}: use 'jsonl' or 'parquet'")
  out_dir = str(out_dir)
  stem = shard.stem(name)
  final = storage.join(out_dir, f"{stem}.{fmt}")
  marker = storage.join(out_dir, f"{stem}.done")
  config_json = json.dumps(config or {}, sort_keys=True, default=str)
  if storage.exists(marker):
    info = json.loads(storage.read_bytes(marker))
    if info.get("config") != json.loads(config_json):
      raise ValueError(
        f"{marker} was written with config {info.get('config')} but this run uses "
        f"{json.loads(config_json)}; use another output dir or delete it"
      )
    return ShardResult(storage.as_local_or_url(storage.join(out_dir, info["file"])), info["stats"], skipped_done=True)

  storage.makedirs(out_dir)
  with storage.ShardLock(storage.join(out_dir, f"{stem}.lock")):
    return _run_locked(
      name=name,
      out_dir=out_dir,
      stem=stem,
      final=final,
      marker=marker,
      rows=rows,
      process=process,
      shard=shard,
      piece_size=piece_size,
      fmt=fmt,
      config_json=config_json,
      summarize=summarize,
      finish=finish,
      schema=schema,
      progress=progress,
      total=total,
    )


def _run_locked(
  *,
  name,
  out_dir,
  stem,
  final,
  marker,
  rows,
  process,
  shard,
  piece_size,
  fmt,
  config_json,
  summarize,
  finish,
  schema,
  progress,
  total,
) -> ShardResult:
  work = work_dir(out_dir, stem)
  cfg_file = storage.join(work, "config.json")
  if storage.exists(cfg_file):
    old = storage.read_bytes(cfg_file).decode()
    if old != config_json:
      raise ValueError(
        f"unfinished pieces in {work} come from config {old}, not {config_json}; delete {work} or use the same config"
      )
  n_done = 0
  while storage.exists(_piece_url(work, n_done, "meta.json")):
    n_done += 1

  items = rows.rows(shard) if isinstance(rows, DocumentInput) else rows(shard)
  t0 = time.time()
  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(
      total=None if total is None else -(-total // shard.count),
      desc=f"{name} {shard.index}/{shard.count}",
      unit="doc",
      dynamic_ncols=True,
      mininterval=1.0,
    )
  piece_idx = 0
  pending: list[Document] = []
  report_piece = ReadReport()
  count_in_piece = 0
  shown = 0  # documents of the current piece already counted on the bar (through advance())

  def on_advance(n: int) -> None:
    nonlocal shown
    n = max(0, min(n, len(pending) - shown))  # never past the piece
    shown += n
    if n and bar is not None:
      bar.update(n)

  def flush():
    nonlocal piece_idx, pending, report_piece, count_in_piece, shown
    if piece_idx >= n_done:
      token = _ADVANCE.set(on_advance if bar is not None else None)
      try:
        records = process(pending)
      finally:
        _ADVANCE.reset(token)
      write_piece(
        work, piece_idx, records, report_piece, fmt=fmt, schema=schema, summarize=summarize, config_json=config_json
      )
    if bar is not None:
      bar.update(len(pending) - shown + report_piece.num_skipped)
    shown = 0
    piece_idx += 1
    pending, report_piece, count_in_piece = [], ReadReport(), 0

  for item in items:
    if isinstance(item, Skip):
      report_piece.skip(item.reason, item.where)
    else:
      pending.append(item)
    count_in_piece += 1
    if count_in_piece == piece_size:
      flush()
  if count_in_piece:
    flush()
  if bar is not None:
    bar.close()

  stats = commit_shard(out_dir, stem, piece_idx, fmt=fmt, schema=schema, config_json=config_json, finish=finish)
  stats_out = dict(stats, seconds=round(time.time() - t0, 3))
  bytes_read = getattr(items, "bytes_read", None)
  if bytes_read is not None:
    stats_out["bytes_read"] = bytes_read
  return ShardResult(storage.as_local_or_url(final), stats_out, resumed_pieces=min(n_done, piece_idx))


def merged_stats(out_dir, name: str) -> dict[str, Any]:
  """Sums the numeric stats and skip counts over a job's finished shards."""
  total: dict[str, Any] = {"shards": 0, "skipped": {}}
  for marker in storage.listdir(str(out_dir), f"{name}-*-of-*.done"):
    stats = json.loads(storage.read_bytes(marker))["stats"]
    total["shards"] += 1
    for k, v in stats.items():
      if k == "skipped":
        for r, c in v.items():
          total["skipped"][r] = total["skipped"].get(r, 0) + c
      elif isinstance(v, (int, float)) and not isinstance(v, bool):
        total[k] = total.get(k, 0) + v
  return total


def in_memory_rows(
  items: Iterable[Document | Skip] | Callable[[], Iterable[Document | Skip]],
) -> Callable[[ShardSpec], Iterable[Document | Skip]]:
  """Rows for ``run_sharded`` from documents already in memory (e.g. a finished stage's records): shard ``i``
  takes positions ``i, i+n, ...``. Inputs on storage go through ``docs.DocumentInput`` instead, which reads
  only the shard's split."""

  def rows(shard: ShardSpec):
    for pos, item in enumerate(items() if callable(items) else items):
      if pos % shard.count == shard.index:
        yield item

  return rows
