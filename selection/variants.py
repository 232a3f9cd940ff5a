"""Document-id lists and the seqio task variants that keep only the listed documents.

Both ASK-LLM (top-k by score) and DENSITY (inverse-propensity samples) selections end as an **id list**:
UTF-8 text, one document id per line, in selection order (ids never contain a newline). A *variant* of a
registered base task (e.g. ``c4_en_raw``) keeps exactly the examples whose ``id`` is in such a list; the
filter runs first, on the raw ``id``/``text`` examples, so the base task's tokenization runs only on kept
documents. Names follow ``{base}_{method}_r{rate}`` with the base's ``_raw`` replaced, e.g. ``c4_en_raw`` →
``c4_en_askllm_r20`` and ``c4_en_raw_smollm2`` → ``c4_en_askllm_r20_smollm2`` (see ``variant_name``).

Other projects register their own variants with ``register_variant(name, base_task, id_list_path)``, or
every list of a selection directory (``{method}_r{rate}.txt`` files, as ``tokensift topk`` / ``tokensift
select`` write them) with ``register_selection_dir(base_task, directory)``. For launches that only import a
module (t5x ``--gin.MIXTURE_OR_TASK_MODULE="'tokensift.selection.variants'"``), ``$TOKENSIFT_SELECTIONS``
(``base_task=directory[,base_task=directory...]``) registers those variants when this module is imported and
again on every ``tokensift.tasks.register_all()``.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

import seqio

from tokensift.jobs import atomic_write_bytes

ID_FIELD = "id"
SELECTIONS_ENV = "TOKENSIFT_SELECTIONS"
_LIST_NAME = re.compile(r"^(?P<method>[A-Za-z0-9_]+?)_r(?P<rate>[0-9]+(?:p[0-9]+)?)\.txt$")


def write_id_list(path: str | os.PathLike, ids: Iterable[str]) -> Path:
  """Writes ``ids`` one per line (atomically: temp file + rename); returns the path.

  Raises ValueError naming the first id that is empty, not a string, holds a newline, or repeats.
  """
  path = Path(path)
  seen: set[str] = set()
  lines = []
  for i, doc_id in enumerate(ids):
    if not isinstance(doc_id, str) or not doc_id or "\n" in doc_id or "\r" in doc_id:
      raise ValueError(f"id #{i} {doc_id!r} cannot go in an id list (need a non-empty string without newlines)")
    if doc_id in seen:
      raise ValueError(f"id {doc_id!r} appears twice in the id list for {str(path)!r}")
    seen.add(doc_id)
    lines.append(doc_id + "\n")
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic_write_bytes(path, "".join(lines).encode("utf-8"))
  return path


def read_id_list(path: str | os.PathLike) -> list[str]:
  """The ids of an id-list file, in order. Raises FileNotFoundError naming a missing file."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"id list {str(path)!r} does not exist")
  return _read_cached(str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size)


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int, size: int) -> list[str]:
  del mtime_ns, size  # cache key only: a rewritten file is read again
  with open(path, encoding="utf-8") as f:
    return [line.rstrip("\n").rstrip("\r") for line in f if line.strip()]


def filter_by_ids(ds, id_list_path: str | os.PathLike, *, id_field: str = ID_FIELD):
  """tf.data preprocessor: keeps the examples whose ``id_field`` (scalar string) is in the id list.

  The list is read when the dataset is built (not when the task is registered), so a task can be registered
  before its selection exists; membership is a ``tf.lookup.StaticHashTable`` (O(1) per example).
  """
  import tensorflow as tf
  ids = read_id_list(id_list_path)
  keys = tf.constant(ids if ids else [""], dtype=tf.string)
  vals = tf.ones_like(keys, dtype=tf.int32) if ids else tf.zeros([1], tf.int32)
  table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, vals), default_value=0)

  def keep(ex):
    if id_field not in ex:
      raise ValueError(f"examples have no {id_field!r} feature to filter on (features: {sorted(ex)})")
    return table.lookup(ex[id_field]) > 0

  return ds.filter(keep)


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


def _base(base_task: str | seqio.Task) -> seqio.Task:
  if isinstance(base_task, seqio.Task):
    return base_task
  if base_task not in seqio.TaskRegistry.names():
    import tokensift.tasks
    tokensift.tasks.register_all()
  if base_task not in seqio.TaskRegistry.names():
    raise ValueError(f"base task {base_task!r} is not registered (`tokensift tasks --all` lists tasks)")
  return seqio.TaskRegistry.get(base_task)


def register_variant(name: str, base_task: str | seqio.Task, id_list_path: str | os.PathLike, *,
                     replace: bool = True, id_field: str = ID_FIELD) -> seqio.Task:
  """Registers ``name`` = ``base_task`` restricted to the documents listed in ``id_list_path``.

  Same source, output features, postprocessor and metrics as the base; the id filter is prepended to the
  base's preprocessors. ``replace`` (default) re-registers an existing name, e.g. after a new selection.
  Raises FileNotFoundError naming a missing id list, ValueError naming an unknown base task.
  """
  path = Path(id_list_path).resolve()
  if not path.is_file():
    raise FileNotFoundError(f"id list {str(path)!r} for task variant {name!r} does not exist")
  base = _base(base_task)
  if name == base.name:
    raise ValueError(f"variant name {name!r} equals its base task's name")
  if name in seqio.TaskRegistry.names():
    if not replace:
      return seqio.TaskRegistry.get(name)
    seqio.TaskRegistry.remove(name)
  flt = functools.partial(filter_by_ids, id_list_path=str(path), id_field=id_field)
  flt.__name__ = f"filter_by_ids[{path.name}]"  # seqio logs preprocessor names
  task = base.replace(name=name, preprocessors=[flt, *base.preprocessors])
  seqio.TaskRegistry.add_provider(name, task)
  return task


def register_variants(base_task: str, method: str, id_lists: Mapping[int | float | str, str | os.PathLike],
                      **kw) -> list[seqio.Task]:
  """Registers one variant per rate: ``{rate: id_list_path}`` → tasks named by ``variant_name``."""
  return [register_variant(variant_name(base_task, method, rate), base_task, p, **kw)
          for rate, p in id_lists.items()]


def register_selection_dir(base_task: str, directory: str | os.PathLike, **kw) -> list[seqio.Task]:
  """Registers every ``{method}_r{rate}.txt`` id list in ``directory`` as a variant of ``base_task``
  (``askllm_r20.txt`` + ``c4_en_raw`` → ``c4_en_askllm_r20``). Raises FileNotFoundError for a missing dir."""
  directory = Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f"selection directory {str(directory)!r} does not exist")
  tasks = []
  for path in sorted(directory.glob("*_r*.txt")):
    m = _LIST_NAME.match(path.name)
    if m:
      tasks.append(register_variant(variant_name(base_task, m["method"], m["rate"]), base_task, path, **kw))
  return tasks


def register_from_env() -> list[str]:
  """Registers the selection directories named in ``$TOKENSIFT_SELECTIONS``; returns the task names.

  Raises ValueError naming a malformed entry (expected ``base_task=directory``).
  """
  value = os.environ.get(SELECTIONS_ENV, "").strip()
  names: list[str] = []
  for entry in filter(None, (e.strip() for e in value.split(","))):
    base, sep, directory = entry.partition("=")
    if not sep or not base or not directory:
      raise ValueError(f"${SELECTIONS_ENV} entry {entry!r}: expected base_task=directory")
    names.extend(t.name for t in register_selection_dir(base.strip(), directory.strip()))
  return names


def _install_registrar() -> None:
  from tokensift.tasks import registry
  registry.add_registrar(register_from_env)
  if os.environ.get(SELECTIONS_ENV):
    register_from_env()


_install_registrar()
