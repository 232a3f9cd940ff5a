"""The document layer: every job, command and pipeline stage reads documents through it (DESIGN §2, §11).

Sources: a registered seqio task's source (``--task/--split``) or files (``--input`` globs; JSON lines, gzip JSON
lines, Parquet; local paths or any fsspec URL such as ``gs://`` / ``s3://`` / ``memory://``, see
``tokensift.core.storage``). ``DocumentInput`` is the one description of an input; ``DocumentInput.rows(shard)``
yields ``Document`` or ``Skip`` items of **that shard only**, in a deterministic order.

Input splits (shard ``i`` of ``n`` never touches other shards' rows):
- files: the input is cut into units, whole files when there are at least ``n`` files, else each file into
  ``ceil(n / files)`` parts: Parquet row-group ranges (planned from the footer only) or byte ranges of
  uncompressed JSON lines (a range owns the lines that *start* inside it); gzip files stay whole. Shard ``i``
  takes units ``i, i+n, i+2n, ...`` (as datatrove's ranks take files).
- tasks: the source's own ``shard_info`` (seqio's rule: when the source has at least ``n`` shards or supports
  arbitrary sharding; TFDS then reads only that shard's files), else seqio's fallback ``ds.shard(n, i)``.

Rows: ``read_units`` decodes each row (JSON lines or a Parquet record) and hands it to a row converter, by default
``validate_row`` (a text document); a reader of a job's output (the distilled head over the embed job's rows) gives
its own converter and so reads its shard's units the same way.

Ids (the join key of every stage; unique over the corpus without a global pass, the same in every job):
- the row's own ``id_field`` (default ``id``; C4's TFDS ``tfds_id``; ``--id_field url`` for OpenWebMath);
- else the row's position: ``{file key}:{row}`` for Parquet (row index in the file, from the footer) and
  ``{file key}@{byte offset of the line}`` for JSON lines (byte offsets need no count of earlier lines, so a byte-
  range shard knows them), where the file key is the path relative to the pattern's root (before its first glob
  character). Unique by construction and independent of ``n``.
- an id seen again in the same shard is a counted skip (``repeated id``; a set of 8-byte hashes, kept only for
  ids that come from a field); never renamed (``x#2`` could collide with a real ``x#2``). Across shards, the
  joining stages (``topk``, ``select``) count repeats and keep the first in shard order.

Bad rows never vanish silently and never stop a job: consumers count Skips by reason in a ``ReadReport``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gzip
import hashlib
import json
import math
import zlib
from typing import Any, Callable, Iterator, Sequence

from tokensift.core import storage

MAX_DOC_BYTES = 10 * 1024 * 1024  # documents above this are skipped and counted (DESIGN §9)


@dataclasses.dataclass(frozen=True)
class Document:
  """One input document: a stable id, its text and any other fields of the row. ``position_id``: the id is the
  row's position (unique by construction, so never checked for repeats)."""

  id: str
  text: str
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)
  position_id: bool = dataclasses.field(default=False, compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Skip:
  """A row that is not a usable document: why, and where it was (``file:line``)."""

  reason: str
  where: str


@dataclasses.dataclass
class ReadReport:
  """Counts of rows read and skipped (by reason), with a few examples of each skip."""

  read: int = 0
  skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples: list[str] = dataclasses.field(default_factory=list)

  def skip(self, reason: str, where: str) -> None:
    self.skipped[reason] += 1
    if len(self.examples) < 20:
      self.examples.append(f"{where}: {reason}")

  @property
  def num_skipped(self) -> int:
    return sum(self.skipped.values())

  def to_dict(self) -> dict[str, Any]:
    return {"read": self.read, "skipped": dict(sorted(self.skipped.items())), "examples": self.examples}


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


def validate_row(
  row: Any, where: str, *, id_field: str = "id", text_field: str = "text", default_id: str | None = None
) -> Document | Skip:
  """Turns one decoded row into a Document, or a Skip saying why it cannot be one. The id is the row's
  ``id_field`` when present and non-empty, else ``default_id`` (its position), else the row is skipped."""
  if not isinstance(row, dict):
    return Skip(f"row is {type(row).__name__}, not an object", where)
  text = row.get(text_field)
  if text is None:
    return Skip(f"missing field {text_field!r}", where)
  if isinstance(text, bytes):
    try:
      text = text.decode("utf-8")
    except UnicodeDecodeError:
      return Skip("invalid UTF-8 in text", where)
  if not isinstance(text, str):
    return Skip(f"field {text_field!r} is {type(text).__name__}, not a string", where)
  text = _repair_surrogates(text)
  if not text.strip():
    return Skip("empty or whitespace-only text", where)
  if len(text) > MAX_DOC_BYTES or (
    4 * len(text) > MAX_DOC_BYTES  # (UTF-8: at most 4 bytes a character)
    and len(text.encode("utf-8", "surrogatepass")) > MAX_DOC_BYTES
  ):
    return Skip(f"text over {MAX_DOC_BYTES} bytes", where)
  doc_id = row.get(id_field)
  if isinstance(doc_id, bytes):
    doc_id = doc_id.decode("utf-8", "replace")
  position = doc_id is None or doc_id == ""
  if position:
    if default_id is None:
      return Skip(f"missing field {id_field!r}", where)
    doc_id = default_id
  meta = {k: v for k, v in row.items() if k not in (id_field, text_field)}
  return Document(str(doc_id), text, meta, position_id=position)


def _repair_surrogates(text: str) -> str:
  """Joins JSON-escaped surrogate pairs and replaces lone surrogates (``"\\ud800"``) with U+FFFD, so the
  text is valid Unicode and can be written as UTF-8 downstream."""
  try:
    text.encode("utf-8")
    return text
  except UnicodeEncodeError:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def documents_only(items, report: ReadReport) -> Iterator[Document]:
  """Passes Documents through and counts Skips into ``report``."""
  for item in items:
    if isinstance(item, Skip):
      report.skip(item.reason, item.where)
    else:
      report.read += 1
      yield item


# ------------------------------------------------------------------------------------------------ input units


@dataclasses.dataclass(frozen=True)
class Unit:
  """A piece of the input one shard reads: a whole file, a Parquet row-group range ``[start, stop)``, or a
  JSON-lines byte range ``[start, stop)`` (the lines that start inside it)."""

  url: str
  key: str
  kind: str = "file"  # "file" | "row_groups" | "bytes"
  start: int = 0
  stop: int | None = None


def is_parquet(url: str) -> bool:
  return url.endswith(".parquet")


def plan_units(files: Sequence[tuple[str, str]], count: int) -> list[Unit]:
  """Units of ``files`` (``[(url, key)]``) for ``count`` shards: whole files when there are at least ``count``
  files; else each file in ``ceil(count / len(files))`` parts (Parquet row groups from the footer; byte ranges of
  uncompressed JSON lines; gzip whole). Only file sizes and Parquet footers are read."""
  if len(files) >= count or not files:
    return [Unit(url, key) for url, key in files]
  parts = math.ceil(count / len(files))
  out: list[Unit] = []
  for url, key in files:
    if is_parquet(url):
      import pyarrow.parquet as pq

      with storage.open_file(url) as f:
        groups = pq.ParquetFile(f).metadata.num_row_groups
      bounds = [groups * k // parts for k in range(parts + 1)]
      out += [Unit(url, key, "row_groups", a, b) for a, b in zip(bounds, bounds[1:])]
    elif url.endswith(".gz"):
      out.append(Unit(url, key))
    else:
      fs, path = storage.url_to_fs(url)
      size = fs.size(path)
      if size is None:
        raise ValueError(f"input {url!r}: its file system reports no size, so it cannot be split into byte ranges")
      bounds = [size * k // parts for k in range(parts + 1)]
      out += [Unit(url, key, "bytes", a, b) for a, b in zip(bounds, bounds[1:])]
  return out


def shard_units(units: Sequence[Unit], shard: ShardSpec) -> list[Unit]:
  return list(units[shard.index :: shard.count])


# A row converter: (decoded row, where, default id) -> Document | Skip; the default is ``validate_row``'s text
# document. Other readers of job outputs (e.g. the distilled head over the embed job's rows) pass their own.
RowConverter = Callable[[Any, str, str], Document | Skip]


def text_rows(id_field: str = "id", text_field: str = "text") -> RowConverter:
  """The default converter: ``validate_row`` with these fields."""
  return functools.partial(_validate_positional, id_field=id_field, text_field=text_field)


def _validate_positional(row: Any, where: str, default_id: str, *, id_field: str, text_field: str) -> Document | Skip:
  return validate_row(row, where, id_field=id_field, text_field=text_field, default_id=default_id)


def _json_row(raw: bytes, where: str, convert: RowConverter, default_id: str) -> Document | Skip:
  if not raw.strip():
    return Skip("blank line", where)
  try:
    row = json.loads(raw.decode("utf-8"))
  except UnicodeDecodeError:
    return Skip("invalid UTF-8", where)
  except json.JSONDecodeError as e:
    return Skip(f"malformed JSON ({e.msg})", where)
  return convert(row, where, default_id)


def _read_jsonl(unit: Unit, counter: list[int], convert: RowConverter) -> Iterator[Document | Skip]:
  """Rows of a JSON-lines unit; a truncated or corrupt gzip stream keeps the rows before the cut and ends with a
  Skip naming the error."""
  raw = storage.CountingFile(storage.open_file(unit.url))
  name = unit.key
  try:
    if unit.url.endswith(".gz"):
      f = gzip.GzipFile(fileobj=raw, mode="rb")  # pyright: ignore[reportCallIssue, reportArgumentType]  (read sequentially: GzipFile seeks only to rewind)
    else:
      f = raw
    pos = 0
    if unit.kind == "bytes" and unit.start > 0:
      raw.seek(unit.start - 1)
      pos = unit.start - 1
      first = raw.read(1)
      pos += 1
      if first != b"\n":  # inside a line that belongs to the range before
        pos += len(raw.readline())
    line_no = None if unit.kind == "bytes" else 0
    while unit.stop is None or pos < unit.stop:
      try:
        line = f.readline()
      except (EOFError, OSError, zlib.error) as e:
        yield Skip(f"truncated or corrupt file ({type(e).__name__}: {e}); rows before the cut kept", f"{name}@{pos}")
        return
      if not line:
        return
      where = f"{name}:{line_no + 1}" if line_no is not None else f"{name}@{pos}"
      yield _json_row(line, where, convert, f"{name}@{pos}")
      pos += len(line)
      if line_no is not None:
        line_no += 1
  finally:
    counter[0] += raw.bytes_read
    raw.close()


def _read_parquet(unit: Unit, counter: list[int], convert: RowConverter) -> Iterator[Document | Skip]:
  """Rows of a Parquet unit, a record batch at a time, reading only its row groups."""
  import pyarrow.parquet as pq

  raw = storage.CountingFile(storage.open_file(unit.url))
  try:
    pf = pq.ParquetFile(raw)
    meta = pf.metadata
    if unit.kind == "file":
      groups = range(meta.num_row_groups)
    else:
      assert unit.start is not None and unit.stop is not None  # a row-group unit has both bounds
      groups = range(unit.start, unit.stop)
    if not len(groups):
      return
    row = sum(meta.row_group(g).num_rows for g in range(groups[0]))
    for batch in pf.iter_batches(batch_size=1024, row_groups=list(groups)):
      for r in batch.to_pylist():
        yield convert(r, f"{unit.key}:row {row}", f"{unit.key}:{row}")
        row += 1
  finally:
    counter[0] += raw.bytes_read
    raw.close()


def read_units(
  units: Sequence[Unit],
  *,
  id_field: str = "id",
  text_field: str = "text",
  counter: list[int] | None = None,
  convert: RowConverter | None = None,
) -> Iterator[Document | Skip]:
  """Rows of ``units`` in order; ``counter[0]`` accumulates the input bytes read. ``convert(row, where,
  default_id)`` turns each decoded row into a Document or Skip (default: ``text_rows(id_field, text_field)``, the
  text documents of ``validate_row``); the JSON decoding and its Skips are the layer's either way."""
  counter = counter if counter is not None else [0]
  convert = convert if convert is not None else text_rows(id_field, text_field)
  for unit in units:
    reader = _read_parquet if is_parquet(unit.url) else _read_jsonl
    yield from reader(unit, counter, convert)


def unique_ids(items: Iterator[Document | Skip]) -> Iterator[Document | Skip]:
  """Turns a Document whose id was already seen (in this stream) into a counted Skip ``repeated id``; keeps an
  8-byte hash per id from a field (position ids are unique by construction and cost nothing)."""
  seen: set[bytes] = set()
  for item in items:
    if isinstance(item, Document) and not item.position_id:
      h = hashlib.blake2b(item.id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
      if h in seen:
        item = Skip("repeated id", item.id)
      else:
        seen.add(h)
    yield item


# ------------------------------------------------------------------------------------------------ DocumentInput


@dataclasses.dataclass(frozen=True)
class DocumentInput:
  """One input of a job: a seqio task's source split (a task registered by the calling program: ``import
  tokensift.tasks`` for the raw tasks, ``tokensift.all_tasks`` for every family), or files (glob patterns, local or
  remote).

  ``rows(shard)`` yields that shard's Documents/Skips (see the module docstring); ``validate()`` checks the task
  and split exist or the patterns match files (call it before creating any output); ``describe()`` is the
  input's identity for a job's config guard.
  """

  task: str | None = None
  split: str = "train"
  files: tuple[str, ...] = ()
  id_field: str = "id"
  text_field: str = "text"

  def __post_init__(self):
    if bool(self.task) == bool(self.files):
      raise ValueError("give exactly one input: a task (--task) or files (--input)")
    object.__setattr__(self, "files", tuple(str(f) for f in self.files))

  def describe(self) -> str:
    if self.task:
      return f"task:{self.task}:{self.split}|{self.id_field}|{self.text_field}"
    return "files:" + ",".join(self.files) + f"|{self.id_field}|{self.text_field}"

  def validate(self) -> "DocumentInput":
    """Raises ValueError / FileNotFoundError / IsADirectoryError (one line, naming the bad value) now."""
    if self.task:
      task_source(self.task, self.split)
    else:
      storage.expand(list(self.files))
    return self

  def rows(self, shard: ShardSpec = ShardSpec()) -> "ShardRows":
    return ShardRows(self, shard)

  def total(self) -> int | None:
    """Number of input examples (all shards) when cheaply known (TFDS metadata), else None."""
    if not self.task:
      return None
    try:
      n = task_source(self.task, self.split).num_input_examples(self.split)
      return int(n) if n else None
    except Exception:  # noqa: BLE001  (only for progress bars)
      return None


class ShardRows:
  """The rows of one shard of a ``DocumentInput`` (iterable once per ``iter``); ``bytes_read`` counts the input
  bytes a file input read so far (None for tasks, whose reads TFDS does)."""

  def __init__(self, inp: DocumentInput, shard: ShardSpec):
    self.input, self.shard = inp, shard
    self._counter = [0]

  @property
  def bytes_read(self) -> int | None:
    return None if self.input.task else self._counter[0]

  def units(self) -> list[Unit]:
    return shard_units(plan_units(storage.expand(list(self.input.files)), self.shard.count), self.shard)

  def __iter__(self) -> Iterator[Document | Skip]:
    inp = self.input
    if inp.task:
      yield from unique_ids(
        task_rows(inp.task, inp.split, self.shard, id_field=inp.id_field, text_field=inp.text_field)
      )
      return
    items = read_units(self.units(), id_field=inp.id_field, text_field=inp.text_field, counter=self._counter)
    yield from unique_ids(items)


def file_rows(patterns: Sequence[str] | str, shard: ShardSpec = ShardSpec(), **kw) -> ShardRows:
  """Rows of shard ``shard`` of the files matching ``patterns`` (see ``DocumentInput``)."""
  return DocumentInput(files=tuple([patterns] if isinstance(patterns, str) else patterns), **kw).rows(shard)


# ------------------------------------------------------------------------------------------------ seqio tasks


def task_source(task_name: str, split: str):
  """The seqio source of a registered task; ValueError naming an unknown task or split.

  The core reads tasks through seqio's registry and never imports the packages that register them (layer
  contract): a program registers them first, e.g. ``import tokensift.all_tasks`` (the ``tokensift`` command
  does that before a command that reads a task)."""
  import seqio

  if task_name not in seqio.TaskRegistry.names():
    raise ValueError(
      f"unknown task {task_name!r}: not registered (import the module that registers it, e.g. "
      "tokensift.tasks, tokensift.refine.tasks or tokensift.all_tasks; `tokensift tasks --all` "
      "lists them)"
    )
  task = seqio.get_mixture_or_task(task_name)
  if not isinstance(task, seqio.Task):
    raise ValueError(f"{task_name!r} is a mixture, not a task: name one of its tasks")
  source = task.source
  if split not in source.splits:
    raise ValueError(f"task {task_name!r} has no split {split!r}; it has {list(source.splits)}")
  return source


def source_dataset(source, split: str, shard: ShardSpec):
  """``source``'s split for one shard, without shuffling, sharded as seqio's ``Task.get_dataset`` shards: at the
  source (``shard_info``: TFDS reads only that shard's files) when the source supports arbitrary sharding or has
  at least ``shard.count`` shards, else ``ds.shard``."""
  import seqio

  if shard.count == 1:
    return source.get_dataset(split=split, shuffle=False)
  info = seqio.ShardInfo(index=shard.index, num_shards=shard.count)
  if source.supports_arbitrary_sharding or len(source.list_shards(split=split)) >= shard.count:
    return source.get_dataset(split=split, shuffle=False, shard_info=info)
  return source.get_dataset(split=split, shuffle=False).shard(shard.count, shard.index)


def task_rows(
  task_name: str, split: str, shard: ShardSpec = ShardSpec(), *, id_field: str = "id", text_field: str = "text"
) -> Iterator[Document | Skip]:
  """Raw source rows of a task's split for one shard. A source without ids gets ``{task}:{split}:{i}/{n}:{k}``
  (unique, but tied to the shard count: give tasks an ``id`` feature, as tokensift's all have)."""
  source = task_source(task_name, split)
  ds = source_dataset(source, split, shard)
  for k, ex in enumerate(ds.as_numpy_iterator()):
    row = {
      key: (v.decode("utf-8", "replace") if isinstance(v, bytes) and key != text_field else v) for key, v in ex.items()
    }
    yield validate_row(
      row,
      f"{task_name}:{split}:{shard.index}/{shard.count}:{k}",
      id_field=id_field,
      text_field=text_field,
      default_id=f"{task_name}:{split}:{shard.index}/{shard.count}:{k}",
    )
