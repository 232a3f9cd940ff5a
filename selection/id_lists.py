"""Document-id lists: the files every selection ends as (ASK-LLM top-k, DENSITY samples) and the naming rule of
their rates. UTF-8 text, one document id per line, in selection order (ids never contain a newline).

Pure file handling: no seqio, no TensorFlow for local paths, so ``tokensift topk`` / ``tokensift select`` run
without them. URL-style paths (``gs://``, ``ram://``) go through ``tf.io.gfile``, the library that reads the
files into the variants' lookup tables (``variants.id_table``), imported only for such a path.
``tokensift.selection.variants`` registers the seqio task variants that keep the listed documents.
"""

from __future__ import annotations

import array
import os
import posixpath
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np

ID_FIELD = "id"
_CHUNK = 1 << 16  # ids per write


def is_remote(path: str | os.PathLike) -> bool:
  """True for a URL-style path (``gs://b/x``, ``ram://x``) that goes through ``tf.io.gfile``."""
  return "://" in str(path)


def _gfile():
  import tensorflow as tf

  return tf.io.gfile


def _open(path: str, mode: str) -> IO:
  return _gfile().GFile(path, mode) if is_remote(path) else open(path, mode)


def _exists(path: str) -> bool:
  return _gfile().exists(path) and not _gfile().isdir(path) if is_remote(path) else os.path.isfile(path)


def _norm(path: str | os.PathLike) -> str:
  """An absolute local path, or a remote path unchanged."""
  return str(path) if is_remote(path) else str(Path(path).resolve())


def write_id_list(path: str | os.PathLike, ids: Iterable[str]) -> Path | str:
  """Streams ``ids`` to ``path``, one per line, atomically (temp file + rename); returns the path (a ``Path``
  for a local path, the string for a remote one).

  Memory: one 8-byte hash per id (``array('q')``), sorted once at the end to find repeats; the ids themselves
  are never held (a generator of 10^8 ids needs ~0.8 GB). Raises ValueError naming the first id that is empty,
  not a string, holds a newline, or repeats; nothing is left at ``path`` then.
  """
  target = str(path)
  remote = is_remote(target)
  if remote:
    _gfile().makedirs(posixpath.dirname(target))
  else:
    Path(target).parent.mkdir(parents=True, exist_ok=True)
  head, name = posixpath.split(target) if remote else os.path.split(target)
  tmp = (posixpath.join if remote else os.path.join)(head, f".{name}.tmp-{os.getpid()}")
  hashes = array.array("q")
  try:
    with _open(tmp, "wb") as f:
      chunk: list[str] = []
      for i, doc_id in enumerate(ids):
        if not isinstance(doc_id, str) or not doc_id or "\n" in doc_id or "\r" in doc_id:
          raise ValueError(f"id #{i} {doc_id!r} cannot go in an id list (need a non-empty string without newlines)")
        hashes.append(hash(doc_id))
        chunk.append(doc_id)
        if len(chunk) == _CHUNK:
          f.write(("\n".join(chunk) + "\n").encode("utf-8"))
          chunk = []
      if chunk:
        f.write(("\n".join(chunk) + "\n").encode("utf-8"))
      if not remote:
        f.flush()
        os.fsync(f.fileno())
    repeated = _first_repeat(tmp, hashes)
    if repeated is not None:
      raise ValueError(f"id {repeated!r} appears twice in the id list for {target!r}")
    if remote:
      _gfile().rename(tmp, target, overwrite=True)
    else:
      os.replace(tmp, target)
  except BaseException:
    if _gfile().exists(tmp) if remote else os.path.exists(tmp):
      _gfile().remove(tmp) if remote else os.remove(tmp)
    raise
  return target if remote else Path(target)


def _first_repeat(path: str, hashes: array.array) -> str | None:
  """The first id of the file at ``path`` that occurs twice, or None; ``hashes`` holds ``hash(id)`` per line.

  Sorting the hashes finds candidate repeats without a set of the ids; a second pass over the file checks the
  candidates exactly (two different ids may share a 64-bit hash)."""
  if len(hashes) < 2:
    return None
  h = np.frombuffer(hashes, dtype=np.int64)
  h.sort()  # in place: no second copy of the hashes
  candidates = set(h[1:][h[1:] == h[:-1]].tolist())
  del h
  if not candidates:
    return None
  seen: set[str] = set()
  for doc_id in iter_id_list(path):
    if hash(doc_id) in candidates:
      if doc_id in seen:
        return doc_id
      seen.add(doc_id)
  return None


def iter_id_list(path: str | os.PathLike) -> Iterator[str]:
  """Streams the ids of an id-list file in order (blank lines skipped). Raises FileNotFoundError naming a
  missing file."""
  path = str(path)
  if not _exists(path):
    raise FileNotFoundError(f"id list {path!r} does not exist")
  with _open(path, "rb") as f:
    for line in f:
      doc_id = line.decode("utf-8").rstrip("\n").rstrip("\r")
      if doc_id.strip():
        yield doc_id


def read_id_list(path: str | os.PathLike) -> list[str]:
  """The ids of an id-list file, in order (a list: for small lists; ``iter_id_list`` streams). Raises
  FileNotFoundError naming a missing file."""
  return list(iter_id_list(path))


def variant_name(base_task: str, method: str, rate: int | float | str) -> str:
  """``c4_en_raw`` + ``askllm`` + 20 → ``c4_en_askllm_r20``; a base without ``_raw`` gets a suffix."""
  tag = f"{method}_r{rate_tag(rate)}"
  if "_raw" in base_task:
    return base_task.replace("_raw", f"_{tag}", 1)
  return f"{base_task}_{tag}"


def rate_tag(rate: int | float | str) -> str:
  """``20`` → ``"20"``, ``2.5`` → ``"2p5"`` (task names and id-list file names)."""
  if isinstance(rate, str):
    return rate
  value = float(rate)
  return str(int(value)) if value == int(value) else str(value).replace(".", "p")


_rate_tag = rate_tag  # earlier private name, used by selection/select_job.py
