"""Documents from files: JSON lines (optionally gzip) and Parquet, with counted skips.

Readers yield ``Document`` or ``Skip`` items in file order; bad rows never vanish silently and never stop a
job: consumers count Skips by reason in a ``ReadReport`` (keeping a few with their location).
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import gzip
import json
from pathlib import Path
from typing import Any, Iterator

MAX_DOC_BYTES = 10 * 1024 * 1024  # documents above this are skipped and counted (DESIGN §9)


@dataclasses.dataclass(frozen=True)
class Document:
  """One input document: a stable id, its text and any other fields of the row."""
  id: str
  text: str
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)


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


def validate_row(row: Any, where: str, *, id_field: str = "id", text_field: str = "text",
                 default_id: str | None = None) -> Document | Skip:
  """Turns one decoded row into a Document, or a Skip saying why it cannot be one."""
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
  if len(text) > MAX_DOC_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_DOC_BYTES:
    return Skip(f"text over {MAX_DOC_BYTES} bytes", where)
  doc_id = row.get(id_field)
  if doc_id is None or doc_id == "":
    if default_id is None:
      return Skip(f"missing field {id_field!r}", where)
    doc_id = default_id
  meta = {k: v for k, v in row.items() if k not in (id_field, text_field)}
  return Document(str(doc_id), text, meta)


def _repair_surrogates(text: str) -> str:
  """Joins JSON-escaped surrogate pairs and replaces lone surrogates (``"\\ud800"``) with U+FFFD, so the
  text is valid Unicode and can be written as UTF-8 downstream."""
  try:
    text.encode("utf-8")
    return text
  except UnicodeEncodeError:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def unique_ids(items: Iterator[Document | Skip]) -> Iterator[Document | Skip]:
  """Renames repeated document ids ``x`` to ``x#2``, ``x#3``, ... in input order (OpenWebMath repeats some
  urls), so that every document keeps a distinct, stable id and none is lost or merged downstream."""
  seen: dict[str, int] = {}
  for item in items:
    if isinstance(item, Document):
      n = seen.get(item.id, 0) + 1
      seen[item.id] = n
      if n > 1:
        item = dataclasses.replace(item, id=f"{item.id}#{n}")
    yield item


def _open_text(path: Path):
  raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
  return raw


def iter_jsonl(path: str | Path, *, id_field: str = "id", text_field: str = "text",
               id_from: str | None = None) -> Iterator[Document | Skip]:
  """Documents of a JSON-lines file (``.jsonl``, ``.json``, ``.gz``).

  Rows without an id get ``{id_from value}`` when ``id_from`` names a field (e.g. ``url``), else
  ``{file stem}:{line number}`` (stable for a given file).
  """
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"input file {str(path)!r} does not exist")
  stem = path.name.split(".")[0]
  with _open_text(path) as f:
    for lineno, raw in enumerate(f):
      where = f"{path.name}:{lineno + 1}"
      if not raw.strip():
        yield Skip("blank line", where)
        continue
      try:
        row = json.loads(raw.decode("utf-8"))
      except UnicodeDecodeError:
        yield Skip("invalid UTF-8", where)
        continue
      except json.JSONDecodeError as e:
        yield Skip(f"malformed JSON ({e.msg})", where)
        continue
      default = None
      if isinstance(row, dict):
        default = str(row[id_from]) if id_from and row.get(id_from) else f"{stem}:{lineno}"
      yield validate_row(row, where, id_field=id_field, text_field=text_field, default_id=default)


def iter_parquet(path: str | Path, *, id_field: str = "id",
                 text_field: str = "text") -> Iterator[Document | Skip]:
  """Documents of a Parquet file, read a record batch at a time."""
  import pyarrow.parquet as pq
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"input file {str(path)!r} does not exist")
  stem = path.name.split(".")[0]
  n = 0
  for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
    for row in batch.to_pylist():
      yield validate_row(row, f"{path.name}:row {n}", id_field=id_field, text_field=text_field,
                         default_id=f"{stem}:{n}")
      n += 1


def expand_paths(patterns: list[str] | str) -> list[Path]:
  """Sorted files matching the glob patterns; raises FileNotFoundError naming a pattern with no match."""
  if isinstance(patterns, str):
    patterns = [patterns]
  out: list[Path] = []
  for pat in patterns:
    matches = sorted(glob.glob(str(Path(pat).expanduser())))
    if not matches:
      raise FileNotFoundError(f"no input file matches {pat!r}")
    out.extend(Path(m) for m in matches)
  return out


def iter_files(patterns: list[str] | str, **kw) -> Iterator[Document | Skip]:
  """Rows of every matching file in sorted order (Parquet by suffix, else JSON lines); ids made unique."""
  def rows():
    for path in expand_paths(patterns):
      if path.suffix == ".parquet":
        yield from iter_parquet(path, **{k: v for k, v in kw.items() if k != "id_from"})
      else:
        yield from iter_jsonl(path, **kw)
  return unique_ids(rows())


def documents_only(items, report: ReadReport) -> Iterator[Document]:
  """Passes Documents through and counts Skips into ``report``."""
  for item in items:
    if isinstance(item, Skip):
      report.skip(item.reason, item.where)
    else:
      report.read += 1
      yield item
