"""A known-answer corpus: real documents plus documented, seeded corruptions, each labelled exactly.

``build_corpus(texts, ids, KnownAnswerConfig(...))`` returns ``(documents, labels)`` where every corruption is
synthetic and recorded (DESIGN §12):

- **junk documents** (``kind='junk'``, ``junk_kind`` names which): ``keyword_spam`` (a few search keywords
  repeated), ``word_salad`` (words of real sentences from the sample, shuffled), ``random_chars``,
  ``navigation`` (menu/footer-only page), ``lorem_ipsum``, ``near_empty`` (a title and a line or two);
  the math profile adds ``latex_soup`` (random LaTeX commands) and uses math-site navigation and spam.
- **near-duplicate clusters** (``kind='dup'``, ``cluster`` = the cluster number): a real document and
  ``dup_copies - 1`` copies of it, each with a few small edits (a word dropped, a number changed, a sentence
  appended), so DENSITY sees a dense cluster.
- **junk lines** in real documents (``junk_lines``: 0-based line numbers, over ``text.split('\\n')``, of each
  inserted menu / cookie banner / share bar / repeated header line).
- **noise spans** in real documents (``spans``: ``[start, end, kind]`` character offsets into the final text;
  kinds ``random_string`` and ``numeric_table``, or ``latex_noise`` for math). Spans hold no newline, so they
  do not move line numbers, and they sit in the first ``span_window`` characters so that they fall inside the
  token window the language models see.

Every other document (and every line outside ``junk_lines``, every character outside ``spans``) is real text
from the input sample, unchanged. The same texts, ids and config give byte-identical output.
"""

from __future__ import annotations

import dataclasses
import json
import random
import string
from pathlib import Path
from typing import Any, Sequence

JUNK_KINDS = {
  "web": ("keyword_spam", "word_salad", "random_chars", "navigation", "lorem_ipsum", "near_empty"),
  "math": ("keyword_spam", "word_salad", "random_chars", "navigation", "lorem_ipsum", "near_empty", "latex_soup"),
}
SPAN_KINDS = {"web": ("random_string", "numeric_table"), "math": ("random_string", "numeric_table", "latex_noise")}

_JUNK_LINES = {
  "web": (
    "Home | About Us | Products | Services | Blog | Contact",
    "This website uses cookies to ensure you get the best experience on our website. Accept all cookies",
    "Share this: Facebook Twitter Pinterest LinkedIn Email Print",
    "Skip to main content",
    "Copyright 2019 All Rights Reserved | Privacy Policy | Terms of Use | Sitemap",
    "Subscribe to our newsletter Sign up Log in Register",
    "You are here: Home > Articles > Latest News",
    "Click here to read more >>",
  ),
  "math": (
    "Sign up to join this community",
    "Stack Exchange network consists of Q&A communities including Stack Overflow | Log in | Sign up",
    "Share Improve this answer Follow",
    "Hot Network Questions",
    "By clicking Accept all cookies, you agree Stack Exchange can store cookies on your device",
    "Questions Tags Users Badges Unanswered Ask Question",
    "Not the answer you're looking for? Browse other questions tagged or ask your own question.",
    "Mathematics Stack Exchange works best with JavaScript enabled",
  ),
}
_SPAM = {
  "web": (
    "cheap",
    "best",
    "buy",
    "online",
    "free",
    "shipping",
    "deals",
    "discount",
    "sale",
    "casino",
    "loans",
    "shoes",
    "replica",
    "watches",
    "viagra",
    "2019",
  ),
  "math": (
    "math",
    "solver",
    "calculator",
    "online",
    "free",
    "homework",
    "help",
    "answers",
    "algebra",
    "calculus",
    "cheat",
    "sheet",
    "pdf",
    "download",
    "formula",
    "step",
  ),
}
_NAV = {
  "web": (
    "Home",
    "About",
    "Contact Us",
    "Shop",
    "Cart",
    "Login",
    "Register",
    "FAQ",
    "Blog",
    "Careers",
    "Privacy Policy",
    "Terms of Service",
    "Sitemap",
    "Gallery",
    "Events",
    "Support",
    "Newsletter",
    "Categories",
    "Archives",
    "Search",
  ),
  "math": (
    "Questions",
    "Tags",
    "Users",
    "Badges",
    "Unanswered",
    "Ask Question",
    "Home",
    "Public",
    "Stack Overflow",
    "Meta",
    "Teams",
    "Tour",
    "Help Center",
    "Chat",
    "Log in",
    "Sign up",
    "Hot Network Questions",
    "Related",
    "Linked",
    "Featured on Meta",
  ),
}
_LOREM = (
  "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
  "dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip "
  "ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse cillum"
).split()
_LATEX = (
  "\\frac{",
  "}{",
  "\\alpha",
  "\\beta",
  "\\sum_{",
  "\\int",
  "^{",
  "\\left(",
  "\\right)",
  "\\mathbb{R}",
  "\\partial",
  "\\sqrt{",
  "\\cdot",
  "\\infty",
  "\\lim_{",
  "\\,",
  "\\;",
  "x",
  "n",
  "k",
  "=",
  "+",
  "_",
  "$",
)


@dataclasses.dataclass(frozen=True)
class KnownAnswerConfig:
  """How many corruptions of each kind (counts are per corpus; the input documents are the clean text).

  junk_per_kind: junk documents of each kind in ``JUNK_KINDS[profile]``; dup_clusters x dup_copies: near-
  duplicate documents (each cluster = a real document + copies - 1 edited copies); junk_line_fraction /
  span_fraction: shares of the other real documents given 2-4 junk lines / one noise span (disjoint sets).
  """

  enabled: bool = True
  seed: int = 0
  junk_per_kind: int = 4
  dup_clusters: int = 3
  dup_copies: int = 6
  junk_line_fraction: float = 0.25
  span_fraction: float = 0.25
  span_window: int = 300

  def __post_init__(self):
    if self.junk_per_kind < 0 or self.dup_clusters < 0 or self.dup_copies < 2:
      raise ValueError(
        f"KnownAnswerConfig junk_per_kind={self.junk_per_kind}, dup_clusters={self.dup_clusters}, "
        f"dup_copies={self.dup_copies}: need >= 0, >= 0 and >= 2"
      )
    for name in ("junk_line_fraction", "span_fraction"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"KnownAnswerConfig.{name}={getattr(self, name)} must be in [0, 1]")
    if self.junk_line_fraction + self.span_fraction > 1.0:
      raise ValueError("KnownAnswerConfig.junk_line_fraction + span_fraction must be <= 1 (disjoint sets)")


def _label(doc_id: str, kind: str, **kw) -> dict[str, Any]:
  out = {"id": doc_id, "kind": kind, "junk_kind": None, "cluster": None, "source": None, "junk_lines": [], "spans": []}
  out.update(kw)
  return out


# --------------------------------------------------------------------------------------------- junk documents


def _sentences(texts: Sequence[str]) -> list[str]:
  out = []
  for t in texts:
    for line in t.split("\n"):
      out += [s.strip() for s in line.split(". ") if len(s.split()) >= 6]
  return out


def _sentence_case(s: str) -> str:
  return s[:1].upper() + s[1:]


def junk_document(kind: str, rng: random.Random, profile: str, sentences: Sequence[str]) -> str:
  """One synthetic junk document of ``kind`` (a name in ``JUNK_KINDS[profile]``)."""
  if kind == "keyword_spam":
    words = rng.sample(_SPAM[profile], 5)
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 12))) for _ in range(rng.randint(8, 14))]
    return "\n".join(lines)
  if kind == "word_salad":
    words = [w for s in rng.sample(list(sentences), min(len(sentences), 12)) for w in s.split()]
    rng.shuffle(words)
    words = words[: rng.randint(120, 200)]
    return "\n".join(_sentence_case(" ".join(words[i : i + 25])) + "." for i in range(0, len(words), 25))
  if kind == "random_chars":
    alphabet = string.ascii_letters + string.digits + string.punctuation + "    "
    return "\n".join(
      "".join(rng.choice(alphabet) for _ in range(rng.randint(60, 100))) for _ in range(rng.randint(8, 14))
    )
  if kind == "navigation":
    nav = list(_NAV[profile])
    return "\n".join(" | ".join(rng.sample(nav, rng.randint(3, 7))) for _ in range(rng.randint(10, 16)))
  if kind == "lorem_ipsum":
    paras = []
    for _ in range(rng.randint(3, 5)):
      ws = [rng.choice(_LOREM) for _ in range(rng.randint(40, 70))]
      paras.append(_sentence_case(" ".join(ws)) + ".")
    return "\n\n".join(paras)
  if kind == "near_empty":
    title = rng.choice(["Page not found", "Untitled", "Coming soon", "Loading...", "Index of /", "Error 404"])
    return title + (
      "\n" + rng.choice(["Please try again later.", "Sorry.", "Back to home"]) if rng.random() < 0.7 else ""
    )
  if kind == "latex_soup":
    lines = [
      "$" + "".join(rng.choice(_LATEX) for _ in range(rng.randint(15, 30))) + "$" for _ in range(rng.randint(8, 14))
    ]
    return "\n".join(lines)
  raise ValueError(f"unknown junk kind {kind!r}; the kinds are {sorted(set(JUNK_KINDS['math']))}")


# --------------------------------------------------------------------------------------------- edits


def near_duplicate(text: str, rng: random.Random) -> str:
  """``text`` with 1-3 small edits: a word dropped, a digit changed, a word repeated or a sentence appended."""
  lines = text.split("\n")
  for _ in range(rng.randint(1, 3)):
    i = rng.randrange(len(lines))
    words = lines[i].split(" ")
    op = rng.randrange(4)
    if op == 0 and len(words) > 3:
      del words[rng.randrange(len(words))]
    elif op == 1:
      digits = [j for j, w in enumerate(words) if any(c.isdigit() for c in w)]
      if digits:
        j = rng.choice(digits)
        words[j] = "".join(str(rng.randrange(10)) if c.isdigit() else c for c in words[j])
      else:
        words.append(str(rng.randrange(2, 99)))
    elif op == 2 and words:
      j = rng.randrange(len(words))
      words.insert(j, words[j])
    else:
      lines.append(rng.choice(["Thanks for reading.", "Updated recently.", "Read more below.", "See also."]))
      continue
    lines[i] = " ".join(words)
  return "\n".join(lines)


def insert_junk_lines(text: str, rng: random.Random, profile: str, count: int) -> tuple[str, list[int]]:
  """``text`` with ``count`` junk lines inserted at random line positions; returns (text, final line numbers)."""
  lines = text.split("\n")
  is_junk = [False] * len(lines)
  for _ in range(count):
    pos = rng.randint(0, len(lines))
    lines.insert(pos, rng.choice(_JUNK_LINES[profile]))
    is_junk.insert(pos, True)
  return "\n".join(lines), [i for i, j in enumerate(is_junk) if j]


def noise_span(kind: str, rng: random.Random) -> str:
  """One synthetic noise string (no newline) of ``kind`` in ``SPAN_KINDS['math']``."""
  if kind == "random_string":
    alphabet = string.ascii_letters + string.digits
    return " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(5, 12))) for _ in range(rng.randint(5, 9)))
  if kind == "numeric_table":
    return " | ".join(" ".join(f"{rng.uniform(0, 1000):.2f}" for _ in range(4)) for _ in range(rng.randint(3, 5)))
  if kind == "latex_noise":
    return "$" + "".join(rng.choice(_LATEX) for _ in range(rng.randint(20, 35))) + "$"
  raise ValueError(f"unknown span kind {kind!r}; the kinds are {list(SPAN_KINDS['math'])}")


def insert_span(text: str, rng: random.Random, kind: str, window: int) -> tuple[str, list]:
  """``text`` with one noise span inserted after a space within the first ``window`` characters (or at the
  end of the first line); returns (text, [start, end, kind]) with ``text[start:end]`` the span."""
  spaces = [i + 1 for i, c in enumerate(text[:window]) if c == " "]
  pos = rng.choice(spaces) if spaces else (text.find("\n") if "\n" in text else len(text))
  span = noise_span(kind, rng)
  piece = span + " " if spaces else " " + span
  start = pos if spaces else pos + 1
  return text[:pos] + piece + text[pos:], [start, start + len(span), kind]


# --------------------------------------------------------------------------------------------- the corpus


def build_corpus(
  texts: Sequence[str], ids: Sequence[str], cfg: KnownAnswerConfig = KnownAnswerConfig(), profile: str = "web"
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
  """(documents ``{id, text}``, labels) in one seeded shuffled order; see the module docstring for the labels.

  ``texts``/``ids``: the real documents (at least ``dup_clusters + 1``), used as the clean part; ``profile``:
  'web' (C4-like) or 'math' (OpenWebMath-like) corruptions."""
  if profile not in JUNK_KINDS:
    raise ValueError(f"profile={profile!r}: use one of {sorted(JUNK_KINDS)}")
  if len(texts) != len(ids):
    raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
  if len(texts) < cfg.dup_clusters + 1:
    raise ValueError(f"{len(texts)} documents: need at least dup_clusters + 1 = {cfg.dup_clusters + 1}")
  rng = random.Random(cfg.seed)
  order = list(range(len(texts)))
  rng.shuffle(order)
  dup_src, rest = order[: cfg.dup_clusters], order[cfg.dup_clusters :]
  n_lines = round(cfg.junk_line_fraction * len(rest))
  n_spans = round(cfg.span_fraction * len(rest))
  line_docs, span_docs = set(rest[:n_lines]), set(rest[n_lines : n_lines + n_spans])
  docs, labels = [], []
  for i in range(len(texts)):
    if i in dup_src:
      continue
    text, lab = texts[i], _label(str(ids[i]), "clean", source=str(ids[i]))
    if i in line_docs:
      text, lab["junk_lines"] = insert_junk_lines(text, rng, profile, rng.randint(2, 4))
    elif i in span_docs:
      text, span = insert_span(text, rng, rng.choice(SPAN_KINDS[profile]), cfg.span_window)
      lab["spans"] = [span]
    docs.append({"id": str(ids[i]), "text": text})
    labels.append(lab)
  for c, i in enumerate(dup_src):
    for j in range(cfg.dup_copies):
      doc_id = f"dup{c}-{j}"
      docs.append({"id": doc_id, "text": texts[i] if j == 0 else near_duplicate(texts[i], rng)})
      labels.append(_label(doc_id, "dup", cluster=c, source=str(ids[i])))
  sentences = _sentences([texts[i] for i in rest])
  for kind in JUNK_KINDS[profile]:
    for j in range(cfg.junk_per_kind):
      doc_id = f"junk-{kind}-{j}"
      docs.append({"id": doc_id, "text": junk_document(kind, rng, profile, sentences)})
      labels.append(_label(doc_id, "junk", junk_kind=kind))
  perm = list(range(len(docs)))
  rng.shuffle(perm)
  return [docs[p] for p in perm], [labels[p] for p in perm]


def refiner_training_texts(
  texts: Sequence[str], pool_texts: Sequence[str], cfg: KnownAnswerConfig, profile: str = "web"
) -> tuple[list[str], dict[str, Any]]:
  """The ProX refiner's SFT documents when the pool is a known-answer corpus: the training ``texts`` that are
  not in the pool (by exact text; the pool is what the refiner is later measured on), corrupted by this
  module's generator with seed ``cfg.seed + 1`` and no near-duplicate clusters, junk documents at the pool's
  share (``junk_per_kind`` scaled by the number of documents over ``len(pool_texts)``). The rule programmer
  then annotates them as it does the clean text, so the refiner sees ``drop_doc()`` on junk documents and
  ``remove_lines`` on inserted lines. Caveat: the junk-line and junk-document templates are the pool's, so a
  refiner trained this way is measured on in-distribution corruptions (other documents, other draws).
  Returns (texts in the seeded corpus order, counts)."""
  pool = set(pool_texts)
  keep = [t for t in texts if t not in pool]
  if len(keep) < 2:
    raise ValueError(f"only {len(keep)} of {len(texts)} refiner training documents are outside the pool")
  per_kind = round(cfg.junk_per_kind * len(keep) / max(1, len(pool_texts)))
  train_cfg = dataclasses.replace(cfg, seed=cfg.seed + 1, dup_clusters=0, junk_per_kind=per_kind)
  documents, labels = build_corpus(keep, [str(i) for i in range(len(keep))], train_cfg, profile)
  return [d["text"] for d in documents], dict(summarize(labels), excluded_pool_docs=len(texts) - len(keep))


def write_corpus(out_dir: str | Path, documents: Sequence[dict], labels: Sequence[dict]) -> tuple[Path, Path]:
  """Writes ``corpus.jsonl`` (``{id, text}``) and ``labels.jsonl`` into ``out_dir``; returns both paths."""
  from tokensift.core.jobs import atomic_write_bytes

  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = out / "corpus.jsonl", out / "labels.jsonl"
  for path, rows in zip(paths, (documents, labels)):
    atomic_write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
  return paths


def summarize(labels: Sequence[dict]) -> dict[str, Any]:
  """Counts of each corruption (for the stage summary and the report)."""
  kinds: dict[str, int] = {}
  for lab in labels:
    if lab["junk_kind"]:
      kinds[lab["junk_kind"]] = kinds.get(lab["junk_kind"], 0) + 1
  return {
    "documents": len(labels),
    "clean": sum(lab["kind"] == "clean" for lab in labels),
    "junk": sum(lab["kind"] == "junk" for lab in labels),
    "junk_kinds": kinds,
    "near_duplicates": sum(lab["kind"] == "dup" for lab in labels),
    "clusters": len({lab["cluster"] for lab in labels if lab["cluster"] is not None}),
    "docs_with_junk_lines": sum(bool(lab["junk_lines"]) for lab in labels),
    "junk_lines": sum(len(lab["junk_lines"]) for lab in labels),
    "docs_with_spans": sum(bool(lab["spans"]) for lab in labels),
    "untouched_real": sum(lab["kind"] == "clean" and not lab["junk_lines"] and not lab["spans"] for lab in labels),
  }
