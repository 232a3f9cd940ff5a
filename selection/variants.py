"""Document-id lists and the seqio task variants that keep only the listed documents.

Both ASK-LLM (top-k by score) and DENSITY (inverse-propensity samples) selections end as an **id list**:
UTF-8 text, one document id per line, in selection order (ids never contain a newline). A *variant* of a
registered base task (e.g. ``c4_en_raw``) keeps exactly the examples whose ``id`` is in such a list; the
filter runs first, on the raw ``id``/``text`` examples, so the base task's tokenization runs only on kept
documents. Names follow ``{base}_{method}_r{rate}`` with the base's ``_raw`` replaced, e.g. ``c4_en_raw`` →
``c4_en_askllm_r20`` and ``c4_en_raw_smollm2`` → ``c4_en_askllm_r20_smollm2`` (see ``variant_name``).

Scale: the filter is a ``tf.lookup.StaticHashTable`` that TensorFlow fills from the id file itself
(``tf.lookup.TextFileInitializer``), so the dataset graph holds only the file's path, never the ids (a list
of 10^7+ ids stays a few KB of graph instead of hitting TF's 2 GB GraphDef limit), and no Python list of the
ids is built. Paths are local or any file system TensorFlow opens (``gs://``, ``ram://``...), through
``tf.io.gfile``: the same library that reads the file into the table. ``write_id_list`` streams its ids to
the file and keeps only one 8-byte hash per id to find repeats.

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
import posixpath
import re
from typing import Mapping

import seqio

from tokensift.selection.id_lists import (  # noqa: F401  (re-exported; the noqa after "(" covers every name)
  ID_FIELD,
  _exists,
  _gfile,
  _norm,
  _rate_tag,
  is_remote,
  iter_id_list,
  rate_tag,
  read_id_list,
  variant_name,
  write_id_list,
)

SELECTIONS_ENV = "TOKENSIFT_SELECTIONS"
_LIST_NAME = re.compile(r"^(?P<method>[A-Za-z0-9_]+?)_r(?P<rate>[0-9]+(?:p[0-9]+)?)\.txt$")


def id_table(id_list_path: str | os.PathLike):
  """A ``tf.lookup.StaticHashTable`` {id: line number} that TensorFlow fills from the id file (the graph holds
  only the path); ``None`` for an empty file. Memory: ~55 bytes per id in the TF runtime (measured at 10^7).

  Raises ValueError naming the file and the problem for a blank line or a repeated id (TF rejects both).
  """
  import tensorflow as tf

  path = str(id_list_path)
  if not _exists(path):
    raise FileNotFoundError(f"id list {path!r} does not exist")
  if _gfile().stat(path).length == 0:
    return None
  init = tf.lookup.TextFileInitializer(
    path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
  )
  try:
    return tf.lookup.StaticHashTable(init, default_value=-1)
  except (tf.errors.InvalidArgumentError, tf.errors.FailedPreconditionError) as e:
    detail = e.message.split("}}")[-1].split("[Op:")[0].strip()
    raise ValueError(f"id list {path!r} is not one id per line: {detail}") from None


def filter_by_ids(ds, id_list_path: str | os.PathLike, *, id_field: str = ID_FIELD):
  """tf.data preprocessor: keeps the examples whose ``id_field`` (scalar string) is in the id list.

  The table is built from the file when the dataset is built (not when the task is registered), so a task can
  be registered before its selection exists; membership is one hash lookup per example.
  """
  import tensorflow as tf

  table = id_table(id_list_path)

  def keep(ex):
    if id_field not in ex:
      raise ValueError(f"examples have no {id_field!r} feature to filter on (features: {sorted(ex)})")
    if table is None:
      return tf.constant(False)
    return table.lookup(ex[id_field]) >= 0

  return ds.filter(keep)


def _base(base_task: str | seqio.Task) -> seqio.Task:
  if isinstance(base_task, seqio.Task):
    return base_task
  if base_task not in seqio.TaskRegistry.names():
    import tokensift.tasks

    tokensift.tasks.register_all()
  if base_task not in seqio.TaskRegistry.names():
    raise ValueError(f"base task {base_task!r} is not registered (`tokensift tasks --all` lists tasks)")
  return seqio.TaskRegistry.get(base_task)


def register_variant(
  name: str,
  base_task: str | seqio.Task,
  id_list_path: str | os.PathLike,
  *,
  replace: bool = True,
  id_field: str = ID_FIELD,
) -> seqio.Task:
  """Registers ``name`` = ``base_task`` restricted to the documents listed in ``id_list_path``.

  Same source, output features, postprocessor and metrics as the base; the id filter is prepended to the
  base's preprocessors. ``replace`` (default) re-registers an existing name, e.g. after a new selection.
  Raises FileNotFoundError naming a missing id list, ValueError naming an unknown base task.
  """
  path = _norm(id_list_path)
  if not _exists(path):
    raise FileNotFoundError(f"id list {path!r} for task variant {name!r} does not exist")
  base = _base(base_task)
  if name == base.name:
    raise ValueError(f"variant name {name!r} equals its base task's name")
  if name in seqio.TaskRegistry.names():
    if not replace:
      return seqio.TaskRegistry.get(name)
    seqio.TaskRegistry.remove(name)
  flt = functools.partial(filter_by_ids, id_list_path=path, id_field=id_field)
  flt.__name__ = f"filter_by_ids[{posixpath.basename(path.replace(os.sep, '/'))}]"  # pyright: ignore[reportAttributeAccessIssue]  (seqio logs the name)
  task = base.replace(name=name, preprocessors=[flt, *base.preprocessors])
  seqio.TaskRegistry.add_provider(name, task)
  return task


def register_variants(
  base_task: str, method: str, id_lists: Mapping[int | float | str, str | os.PathLike], **kw
) -> list[seqio.Task]:
  """Registers one variant per rate: ``{rate: id_list_path}`` → tasks named by ``variant_name``."""
  return [register_variant(variant_name(base_task, method, rate), base_task, p, **kw) for rate, p in id_lists.items()]


def register_selection_dir(base_task: str, directory: str | os.PathLike, **kw) -> list[seqio.Task]:
  """Registers every ``{method}_r{rate}.txt`` id list in ``directory`` as a variant of ``base_task``
  (``askllm_r20.txt`` + ``c4_en_raw`` → ``c4_en_askllm_r20``); local or remote (``gs://...``) directories.
  Raises FileNotFoundError for a missing dir."""
  directory = str(directory)
  if is_remote(directory):
    if not _gfile().isdir(directory):
      raise FileNotFoundError(f"selection directory {directory!r} does not exist")
    names = [n.rstrip("/") for n in _gfile().listdir(directory)]
  else:
    if not os.path.isdir(directory):
      raise FileNotFoundError(f"selection directory {directory!r} does not exist")
    names = os.listdir(directory)
  tasks = []
  for file_name in sorted(names):
    m = _LIST_NAME.match(file_name)
    if m:
      path = posixpath.join(directory, file_name) if is_remote(directory) else os.path.join(directory, file_name)
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
