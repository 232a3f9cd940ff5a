"""Local and remote files for every job and reader: one thin layer over fsspec.

Why fsspec (not etils ``epath`` or ``tf.io.gfile``): it is the file-system layer pyarrow, pandas, Dask, Ray and
Hugging Face ``datasets`` share; ``pyarrow.parquet`` reads its file objects directly (footer first, then only the
row groups asked for); ``glob`` works on buckets; and it ships an in-memory file system (``memory://``) that the
tests use to prove nothing assumes a local disk. ``gs://`` needs ``pip install gcsfs`` and ``s3://`` needs
``pip install s3fs`` (plugins fsspec loads by protocol; they are not hard dependencies). TFDS keeps its own
``gs://`` support through ``tf.io.gfile``.

Writes: on the local disk a temporary file + ``os.replace`` (atomic); on object stores an object becomes visible
whole when its upload closes, so the job's completion marker, written last, is the commit (write-then-marker).
"""

from __future__ import annotations

import os
import posixpath
import socket
from typing import Any, Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

_GLOB_CHARS = set("*?[")


def url_to_fs(url: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
  """(file system, path within it) for a local path or a URL (``gs://b/x``, ``memory://x``)."""
  url = os.path.expanduser(os.fspath(url))
  try:
    return fsspec.core.url_to_fs(url)
  except (ImportError, ValueError) as e:
    proto = url.split("://", 1)[0] if "://" in url else "file"
    hint = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "az": "adlfs", "abfs": "adlfs"}.get(proto)
    raise ValueError(
      f"cannot open {url!r}: {e}" + (f"; install the fsspec plugin: pip install {hint}" if hint else "")
    ) from None


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
  return isinstance(fs, LocalFileSystem)


def full_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
  """A path of ``fs`` as the URL that ``url_to_fs`` maps back to it (plain path on the local disk)."""
  return path if is_local(fs) else fs.unstrip_protocol(path)


def as_local_or_url(url: str):
  """``pathlib.Path`` for a local path (what callers of the local-only API expect), else the URL string."""
  from pathlib import Path

  fs, path = url_to_fs(url)
  return Path(path) if is_local(fs) else full_url(fs, path)


def join(url: str | os.PathLike, *parts: str) -> str:
  url = os.fspath(url)
  return posixpath.join(url, *parts) if "://" in url else os.path.join(url, *parts)


def _glob_root(path: str) -> str:
  """The directory part of a pattern before its first glob character (``/d/x/*.jsonl`` -> ``/d/x``)."""
  parts = path.split("/")
  for k, part in enumerate(parts):
    if _GLOB_CHARS & set(part):
      return "/".join(parts[:k])
  return "/".join(parts[:-1])


def expand(patterns: list[str] | str) -> list[tuple[str, str]]:
  """Input files matching the patterns: ``[(url, key)]`` in sorted order per pattern, where ``key`` is the
  file's path relative to the pattern's root (the directory before the first glob character), the stable name
  used in document ids. Raises FileNotFoundError naming a pattern with no match and IsADirectoryError for a
  directory (give a glob such as ``DIR/*.jsonl``)."""
  if isinstance(patterns, (str, os.PathLike)):
    patterns = [patterns]
  out: list[tuple[str, str]] = []
  for pat in patterns:
    fs, path = url_to_fs(pat)
    if not (_GLOB_CHARS & set(path)):
      if fs.isdir(path):
        raise IsADirectoryError(
          f"input {os.fspath(pat)!r} is a directory; give files or a glob such as "
          f"'{os.fspath(pat).rstrip('/')}/*.jsonl'"
        )
      if not fs.exists(path):  # (not isfile: a named pipe is a fine input)
        raise FileNotFoundError(f"no input file matches {os.fspath(pat)!r}")
      matches = [path]
    else:
      matches = sorted(str(m) for m in fs.glob(path) if not fs.isdir(m))
      if not matches:
        raise FileNotFoundError(f"no input file matches {os.fspath(pat)!r}")
    root = _glob_root(path)
    for m in matches:
      key = m[len(root) :].lstrip("/") if root and m.startswith(root + "/") else posixpath.basename(m)
      out.append((full_url(fs, m), key))
  return out


def open_file(url: str, mode: str = "rb"):
  """Opens a local path with the built-in ``open`` (fsspec's local opener seeks, which a named pipe cannot),
  anything else through its fsspec file system."""
  fs, path = url_to_fs(url)
  if is_local(fs):
    return open(path, mode)
  return fs.open(path, mode)


def exists(url: str) -> bool:
  fs, path = url_to_fs(url)
  return fs.exists(path)


def makedirs(url: str) -> None:
  fs, path = url_to_fs(url)
  fs.makedirs(path, exist_ok=True)


def read_bytes(url: str) -> bytes:
  fs, path = url_to_fs(url)
  return fs.cat_file(path)  # pyright: ignore[reportReturnType]  (fsspec's cat_file returns bytes)


def remove(url: str, recursive: bool = False) -> None:
  fs, path = url_to_fs(url)
  if fs.exists(path):
    fs.rm(path, recursive=recursive)


def listdir(url: str, pattern: str = "*") -> list[str]:
  """Sorted URLs of the entries of ``url`` matching the glob ``pattern``."""
  fs, path = url_to_fs(url)
  return sorted(full_url(fs, str(m)) for m in fs.glob(posixpath.join(path, pattern)))


def atomic_write_bytes(url: str | os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``url``: local disk through a temporary file, fsync and rename; elsewhere as one object
  (visible whole once written)."""
  fs, path = url_to_fs(url)
  if is_local(fs):
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  else:
    fs.pipe_file(path, data)


class AtomicOutput:
  """A writable binary file that appears at ``url`` only when the ``with`` block ends without error (local: temp
  file + rename; object stores: the upload completes at close)."""

  def __init__(self, url: str | os.PathLike):
    self.fs, self.path = url_to_fs(url)
    self.tmp = (
      os.path.join(os.path.dirname(self.path), f".{os.path.basename(self.path)}.tmp-{os.getpid()}")
      if is_local(self.fs)
      else self.path
    )

  def __enter__(self):
    self.f = self.fs.open(self.tmp, "wb")
    return self.f

  def __exit__(self, exc_type, exc, tb):
    if exc_type is not None:
      self.f.close()
      if self.tmp != self.path:
        self.fs.rm(self.tmp)
      return False
    if is_local(self.fs):
      self.f.flush()
      os.fsync(self.f.fileno())
      self.f.close()
      os.replace(self.tmp, self.path)
    else:
      self.f.close()
    return False


class CountingFile:
  """A read-only file object that counts the bytes read through it (``bytes_read``); pyarrow and the JSON-lines
  reader use it so every shard reports how much of the input it actually read."""

  def __init__(self, f):
    self._f = f
    self.bytes_read = 0

  def read(self, n: int = -1) -> bytes:
    data = self._f.read(n)
    self.bytes_read += len(data)
    return data

  def readline(self, n: int = -1) -> bytes:
    data = self._f.readline(n)
    self.bytes_read += len(data)
    return data

  def readinto(self, b) -> int:
    data = self.read(len(b))
    b[: len(data)] = data
    return len(data)

  def __iter__(self) -> Iterator[bytes]:
    while True:
      line = self.readline()
      if not line:
        return
      yield line

  def readable(self) -> bool:
    return True

  def __getattr__(self, name: str) -> Any:
    return getattr(self._f, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._f.close()


# ------------------------------------------------------------------------------------------------------ locks


class LockedError(RuntimeError):
  """Another live process holds the lock of this job shard."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


class ShardLock:
  """An exclusive lock file ``url`` holding ``host pid``.

  A second process on the same shard stops at once (``LockedError`` naming the lock file). A lock left by a
  killed process on this host (its pid no longer alive) is taken over, so kill-and-rerun works. On the local
  disk the lock is created with ``O_CREAT | O_EXCL`` (atomic); object stores have no exclusive create, so there
  the check is exists-then-write (runs on different hosts must not share a shard; the marker still commits).
  """

  def __init__(self, url: str):
    self.url = url
    self.fs, self.path = url_to_fs(url)
    self.me = f"{socket.gethostname()} {os.getpid()}"

  def _try_create(self) -> bool:
    if is_local(self.fs):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        return False
      with os.fdopen(fd, "w") as f:
        f.write(self.me)
      return True
    if self.fs.exists(self.path):
      return False
    self.fs.pipe_file(self.path, self.me.encode())
    return True

  def acquire(self) -> "ShardLock":
    if self._try_create():
      return self
    try:
      host, pid = self.fs.cat_file(self.path).decode().split()  # pyright: ignore[reportAttributeAccessIssue]  (cat_file: bytes)
    except (FileNotFoundError, ValueError):
      host, pid = "", "0"
    if host == socket.gethostname() and not _pid_alive(int(pid)):
      self.fs.rm(self.path)  # left by a killed run on this host
      if self._try_create():
        return self
    raise LockedError(
      f"another process ({host or '?'} pid {pid}) is running this shard: lock file {self.url} "
      "(delete it if that process is gone)"
    )

  def release(self) -> None:
    try:
      if self.fs.cat_file(self.path).decode() == self.me:  # pyright: ignore[reportAttributeAccessIssue]  (cat_file: bytes)
        self.fs.rm(self.path)
    except FileNotFoundError:
      pass

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
