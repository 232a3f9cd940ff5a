r"""The ProX program language: a small grammar and a hand-written parser (never ``exec``/``eval``/``ast``).

A program is text written by a refining model or by the rule programmer, for example::

    # Analysis: lines 0-2 are navigation
    remove_lines(line_start=0, line_end=2)
    normalize(source_str="\frac{1}{2}", target_str="\tfrac12")

Grammar (junk between calls is skipped; ``#`` starts a comment outside string literals)::

    program  := { junk | comment | call }
    call     := NAME ws "(" ws [ arg { ws "," ws arg } [ ws "," ] ] ws ")"
    arg      := [ NAME ws "=" ws ] value
    value    := STRING | INT | "True" | "False" | "true" | "false" | "None"
    INT      := [ "+" | "-" ] DIGIT { DIGIT }

String literals are literal text, as refining models write them (DESIGN §3): there are **no escape
sequences**; ``"\frac"``, ``"\alpha"``, ``"\nabla \times"``, ``"\\["`` mean exactly those characters (OpenWebMath is
full of LaTeX, and ProX reads strings this way). The one rule for where a string ends:

    A string opens at ``"`` or ``'`` and closes at the first later quote of the same kind, on the same line,
    that is followed (after optional whitespace) by either
      - ``,`` then (after optional whitespace) the start of a next argument: a quote, a digit or signed digit,
        ``)`` (a trailing comma), ``True``/``False``/``None``, or ``NAME =`` (a keyword); or
      - ``)`` (the end of the call) that is not itself followed (after spaces) by a quote.
    Any other quote is part of the string. No such quote before the end of the line: "unterminated string".

So quotes inside a string survive (``normalize(source_str="said "yes" twice", target_str="said yes twice")``
reads ``said "yes" twice``), and ``,`` ``)`` ``=`` ``#`` inside a string are plain text. The rare ambiguous
cases, and how they resolve:

- a string that itself contains its quote followed by ``,`` and something argument-like, e.g. the source
  ``a", "b`` in ``normalize("a", "b", "c")``: the string ends at the first such quote (three arguments:
  an error, never a silent misreading). Write it with the other quote style: ``normalize('a", "b', "c")``;
- a string containing its quote followed by ``)`` (``"f("x")y"``): it ends at ``"x"``'s closing quote unless
  that ``)`` is followed by a quote (``"f("x")"`` ends at the last quote); again, the other quote style helps;
- a string cannot hold a line break (ProX reads a program line by line), and the search for the closing quote
  never looks past the line; a comment between ``,`` and the next argument on a later line is not looked
  through when deciding where a string ends (the string is then unterminated).

``quote(value)`` writes a literal that reads back as ``value`` (choosing the quote style) or raises.

Known calls (aliases resolve to the canonical name; keyword names accept the short forms models write):

    drop_doc()                      keep_doc()  (alias untouch_doc())
    remove_lines(line_start, line_end)   keywords also start=/end=, start_line=/end_line=; or all=True
    normalize(source_str, target_str)    keywords also source=/target=, src=/tgt=
    keep_chunk()                    (alias skip_chunk())

Any other ``name(`` is junk (recorded in ``Program.ignored``, never an error: ProX ignores it too). A known
call that does not parse or bind (missing ``)``, unterminated string, unknown keyword, wrong type, too many
arguments) becomes a ``ParseError`` value with its position; parsing itself never raises.

Parsing is linear in the program's length for every input: the scan for calls only tries at the start of an
identifier, every string search moves forward with ``str.find``, and after an error parsing resumes at the
end of the line.
"""

from __future__ import annotations

import bisect
import functools
import re
from typing import Any, NamedTuple

Value = Any  # str | int | bool | None

DOC_CALLS = ("drop_doc", "keep_doc")
CHUNK_CALLS = ("remove_lines", "normalize", "keep_chunk")
CALL_ALIASES = {"untouch_doc": "keep_doc", "skip_chunk": "keep_chunk"}

# Positional parameter order and the keyword spellings accepted for each parameter.
PARAMS: dict[str, tuple[str, ...]] = {
  "drop_doc": (),
  "keep_doc": (),
  "keep_chunk": (),
  "remove_lines": ("line_start", "line_end"),
  "normalize": ("source_str", "target_str"),
}
KEYWORD_ALIASES: dict[str, dict[str, str]] = {
  "remove_lines": {
    "line_start": "line_start",
    "start": "line_start",
    "start_line": "line_start",
    "line_end": "line_end",
    "end": "line_end",
    "end_line": "line_end",
    "all": "all",
  },
  "normalize": {
    "source_str": "source_str",
    "source": "source_str",
    "src": "source_str",
    "target_str": "target_str",
    "target": "target_str",
    "tgt": "target_str",
  },
}
PARAM_TYPES = {"line_start": int, "line_end": int, "source_str": str, "target_str": str, "all": bool}
MAX_INT_DIGITS = 18  # longer integer literals are clamped (they are out of range for any document)

_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")
_SPACE = frozenset(" \t\r\f\v")
_WS = _SPACE | {"\n"}
_KNOWN = frozenset(PARAMS) | frozenset(CALL_ALIASES)
# The next comment or ``name(``. The look-behind makes the regex try a name only where an identifier starts
# (without it, every position inside a long word is a start, and call-free text parses in quadratic time).
_SCAN = re.compile(r"#[^\n]*|(?<![A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)[ \t\r\f\v]*\(")
# After a candidate closing quote and its ',': the start of a next argument (see the module docstring).
_NEXT_ARG = re.compile(
  r"""["')0-9]|[+-][0-9]|(?:True|False|None|true|false)(?![A-Za-z0-9_])|"""
  r"[A-Za-z_][A-Za-z0-9_]*[ \t\r\f\v\n]*=(?!=)"
)
_LITERALS = {"True": True, "true": True, "False": False, "false": False, "None": None}


class ParseError(NamedTuple):
  """A problem in a program, at character offset ``pos`` (``line``/``col`` are 1-based)."""

  message: str
  pos: int
  line: int
  col: int

  def __str__(self) -> str:
    return f"{self.line}:{self.col}: {self.message}"


class Call(NamedTuple):
  """One parsed and bound call. ``args`` maps canonical parameter names to values, in parameter order.

  (Named tuples rather than frozen dataclasses: the executor builds millions of these; they are immutable
  and about 10x cheaper to create.)
  """

  name: str  # canonical name (aliases resolved)
  args: tuple[tuple[str, Value], ...]
  pos: int  # offset of the call name in the program text
  line: int  # 1-based
  col: int  # 1-based
  written: str = ""  # the name as written (e.g. ``untouch_doc``)

  def arg(self, key: str, default: Value = None) -> Value:
    for k, v in self.args:
      if k == key:
        return v
    return default

  def where(self) -> str:
    return f"{self.line}:{self.col}"


class Program(NamedTuple):
  """A parsed program: its calls in order, its errors, and the unknown ``name(`` it skipped as junk."""

  source: str
  calls: tuple[Call, ...]
  errors: tuple[ParseError, ...]
  ignored: tuple[str, ...] = ()


class _LineIndex:
  """1-based (line, col) of offsets in ``text`` (newline offsets found once, then bisected)."""

  def __init__(self, text: str):
    self.text = text
    self.newlines: list[int] | None = None

  def __call__(self, pos: int) -> tuple[int, int]:
    if self.newlines is None:  # found once (a per-call ``"\n" in text`` would make parsing quadratic)
      self.newlines = [m.start() for m in re.finditer("\n", self.text)] if "\n" in self.text else []
    if not self.newlines:
      return 1, pos + 1
    k = bisect.bisect_left(self.newlines, pos)
    return k + 1, pos - (self.newlines[k - 1] + 1 if k else 0) + 1


# The common case, matched in one step: a call whose arguments are plain literals (integers of at most 18
# digits, strings without their own quote or a line break inside, True/False/None) separated by commas on one
# line, and not followed by a quote. Anything else (inner quotes, comments, line breaks, errors) takes the
# general parser, which gives the same result (fuzz-checked).
_FAST_VALUE = r"""(?:-?[0-9]{1,18}|"[^"\n]*"|'[^'\n]*'|True|False|None|true|false)"""
_FAST_ARG = rf"(?:[A-Za-z_][A-Za-z0-9_]*[ \t]*=[ \t]*)?{_FAST_VALUE}"
_FAST_CALL = re.compile(rf"\([ \t]*(?:{_FAST_ARG}(?:[ \t]*,[ \t]*{_FAST_ARG})*)?[ \t]*\)(?![ \t\r\f\v]*[\"'])")
_FAST_ONE = re.compile(rf"(?:([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*)?({_FAST_VALUE})")


def _fast_args(s: str, paren: int) -> tuple[list, list, int] | None:
  """(positional, keyword, end) for a plain one-line call at ``paren``, or None to use the general parser."""
  m = _FAST_CALL.match(s, paren)
  if m is None:
    return None
  end = m.end()
  positional: list[tuple[Value, int]] = []
  keyword: list[tuple[str, Value, int]] = []
  for a in _FAST_ONE.finditer(s, paren + 1, end - 1):
    raw = a.group(2)
    c = raw[0]
    if c in "\"'":
      val: Value = raw[1:-1]
    elif c in _IDENT_START:
      val = _LITERALS[raw]
    else:
      val = int(raw)
    if a.group(1) is None:
      if keyword:
        return None  # positional after keyword: the general parser reports it
      positional.append((val, a.start()))
    else:
      keyword.append((a.group(1), val, a.start()))
  return positional, keyword, end


def _closes(s: str, k: int) -> bool:
  """Whether a quote just before offset ``k`` closes its string: it is followed (after whitespace) by ``)``
  that is not followed by a quote, or by ``,`` and the start of a next argument."""
  n = len(s)
  while k < n and s[k] in _WS:
    k += 1
  if k >= n:
    return False
  c = s[k]
  if c == ")":
    k += 1
    while k < n and s[k] in _SPACE:
      k += 1
    return k >= n or s[k] not in "\"'"
  if c != ",":
    return False
  k += 1
  while k < n and s[k] in _WS:
    k += 1
  return _NEXT_ARG.match(s, k) is not None


class _Fail(Exception):
  """Internal: a call failed to parse at ``pos``; parsing resumes at ``resume``."""

  def __init__(self, message: str, pos: int, resume: int):
    super().__init__(message)
    self.message, self.pos, self.resume = message, pos, resume


class _Parser:
  def __init__(self, text: str):
    self.s = text
    self.n = len(text)

  def line_end(self, i: int) -> int:
    j = self.s.find("\n", i)
    return self.n if j < 0 else j

  def snippet(self, i: int) -> str:
    return self.s[i : min(i + 12, self.line_end(i))]

  def skip_ws(self, i: int) -> tuple[int, bool]:
    """Skips whitespace and comments inside a call; returns (position, whether a line break was crossed)."""
    s, n, crossed = self.s, self.n, False
    while i < n:
      c = s[i]
      if c == "\n":
        crossed = True
        i += 1
      elif c in _SPACE:
        i += 1
      elif c == "#":
        i = self.line_end(i)
      else:
        break
    return i, crossed

  def fail(self, message: str, pos: int, crossed: bool, call_pos: int) -> _Fail:
    """An error at ``pos``. When a line break was crossed to get there, the call is reported unterminated
    and parsing resumes at the start of that line (so the next line's call is still read)."""
    if crossed:
      nl = self.s.rfind("\n", call_pos, pos)
      return _Fail(f"unterminated call (missing ')'); then {message}", call_pos, nl + 1)
    return _Fail(message, pos, self.line_end(pos))

  def string(self, i: int) -> tuple[str, int]:
    """The string literal whose quote is at ``i``: literal text up to its closing quote (module docstring);
    returns (value, offset after the closing quote)."""
    s, n = self.s, self.n
    quote = s[i]
    pos = i + 1
    while True:
      j = s.find(quote, pos)
      nl = s.find("\n", pos, n if j < 0 else j)
      if nl >= 0:
        raise _Fail("unterminated string literal (no closing quote before the line break)", i, nl)
      if j < 0:
        raise _Fail("unterminated string literal", i, n)
      if _closes(s, j + 1):
        return s[i + 1 : j], j + 1
      pos = j + 1

  def value(self, i: int) -> tuple[Value, int]:
    s, n = self.s, self.n
    c = s[i] if i < n else ""
    if c in ("'", '"'):
      return self.string(i)
    if c in _DIGITS or (c in "+-" and i + 1 < n and s[i + 1] in _DIGITS):
      j = i + 1
      while j < n and s[j] in _DIGITS:
        j += 1
      if j < n and (s[j] == "." or s[j] in _IDENT_START):
        raise _Fail(f"expected an integer, got {s[i : j + 1]!r}", i, self.line_end(i))
      digits = s[i:j].lstrip("+-")
      sign = -1 if s[i] == "-" else 1
      if len(digits) > MAX_INT_DIGITS:
        return sign * 10**MAX_INT_DIGITS, j
      return sign * int(digits), j
    if c in _IDENT_START:
      j = i + 1
      while j < n and s[j] in _IDENT_CHARS:
        j += 1
      word = s[i:j]
      if word in _LITERALS:
        return _LITERALS[word], j
      raise _Fail(f"expected a value (string, integer, True/False), got {word!r}", i, self.line_end(i))
    shown = self.snippet(i) if i < n else "end of program"
    raise _Fail(f"expected a value (string, integer, True/False), got {shown!r}", i, self.line_end(i))

  def call(self, name_pos: int, name: str, paren: int) -> tuple[list, list, int]:
    """Parses ``( args )`` from the ``(`` at ``paren``; returns (positional, keyword, end offset)."""
    s, n = self.s, self.n
    positional: list[tuple[Value, int]] = []
    keyword: list[tuple[str, Value, int]] = []
    i, crossed = self.skip_ws(paren + 1)
    if i < n and s[i] == ")":
      return positional, keyword, i + 1
    while True:
      if i >= n:
        raise _Fail(f"unterminated call {name}( (missing ')')", name_pos, n)
      key = None
      arg_pos = i
      if s[i] in _IDENT_START:
        j = i + 1
        while j < n and s[j] in _IDENT_CHARS:
          j += 1
        k, _ = self.skip_ws(j)
        if k < n and s[k] == "=" and not s.startswith("==", k):
          key = s[i:j]
          i, crossed2 = self.skip_ws(k + 1)
          crossed = crossed or crossed2
      try:
        val, i = self.value(i)
      except _Fail as e:
        raise self.fail(e.message, e.pos, crossed, name_pos) from None
      if key is None:
        if keyword:
          raise _Fail("positional argument after keyword argument", arg_pos, self.line_end(arg_pos))
        positional.append((val, arg_pos))
      else:
        keyword.append((key, val, arg_pos))
      i, crossed = self.skip_ws(i)
      if i < n and s[i] == ",":
        i, crossed = self.skip_ws(i + 1)
        if i < n and s[i] == ")":
          return positional, keyword, i + 1
        continue
      if i < n and s[i] == ")":
        return positional, keyword, i + 1
      if i >= n:
        raise _Fail(f"unterminated call {name}( (missing ')')", name_pos, n)
      raise self.fail(f"expected ',' or ')', got {self.snippet(i)!r}", i, crossed, name_pos)


def _bind(name: str, positional: list, keyword: list) -> tuple[tuple[tuple[str, Value], ...], str | None]:
  """Binds arguments to ``name``'s parameters; returns (args, error message or None)."""
  params = PARAMS[name]
  if not positional and not keyword and not params:
    return (), None
  aliases = KEYWORD_ALIASES.get(name, {})
  bound: dict[str, Value] = {}
  if len(positional) > len(params):
    return (), f"{name}() takes {len(params)} arguments, got {len(positional)} positional"
  for p, (val, _) in zip(params, positional):
    bound[p] = val
  for key, val, _ in keyword:
    canon = aliases.get(key)
    if canon is None:
      allowed = sorted(aliases) or "no arguments"
      return (), f"{name}() got an unexpected keyword {key!r} (accepts {allowed})"
    if canon in bound:
      return (), f"{name}() got {canon!r} twice"
    bound[canon] = val
  for key, val in bound.items():
    want = PARAM_TYPES[key]
    ok = isinstance(val, want) and (want is bool or not isinstance(val, bool))
    if not ok:
      return (), f"{name}(): {key} must be {want.__name__}, got {val!r}"
  if name == "remove_lines" and "all" in bound:
    if len(bound) != 1:
      return (), "remove_lines(all=...) takes no other argument"
    if bound["all"] is not True:
      return (), "remove_lines(all=False) removes nothing: write keep_chunk()"
    return (("all", True),), None
  missing = [p for p in params if p not in bound]
  if missing:
    return (), f"{name}() missing {', '.join(missing)}"
  return tuple((p, bound[p]) for p in params), None


# A call in ProX's own canonical style alone on its line, as the rule programmer writes and refiners mostly do;
# groups: start, end, source, target, name. A text is canonical when every line matches: a match never spans a
# line, so the matches cover the text when there are as many as lines (a final line break ends the last line).
_CANONICAL_LINE = re.compile(
  r"""(?m)^(?:remove_lines\(line_start=([0-9]{1,18}), line_end=([0-9]{1,18})\)|"""
  r"""normalize\(source_str="([^"\n]*)", target_str="([^"\n]*)"\)|"""
  r"""(keep_chunk|keep_doc|drop_doc|skip_chunk|untouch_doc)\(\))(?:\n|\Z)"""
)
_CANONICAL_START = frozenset("rnksdu")  # (the first letters of the canonical calls)


def canonical_calls(text: str) -> list[tuple[str, str, str, str, str]] | None:
  """The calls of a program wholly in the canonical style, in one regex pass, as ``(start, end, source, target,
  name)`` tuples of strings (call ``i`` at line ``i + 1``, column 1), or None for any other text. A fast path of
  the reader (``parse``, ``program_ops.read``), fuzz-tested to give what ``parse(text, fast=False)`` gives."""
  if text[:1] in _CANONICAL_START:
    calls = _CANONICAL_LINE.findall(text)
    if len(calls) == text.count("\n") + (text[-1] != "\n"):
      return calls
  return None


def parse(text: str, *, fast: bool = True) -> Program:
  """Parses program text. Never raises (for any ``str``); errors come back in ``Program.errors``.

  There is one reader (``_Parser``) and two fast paths that give the same result: a canonical program is read in
  one regex pass (``canonical_calls``) and, in any other program, a plain one-line call by one regex match
  (``_fast_args``). ``fast=False`` turns both off: the reference they are fuzz-tested against.
  """
  if isinstance(text, (bytes, bytearray)):
    text = bytes(text).decode("utf-8", "replace")
  elif not isinstance(text, str):
    text = "" if text is None else str(text)
  if fast:
    found = canonical_calls(text)
    if found is not None:
      return _canonical_program(text, found)
  return _parse(text, fast)


def _canonical_program(text: str, found: list[tuple[str, str, str, str, str]]) -> Program:
  new = tuple.__new__  # (NamedTuple's own __new__ is a Python function: twice as slow)
  calls = []
  pos = 0
  for line, (a, b, src, tgt, name) in enumerate(found, 1):
    if a:
      args: tuple = (("line_start", int(a)), ("line_end", int(b)))
      calls.append(new(Call, ("remove_lines", args, pos, line, 1, "remove_lines")))
    elif name:
      calls.append(new(Call, (CALL_ALIASES.get(name, name), (), pos, line, 1, name)))
    else:
      calls.append(new(Call, ("normalize", (("source_str", src), ("target_str", tgt)), pos, line, 1, "normalize")))
    pos = text.find("\n", pos) + 1  # (the next line's start)
  return new(Program, (text, tuple(calls), (), ()))


def read_string(text: str, i: int = 0) -> str | None:
  """The string literal whose opening quote is ``text[i]``, read as a call's argument (the string rule in the
  module docstring), or None when it does not close."""
  try:
    return _Parser(text).string(i)[0]
  except _Fail:
    return None


def _parse(text: str, fast: bool) -> Program:
  s, n = text, len(text)
  p = None
  calls: list[Call] = []
  errors: list[ParseError] = []
  ignored: list[str] = []
  where = _LineIndex(s)

  def err(message: str, pos: int) -> None:
    line, col = where(pos)
    errors.append(ParseError(message, pos, line, col))

  i = 0
  while i < n:
    m = _SCAN.search(s, i)
    if m is None:
      break
    word = m.group(1)
    if word is None:  # a comment
      i = m.end()
      continue
    start, j, k = m.start(), m.start() + len(word), m.end() - 1
    if word not in _KNOWN:
      if len(ignored) < 100:
        line, col = where(start)
        ignored.append(f"{line}:{col}: {word}(")
      i = j
      continue
    name = CALL_ALIASES.get(word, word)
    plain = _fast_args(s, k) if fast else None
    if plain is not None:
      positional, keyword, end = plain
    else:
      try:
        if p is None:
          p = _Parser(s)
        positional, keyword, end = p.call(start, name, k)
      except _Fail as e:
        err(e.message, e.pos)
        i = max(e.resume, j)
        continue
    args, problem = _bind(name, positional, keyword)
    if problem:
      err(problem, start)
    else:
      line, col = where(start)
      calls.append(Call(name, args, start, line, col, word))
    i = end
  return Program(text, tuple(calls), tuple(errors), tuple(ignored))


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Program:
  return parse(text)


def parse_cached(text: str) -> Program:
  """``parse`` with a cache for short programs (``keep_doc()``, ``keep_chunk()`` and friends repeat a lot;
  longer programs are nearly always unique, and caching them only costs)."""
  if isinstance(text, str) and len(text) <= 96:
    return _parse_cached(text)
  return parse(text)
