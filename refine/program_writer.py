"""Writing ProX programs from code (the rule programmer, tests): string literals that ``program.parse`` reads back
exactly, and calls in ProX's keyword style. Split from ``program.py`` (the reader) so each stays small."""

from __future__ import annotations

from tokensift.refine import program as prog


def quote(value: str) -> str:
  """A string literal that ``parse`` reads back as exactly ``value`` (for programs written by code): ``"..."``,
  or ``'...'`` when an inner ``"`` would end the double-quoted form early. Raises ``ValueError`` (naming the
  value) for a value no literal can hold: one with a line break, or with both quote styles in closing spots."""
  if "\n" not in value:
    for q in ('"', "'"):
      lit = q + value + q
      if q not in value or all(read_back(lit + tail) == value for tail in (")", ", x=1)", ", 'y')")):
        return lit
  raise ValueError(
    f"no string literal reads back as {value[:80]!r}: it holds a line break or quotes in "
    "closing positions (see refine/program.py, the string rule)"
  )


def read_back(text: str) -> str | None:
  """The string literal at the start of ``text`` as ``program.parse`` reads it, or None."""
  return prog.read_string(text, 0)  # (the parser's own string rule, not a copy)


def format_call(name: str, **kwargs: prog.Value) -> str:
  """Writes one call in ProX's keyword style, e.g. ``remove_lines(line_start=0, line_end=5)``."""
  parts = []
  for k, v in kwargs.items():
    parts.append(f"{k}={quote(v) if isinstance(v, str) else repr(v)}")
  return f"{name}({', '.join(parts)})"
