"""The rule programmer: writes ProX programs from quality heuristics (no model).

It is the no-model baseline and the teacher that writes training programs for a refining model. Its output
is program text, run through the same parser and executor as a model's programs. The rules follow the spirit
of published quality filters:

- document level (``drop_doc()``): very short documents (Gopher: < 50 words), "lorem ipsum" (C4), Gopher's
  mean word length, symbol-to-word ratio, bullet-line and ellipsis-line fractions, alphabetic-word fraction and
  stop words, FineWeb's fraction of lines ending in punctuation and of short lines; optionally C4's curly
  bracket rule;
- line level (``remove_lines``): lines mentioning javascript and cookie/privacy-policy lines (C4), navigation
  and boilerplate lines (menus, share/subscribe, copyright, "posted by", Stack Exchange chrome such as
  "Thanks in advance"), lines without terminal punctuation (C4; web profile only: math text breaks lines inside
  formulas), repeated lines (Gopher/FineWeb duplicate-line rules: later copies go);
- string level (``normalize``): HTML entities left in the text (``&apos;`` → ``'``), except those whose
  text ProX's executor would read differently (``prox_safe``: ``&quot;`` → ``"``, ``&#44;`` → ``,`` ...).

Every program it writes executes identically under GAIR-NLP/ProX's executor: one call per line, keyword
arguments, double-quoted strings that ``prox_safe`` accepts, line ranges inside the document.

``RuleConfig.web()`` (C4-like web text) and ``RuleConfig.math()`` (OpenWebMath) choose which rules apply.
"""

from __future__ import annotations

import dataclasses
import html
import re
from typing import Sequence

from tokensift.refine import program_writer as writer
from tokensift.refine.chunks import Chunk


@dataclasses.dataclass(frozen=True)
class RuleConfig:
  """Which rules run and their thresholds (``None`` switches a document rule off)."""

  profile: str = "web"
  min_doc_words: int | None = 50
  mean_word_length: tuple[float, float] | None = (3.0, 10.0)
  max_symbol_word_ratio: float | None = 0.1
  max_bullet_line_fraction: float | None = 0.9
  max_ellipsis_line_fraction: float | None = 0.3
  min_alpha_word_fraction: float | None = 0.8
  min_stop_words: int | None = 2
  min_punct_line_fraction: float | None = 0.12
  max_short_line_fraction: float | None = 0.67
  short_line_chars: int = 30
  drop_lorem_ipsum: bool = True
  drop_curly_bracket: bool = False
  remove_javascript: bool = True
  remove_policy: bool = True
  remove_boilerplate: bool = True
  boilerplate_max_words: int = 12
  remove_unpunctuated: bool = True
  remove_repeated: bool = True
  repeated_min_words: int = 3
  normalize_entities: bool = True

  @classmethod
  def web(cls) -> "RuleConfig":
    return cls()

  @classmethod
  def math(cls) -> "RuleConfig":
    return cls(
      profile="math",
      mean_word_length=None,
      min_alpha_word_fraction=None,
      min_stop_words=None,
      min_punct_line_fraction=None,
      max_short_line_fraction=None,
      remove_unpunctuated=False,
    )

  @classmethod
  def named(cls, name: str) -> "RuleConfig":
    if name not in ("web", "math"):
      raise ValueError(f"unknown rule profile {name!r}: use 'web' or 'math'")
    return cls.web() if name == "web" else cls.math()


@dataclasses.dataclass(frozen=True)
class RuleProgram:
  """What the rule programmer wrote for one document, and why."""

  doc_program: str
  chunk_program: str
  fired: tuple[tuple[str, int], ...]  # (rule, lines or 1 for document rules), in rule order
  removed: tuple[tuple[int, int], ...] = ()  # merged line ranges of the chunk program
  normalizations: tuple[tuple[str, str], ...] = ()

  @property
  def rules(self) -> tuple[str, ...]:
    return tuple(name for name, _ in self.fired)

  def chunk_programs(self, chunks: Sequence[Chunk], text: str) -> list[str]:
    """The chunk program split per chunk (teacher data for chunk-level training): each chunk gets the line
    ranges inside it and the normalizations whose source first occurs in it (each normalization once, since
    the concatenated programs run against the whole document)."""
    lines = text.split("\n")
    placed: set[int] = set()
    out = []
    for ch in chunks:
      calls = []
      for a, b in self.removed:
        lo, hi = max(a, ch.first_line), min(b, ch.last_line)
        if lo <= hi:
          calls.append(writer.format_call("remove_lines", line_start=lo, line_end=hi))
      body = "\n".join(lines[ch.first_line : ch.last_line + 1])
      for k, (src, tgt) in enumerate(self.normalizations):
        if k not in placed and src in body:
          placed.add(k)
          calls.append(writer.format_call("normalize", source_str=src, target_str=tgt))
      out.append("\n".join(calls) if calls else "keep_chunk()")
    return out


_TERMINAL = (".", "!", "?", '"', "'", "\u201d", "\u2019", ".)", "!)", "?)")
_POLICY = (
  "terms of use",
  "privacy policy",
  "cookie policy",
  "uses cookies",
  "use of cookies",
  "use cookies",
  "accept cookies",
  "cookies to improve",
  "cookie settings",
)
_STOP_WORDS = frozenset(("the", "be", "to", "of", "and", "that", "have", "with"))
_BULLETS = ("\u2022", "\u2023", "\u25e6", "\u2043", "\u2219", "-", "*", "\u00b7", "\u25aa", "\u25cf")
_ELLIPSIS = ("...", "\u2026")

_NAV_WORDS = (
  r"home|menu|search|log ?in|log ?out|sign ?in|sign ?up|register|subscribe|share|tweet|pin it|email|"
  r"print|reply|previous|next|older posts?|newer posts?|back to top|top|skip to (?:main )?content|"
  r"read more|continue reading|load more|show more|view more|see more|more|contact(?: us)?|about(?: us)?|"
  r"sitemap|faq|cart|checkout|my account|follow us|like us on facebook|comments?|permalink|"
  r"advertisement|sponsored|related posts?|related articles?|recent posts?|popular posts?|archives?|"
  r"categories|tags|leave a (?:comment|reply)|add a comment|report (?:abuse|this)|"
  r"you might also like|you may also like|click here(?: to [\w ]{0,40})?|"
  r"thanks?(?: you)?(?: (?:so|very) much)?(?: in advance)?(?: for (?:your|any|the) help)?|"
  r"any help (?:would be|is|will be) (?:greatly |much |very much )?appreciated|"
  r"share\|cite\|improve this (?:question|answer)|up ?vote|down ?vote|accepted"
)
_NAV_LINE = re.compile(rf"^\W*(?:{_NAV_WORDS})\W*$", re.IGNORECASE)
_BOILER_PREFIX = re.compile(
  r"^\W*(?:posted (?:by|on|in)|filed under|tags?:|categories:|share this|like this:|copyright\b|\(c\) ?\d{4}|"
  r"\u00a9|all rights reserved|powered by|published by|last updated|asked \w+ \d|answered \w+ \d|"
  r"edited \w+ \d|follow us on|sign up for (?:our|the) newsletter|subscribe to (?:our|the)|"
  r"skip to|jump to navigation)",
  re.IGNORECASE,
)
_BOILER_ANY = re.compile(r"all rights reserved|powered by (?:wordpress|blogger|shopify)|\u00a9 ?\d{4}", re.IGNORECASE)
_NAV_SEPARATORS = re.compile(r"\s*(?:\||\u00bb|\u2022|\u00b7|::)\s*")
_NAV_ITEM = re.compile(r"^[^\W\d_][\w'&.,\- ]*$")
_ALPHA_WORD = re.compile(r"\S*[^\W\d_]\S*")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _is_nav_list(line: str) -> bool:
  """``Home | About | Contact``: three or more short items between separators."""
  parts = [p for p in _NAV_SEPARATORS.split(line.strip()) if p]
  return len(parts) >= 3 and all(len(p.split()) <= 3 and _NAV_ITEM.match(p) for p in parts)


def _prose(line: str, n_words: int) -> bool:
  """At least 60% of the words are plain words (formula rows, matrices and grammars repeat legitimately)."""
  plain = sum(1 for w in line.split() if w.strip(".,;:!?\"'()").isalpha())
  return plain >= 0.6 * n_words


def _boilerplate(line: str, n_words: int, cfg: RuleConfig) -> bool:
  if n_words == 0 or n_words > cfg.boilerplate_max_words:
    return False
  return bool(_NAV_LINE.match(line) or _BOILER_PREFIX.match(line) or _BOILER_ANY.search(line) or _is_nav_list(line))


def _doc_rules(text: str, lines: list[str], words: list[str], cfg: RuleConfig) -> str | None:
  """The first document rule that fires, or None."""
  n = len(words)
  lower = text.lower()
  if cfg.min_doc_words is not None and n < cfg.min_doc_words:
    return "too_short"
  if cfg.drop_lorem_ipsum and "lorem ipsum" in lower:
    return "lorem_ipsum"
  if cfg.drop_curly_bracket and "{" in text:
    return "curly_bracket"
  if cfg.mean_word_length is not None:
    mean = len("".join(words)) / n
    if not cfg.mean_word_length[0] <= mean <= cfg.mean_word_length[1]:
      return "mean_word_length"
  if cfg.max_symbol_word_ratio is not None:
    symbols = text.count("#") + text.count("...") + text.count("\u2026")
    if symbols / n > cfg.max_symbol_word_ratio:
      return "symbol_ratio"
  nonempty = [ln.strip() for ln in lines if ln.strip()]
  if nonempty:
    if cfg.max_bullet_line_fraction is not None:
      if sum(ln.startswith(_BULLETS) for ln in nonempty) / len(nonempty) > cfg.max_bullet_line_fraction:
        return "bullet_lines"
    if cfg.max_ellipsis_line_fraction is not None:
      if sum(ln.endswith(_ELLIPSIS) for ln in nonempty) / len(nonempty) > cfg.max_ellipsis_line_fraction:
        return "ellipsis_lines"
    if cfg.min_punct_line_fraction is not None:
      if sum(ln.endswith(_TERMINAL) for ln in nonempty) / len(nonempty) < cfg.min_punct_line_fraction:
        return "few_punctuated_lines"
    if cfg.max_short_line_fraction is not None:
      short = sum(len(ln) <= cfg.short_line_chars for ln in nonempty)
      if short / len(nonempty) > cfg.max_short_line_fraction:
        return "short_lines"
  if cfg.min_alpha_word_fraction is not None:
    alpha = len(_ALPHA_WORD.findall(text))  # words with a letter (a word character, not a digit or "_")
    if alpha / n < cfg.min_alpha_word_fraction:
      return "non_alpha_words"
  if cfg.min_stop_words is not None:
    found = 0
    for w in words:
      if w.lower() in _STOP_WORDS:
        found += 1
        if found >= cfg.min_stop_words:
          break
    else:
      return "few_stop_words"
  return None


def _line_rule(line: str, stripped: str, seen: set[str], cfg: RuleConfig) -> str | None:
  """The first line rule that removes ``line``, or None (``seen`` collects stripped lines for repeats)."""
  if not stripped:
    return None
  low = stripped.lower()
  n_words = len(stripped.split())
  if cfg.remove_javascript and "javascript" in low:
    return "javascript"
  if cfg.remove_policy and any(p in low for p in _POLICY):
    return "cookie_policy"
  if cfg.remove_boilerplate and _boilerplate(stripped, n_words, cfg):
    return "boilerplate"
  if cfg.remove_repeated and n_words >= cfg.repeated_min_words:
    if stripped in seen:
      if _prose(stripped, n_words):
        return "repeated_line"
    else:
      seen.add(stripped)
  if cfg.remove_unpunctuated and not stripped.endswith(_TERMINAL):
    return "no_terminal_punct"
  return None


# Characters ProX's executor reads differently inside a string (it cuts the call at the first ')', splits the
# arguments at ',' and each at '=', strips '"'); a backslash is left out too, as DESIGN §3 asks. The rule
# programmer's programs are teacher data that may run under ProX's executor, so a normalization whose source
# or target holds one of them is left out (html entities can decode to any of them: &quot; &#44; &#41; ...).
PROX_UNSAFE = frozenset(',)="\\')


def prox_safe(value: str) -> bool:
  """Whether ``value`` reads the same as a ``normalize`` string under ProX's executor and tokensift's parser
  (written ``source_str="..."`` / ``target_str="..."``): no ``PROX_UNSAFE`` character, no control character
  (a line break would split the program line), not a lone space (ProX skips ``source_str=" "``)."""
  return (
    value != " "
    and not PROX_UNSAFE.intersection(value)
    and not any(ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF for ch in value)
  )


def _entity_normalizations(text: str) -> list[tuple[str, str]]:
  found = sorted(set(_ENTITY.findall(text)), key=lambda e: (e.lower() == "&amp;", e))  # &amp; last
  out = []
  for ent in found:
    target = html.unescape(ent)
    if target == ent:
      continue
    target = target.replace("\u00a0", " ")
    if not (prox_safe(ent) and (prox_safe(target) or target == " ")):  # (" " is fine as a target)
      continue
    out.append((ent, target))
  return out


def write_program(text: str, config: RuleConfig = RuleConfig()) -> RuleProgram:
  """The rule program for one document. Deterministic; never raises for any ``str``."""
  if not isinstance(text, str):
    text = "" if text is None else str(text)
  lines = text.split("\n")
  words = text.split()
  doc_rule = _doc_rules(text, lines, words, config) if words else "too_short"
  if doc_rule is not None:
    return RuleProgram("drop_doc()", "", ((doc_rule, 1),))
  counts: dict[str, int] = {}
  removed_lines: list[int] = []
  seen: set[str] = set()
  for i, line in enumerate(lines):
    rule = _line_rule(line, line.strip(), seen, config)
    if rule is not None:
      counts[rule] = counts.get(rule, 0) + 1
      removed_lines.append(i)
  ranges: list[tuple[int, int]] = []
  for i in removed_lines:  # merge runs, bridging single blank lines between removed lines
    if ranges and (i == ranges[-1][1] + 1 or (i == ranges[-1][1] + 2 and not lines[i - 1].strip())):
      ranges[-1] = (ranges[-1][0], i)
    else:
      ranges.append((i, i))
  norms = _entity_normalizations(text) if config.normalize_entities else []
  if norms:
    counts["html_entity"] = len(norms)
  calls = [writer.format_call("remove_lines", line_start=a, line_end=b) for a, b in ranges]
  calls += [writer.format_call("normalize", source_str=s, target_str=t) for s, t in norms]
  fired = tuple(sorted(counts.items()))
  return RuleProgram("keep_doc()", "\n".join(calls) if calls else "keep_chunk()", fired, tuple(ranges), tuple(norms))
