"""Resumable sharded offline jobs (refine, score, embed, reference losses).

Conventions (DESIGN §2, after datatrove executors and t5x ``infer``'s ``shard_id/num_shards``):

- a job runs as shard ``i`` of ``n``; shard ``i`` takes the input rows at positions ``p`` with
  ``p % n == i`` (bad rows included, so each skip is counted by exactly one shard);
- inside a shard, rows are processed in pieces of ``piece_size`` rows; each finished piece is written to a
  temporary file and atomically renamed, so a run killed at any point (SIGKILL) loses at most the piece in
  flight; a rerun skips the finished pieces, then the finished shard;
- when every piece is done the shard file ``{name}-{i:05d}-of-{n:05d}.{jsonl|parquet}`` and its stats are
  written atomically, then the completion marker ``....done``; the output of a killed-and-rerun job is
  byte-identical to an uninterrupted one as long as ``process`` is deterministic.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tokensift.docs import Document, ReadReport, Skip

Record = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ShardSpec:
  """Shard ``index`` of ``count`` (0 <= index < count)."""
  index: int = 0
  count: int = 1

  def __post_init__(self):
    if not (isinstance(self.index, int) and isinstance(self.count, int) and 0 <= self.index < self.count):
      raise ValueError(f"invalid shard {self.index}/{self.count}: need 0 <= index < count")

  @classmethod
  def parse(cls, text: str) -> "ShardSpec":
    """Parses ``"i/n"`` (e.g. ``"0/4"``)."""
    try:
      i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
      raise ValueError(f"invalid --shard {text!r}: expected INDEX/COUNT such as 0/4") from None
    return cls(i, n)

  def stem(self, name: str) -> str:
    return f"{name}-{self.index:05d}-of-{self.count:05d}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
  """Writes ``data`` to ``path`` through a temporary file, fsync and rename."""
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  with open(tmp, "wb") as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _jsonl_bytes(records: Sequence[Record]) -> bytes:
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def read_records(path: str | Path) -> list[Record]:
  """Records of a job output file (``.jsonl`` or ``.parquet``)."""
  path = Path(path)
  if path.suffix == ".parquet":
    import pyarrow.parquet as pq
    return pq.read_table(path).to_pylist()
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _write_parquet(path: Path, records: list[Record]) -> None:
  import pyarrow as pa
  import pyarrow.parquet as pq
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  table = pa.Table.from_pylist(records) if records else pa.table({})
  pq.write_table(table, tmp, compression="zstd")
  os.replace(tmp, path)


@dataclasses.dataclass
class ShardResult:
  """What one shard produced: its output file, stats, and whether this call did the work."""
  path: Path
  stats: dict[str, Any]
  resumed_pieces: int = 0
  skipped_done: bool = False


def shard_files(out_dir: str | Path, name: str, fmt: str | None = None) -> list[Path]:
  """The finished shard files of a job (those with a completion marker), in shard order."""
  out_dir = Path(out_dir)
  files = []
  for marker in sorted(out_dir.glob(f"{name}-*-of-*.done")):
    info = json.loads(marker.read_text())
    files.append(out_dir / info["file"])
  if fmt:
    files = [f for f in files if f.suffix == "." + fmt]
  return files


def run_sharded(
    *,
    name: str,
    out_dir: str | Path,
    rows: Callable[[], Iterable[Document | Skip]],
    process: Callable[[list[Document]], list[Record]],
    shard: ShardSpec = ShardSpec(),
    piece_size: int = 256,
    fmt: str = "jsonl",
    config: dict[str, Any] | None = None,
    summarize: Callable[[list[Record]], dict[str, Any]] | None = None,
    progress: bool = True,
    total: int | None = None,
) -> ShardResult:
  """Runs one shard of a job, resuming from finished pieces; see the module docstring.

  Args:
    name: job name; output files are ``{name}-{i:05d}-of-{n:05d}.*`` in ``out_dir``.
    rows: returns a fresh iterator over all input rows in a deterministic order.
    process: maps a list of documents (one piece, in order) to output records (any number, in order).
    config: what the job was run with; stored in the marker, and a rerun with a different config into the
      same directory is refused (so stale pieces are never mixed with new ones).
    summarize: optional records -> dict added to the shard stats.
    total: number of input rows (all shards), for the progress bar.
  """
  if fmt not in ("jsonl", "parquet"):
    raise ValueError(f"unknown output format {fmt!r}: use 'jsonl' or 'parquet'")
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  stem = shard.stem(name)
  final = out_dir / f"{stem}.{fmt}"
  marker = out_dir / f"{stem}.done"
  config_json = json.dumps(config or {}, sort_keys=True, default=str)
  if marker.exists():
    info = json.loads(marker.read_text())
    if info.get("config") != json.loads(config_json):
      raise ValueError(f"{marker} was written with config {info.get('config')} but this run uses "
                       f"{json.loads(config_json)}; use another output dir or delete it")
    return ShardResult(out_dir / info["file"], info["stats"], skipped_done=True)

  work = out_dir / f".{stem}.pieces"
  work.mkdir(exist_ok=True)
  cfg_file = work / "config.json"
  if cfg_file.exists() and cfg_file.read_text() != config_json:
    raise ValueError(f"unfinished pieces in {work} come from config {cfg_file.read_text()}, not "
                     f"{config_json}; delete {work} or use the same config")
  atomic_write_bytes(cfg_file, config_json.encode())
  done_pieces = sorted(work.glob("piece-*.jsonl"))
  n_done = len(done_pieces)

  report = ReadReport()
  pending: list[Document] = []
  piece_idx = 0
  t0 = time.time()
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=None if total is None else -(-total // shard.count), desc=f"{name} {shard.index}/{shard.count}",
               unit="doc", dynamic_ncols=True, mininterval=1.0)

  def flush():
    nonlocal piece_idx, pending
    if piece_idx >= n_done:
      records = process(pending)
      meta = {"skips": report_piece.to_dict()}
      atomic_write_bytes(work / f"piece-{piece_idx:06d}.meta.json", json.dumps(meta).encode())
      atomic_write_bytes(work / f"piece-{piece_idx:06d}.jsonl", _jsonl_bytes(records))
    if bar is not None:
      bar.update(len(pending) + report_piece.num_skipped)
    piece_idx += 1
    pending = []

  report_piece = ReadReport()
  count_in_piece = 0
  for pos, item in enumerate(rows()):
    if pos % shard.count != shard.index:
      continue
    if isinstance(item, Skip):
      report_piece.skip(item.reason, item.where)
    else:
      pending.append(item)
    count_in_piece += 1
    if count_in_piece == piece_size:
      flush()
      report_piece, count_in_piece = ReadReport(), 0
  if count_in_piece:
    flush()
  if bar is not None:
    bar.close()

  records: list[Record] = []
  for k in range(piece_idx):
    records.extend(read_records(work / f"piece-{k:06d}.jsonl"))
    meta = json.loads((work / f"piece-{k:06d}.meta.json").read_text())
    for reason, c in meta["skips"]["skipped"].items():
      report.skipped[reason] += c
    report.examples.extend(meta["skips"]["examples"][: max(0, 20 - len(report.examples))])
  stats = {"records": len(records), "skipped": dict(sorted(report.skipped.items())),
           "skipped_examples": report.examples}
  if summarize is not None:
    stats.update(summarize(records))
  if fmt == "jsonl":
    atomic_write_bytes(final, _jsonl_bytes(records))
  else:
    _write_parquet(final, records)
  info = {"file": final.name, "config": json.loads(config_json), "stats": stats}
  atomic_write_bytes(marker, json.dumps(info, indent=1, sort_keys=True).encode())
  shutil.rmtree(work, ignore_errors=True)
  stats_out = dict(stats, seconds=round(time.time() - t0, 3))
  return ShardResult(final, stats_out, resumed_pieces=min(n_done, piece_idx))


def merged_stats(out_dir: str | Path, name: str) -> dict[str, Any]:
  """Sums the numeric stats and skip counts over a job's finished shards."""
  total: dict[str, Any] = {"shards": 0, "skipped": {}}
  for marker in sorted(Path(out_dir).glob(f"{name}-*-of-*.done")):
    stats = json.loads(marker.read_text())["stats"]
    total["shards"] += 1
    for k, v in stats.items():
      if k == "skipped":
        for r, c in v.items():
          total["skipped"][r] = total["skipped"].get(r, 0) + c
      elif isinstance(v, (int, float)) and not isinstance(v, bool):
        total[k] = total.get(k, 0) + v
  return total
