"""Words and figures for the report's sentences: shares, counts with their nouns, lists, numbers, images."""

from __future__ import annotations


def pct(x: float | None) -> str:
  """A share as a whole percentage; a nonzero share that rounds to 0% (or short of 1 that rounds to 100%) reads
  "<1%" (">99%")."""
  if x is None:
    return "–"
  r = f"{100 * x:.0f}"
  return "<1%" if r == "0" and x > 0 else ">99%" if r == "100" and x < 1 else f"{r}%"


def count(k: int, noun: str, plural: str | None = None) -> str:
  """``k`` and the noun, singular for exactly one ("1 line", "2 lines", "0 lines")."""
  return f"{k:,} {noun if k == 1 else plural or noun + 's'}"


def join_words(items: list[str]) -> str:
  """ "a", "a and b", "a, b and c"."""
  return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def kind_name(k: str) -> str:
  return k.replace("_", " ")


def num(x: float | None, d: int = 2) -> str:
  return "–" if x is None else f"{x:.{d}f}"


def img(name: str) -> str:
  """A figure at its own pixel size (text sizes are set for that, ``plots.STYLE``), shrunk only to the page."""
  return f'<img src="{name}">'
