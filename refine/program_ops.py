"""Chunk-level programs as flat operation tuples: the form ``executor`` runs.

An operation is a 5-tuple of strings ``(start, end, source, target, name)``:

- ``remove_lines``: ``start``/``end`` are the line numbers as decimal text (``start == "all"`` for
  ``remove_lines(all=True)``); the other three are "";
- ``normalize``: ``start == end == name == ""``; ``source``/``target`` are the strings (possibly empty);
- a call without arguments: only ``name`` is set, to the name as written (``keep_chunk``, ``skip_chunk``,
  ``keep_doc``, ``untouch_doc``, ``drop_doc``).

For a program in ProX's own canonical style (one call per line, keyword arguments, double quotes, as the rule
programmer writes and refiners mostly do), these are exactly the tuples that one ``re.findall`` returns, so no
object is built per call (building ``program.Call`` tuples cost twice the regex pass itself); the call at index
``i`` is then at line ``i + 1``, column 1 (``program.canonical_calls``, a fast path of the program reader,
fuzz-tested to give what its general reading gives). Any other text goes through ``program.parse`` and its calls
are converted.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from tokensift.refine import program as prog


class Ops(NamedTuple):
  """A chunk-level program as operations. ``calls`` is None for a canonical program (operation ``i`` at line
  ``i + 1``, column 1), else the parsed calls the operations came from (for error positions)."""

  ops: list | tuple
  calls: tuple[prog.Call, ...] | None
  errors: tuple[str, ...]  # parse errors, as text
  ignored: tuple[str, ...]

  def where(self, i: int) -> str:
    """``line:col`` of operation ``i``."""
    return f"{i + 1}:1" if self.calls is None else self.calls[i].where()


def from_program(p: prog.Program) -> Ops:
  ops = []
  for c in p.calls:
    if c.name == "remove_lines":
      args = c.args
      ops.append(("all", "", "", "", "") if args[0][0] == "all" else (str(args[0][1]), str(args[1][1]), "", "", ""))
    elif c.name == "normalize":
      ops.append(("", "", c.args[0][1], c.args[1][1], ""))
    else:
      ops.append(("", "", "", "", c.written))
  return Ops(ops, p.calls, tuple(str(e) for e in p.errors), p.ignored)


def read(text: str) -> Ops:
  """The operations of chunk-level program ``text`` (a ``str``). Never raises."""
  ops = prog.canonical_calls(text)
  if ops is not None:
    return tuple.__new__(Ops, (ops, None, (), ()))  # (NamedTuple's own __new__ is Python: slower)
  return from_program(prog.parse(text))


@functools.lru_cache(maxsize=4096)
def _read_cached(text: str) -> Ops:
  return read(text)


def read_cached(text: str) -> Ops:
  """``read`` with a cache for short programs (``keep_chunk()`` and the rule programmer's one-call programs
  repeat a lot; longer ones are nearly always unique, and caching them only costs)."""
  return _read_cached(text) if len(text) <= 96 else read(text)


def cache_clear() -> None:
  _read_cached.cache_clear()
