"""The known-answer corpus builder: deterministic, and every label exact (each inserted line and span is where
the labels say; everything else is the real sample, unchanged). Real C4 and OpenWebMath sample documents."""

import gzip
import json

import pytest

from tokensift.pipeline import known_answer as ka


def _sample(data_dir, which, n=40):
  if which == "c4":
    with gzip.open(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
      rows = [json.loads(next(f)) for _ in range(n)]
  else:
    with open(data_dir / "openwebmath" / "owm-sample-878.jsonl") as f:
      rows = [json.loads(next(f)) for _ in range(n)]
  return [r["text"] for r in rows], [f"{which}-{i}" for i in range(n)]


@pytest.mark.parametrize("which,profile", [("c4", "web"), ("owm", "math")])
def test_deterministic_and_labels_exact(data_dir, which, profile):
  texts, ids = _sample(data_dir, which)
  cfg = ka.KnownAnswerConfig(seed=3, junk_per_kind=2, dup_clusters=2, dup_copies=4)
  docs, labels = ka.build_corpus(texts, ids, cfg, profile)
  assert (docs, labels) == ka.build_corpus(texts, ids, cfg, profile)  # same inputs, same corpus
  assert ka.build_corpus(texts, ids, ka.KnownAnswerConfig(seed=4), profile)[0] != docs
  assert [d["id"] for d in docs] == [lab["id"] for lab in labels] and len({d["id"] for d in docs}) == len(docs)
  original = dict(zip(ids, texts))
  junk_line_pool = set(ka._JUNK_LINES[profile])
  s = ka.summarize(labels)
  assert s["junk"] == 2 * len(ka.JUNK_KINDS[profile]) and s["near_duplicates"] == 8 and s["clusters"] == 2
  assert s["docs_with_junk_lines"] == s["docs_with_spans"] == round(0.25 * 38) and s["junk_lines"] >= 2 * 10
  seen_span_kinds = set()
  for d, lab in zip(docs, labels):
    text = d["text"]
    if lab["kind"] == "clean":
      lines = text.split("\n")
      for i in lab["junk_lines"]:  # each inserted line is where the label says ...
        assert lines[i] in junk_line_pool
      rest = [ln for i, ln in enumerate(lines) if i not in set(lab["junk_lines"])]
      if lab["spans"]:
        ((start, end, kind),) = lab["spans"]
        seen_span_kinds.add(kind)
        span = text[start:end]
        assert "\n" not in span and span and start < cfg.span_window + 1
        assert (
          text[:start] + text[end + 1 :] == original[lab["id"]] or text[: start - 1] + text[end:] == original[lab["id"]]
        )
      else:  # ... and removing the labelled lines gives back the real document exactly
        assert "\n".join(rest) == original[lab["id"]]
    elif lab["kind"] == "dup":
      assert lab["source"] in original and lab["cluster"] in (0, 1)
      if lab["id"].endswith("-0"):
        assert text == original[lab["source"]]
      else:
        assert text != "" and abs(len(text) - len(original[lab["source"]])) < 60
    else:
      assert lab["junk_kind"] in ka.JUNK_KINDS[profile] and text not in original.values()
  assert seen_span_kinds <= set(ka.SPAN_KINDS[profile]) and seen_span_kinds


def test_junk_kinds_look_like_their_names():
  import random

  rng = random.Random(0)
  assert "lorem" in ka.junk_document("lorem_ipsum", rng, "web", []).lower()
  assert len(ka.junk_document("near_empty", rng, "web", []).split()) <= 8
  soups = [ka.junk_document("latex_soup", rng, "math", []) for _ in range(2)]
  assert "$" in soups[0] and "\\" in soups[1]
  nav = ka.junk_document("navigation", rng, "web", [])
  assert all(" | " in ln or len(ln.split()) <= 3 for ln in nav.split("\n"))
  salad = ka.junk_document("word_salad", rng, "web", ["the quick brown fox jumps over the lazy dog"] * 3)
  assert set(w.strip(".").lower() for w in salad.split()) <= {
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
  }
  with pytest.raises(ValueError, match="unknown junk kind 'spam'"):
    ka.junk_document("spam", rng, "web", [])
  with pytest.raises(ValueError, match="profile='legal'"):
    ka.build_corpus(["a b c"] * 5, list("abcde"), ka.KnownAnswerConfig(), "legal")


def test_refiner_training_texts_leave_out_the_pool_and_give_the_teacher_edits(data_dir):
  """The refiner's SFT documents: deterministic, none of the pool's texts, the pool's junk share, another seed
  than the pool; and the rule programmer (the teacher) then writes drops and line removals for them, which C4's
  own text almost never gives it."""
  from tokensift.refine import rules

  texts, ids = _sample(data_dir, "c4", n=60)
  cfg = ka.KnownAnswerConfig(junk_per_kind=2)
  pool = texts[:20]
  train, counts = ka.refiner_training_texts(texts, pool, cfg, "web")
  assert (train, counts) == ka.refiner_training_texts(texts, pool, cfg, "web")
  assert counts["excluded_pool_docs"] == 20 and not set(pool) & set(train)
  assert counts["junk"] == 4 * len(ka.JUNK_KINDS["web"])  # 2 per kind per 20 pool docs -> 4 per 40 training docs
  assert counts["near_duplicates"] == 0 and counts["docs_with_junk_lines"] == 10 and len(train) == 40 + 24
  pool_docs, _ = ka.build_corpus(pool, ids[:20], cfg, "web")
  shared = {d["text"] for d in pool_docs} & set(train)  # other documents, other draws; only near-empty pages
  assert all(len(t) < 40 for t in shared)  # (a title + a line from short lists) can coincide
  plain = [rules.write_program(t) for t in texts[20:]]
  taught = [rules.write_program(t) for t in train]
  assert sum(p.doc_program == "drop_doc()" for p in taught) >= 20 > sum(p.doc_program == "drop_doc()" for p in plain)
  assert sum(len(p.removed) for p in taught) >= 10 + sum(len(p.removed) for p in plain)
  with pytest.raises(ValueError, match="only 0 of 3 refiner training documents are outside the pool"):
    ka.refiner_training_texts(texts[:3], texts[:3], cfg, "web")
