"""ProX's own error rules (DESIGN §3) on real C4 and OpenWebMath documents: an absent or already replaced
``normalize`` source is a counted no-op, a lone-space source is skipped, an empty one is an error, and line
ranges are merged before they are checked (one error per merged range past the end)."""

import gzip
import json

import pytest

from tokensift.refine import chunks
from tokensift.refine import executor as ex


@pytest.fixture(scope="module")
def docs(data_dir):
  """Real documents long enough that no edit below drops them: 40 C4 validation and 40 OpenWebMath."""
  with gzip.open(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
    c4 = [json.loads(line)["text"] for line in f]
  with open(data_dir / "openwebmath" / "owm-sample-878.jsonl") as f:
    owm = [json.loads(line)["text"] for line in f]
  pick = lambda texts: [t for t in texts if t.count("\n") >= 6 and len(t.split()) >= 200][:40]
  out = pick(c4) + pick(owm)
  assert len(out) == 80
  return out


def _word(text):
  """A word of ``text`` without quotes or separators (a source a refining model would fix)."""
  return next(w for w in text.split() if w.isalpha() and w.islower() and len(w) > 3)


def test_absent_sources_are_counted_no_ops_and_the_rest_applies(docs):
  for text in docs:
    program = (
      'normalize(source_str="zqxj-not-here", target_str="x")\nremove_lines(line_start=0, line_end=1)\n'
      'normalize(source_str="also absent qq", target_str="")'
    )
    r = ex.execute(text, "keep_doc()", program)
    assert r.errors == () and not r.stats["program_ignored"] and r.stats["normalize_not_found"] == 2
    assert r.text == "\n".join(text.split("\n")[2:]) and r.stats["chunk_errors"] == 0


def test_a_fix_repeated_by_every_chunk_applies_once(docs):
  """Each chunk's program fixes the word it sees; the document-wide first call replaced them all."""
  checked = 0
  for text in docs:
    word = _word(text)
    parts = chunks.pack_chunks(text, chunks.whitespace_counter, 60)
    repeats = sum(word in c.text for c in parts)
    if repeats < 2:
      continue
    up = word.upper()
    program = "\n".join(f'normalize(source_str="{word}", target_str="{up}")' for c in parts if word in c.text)
    r = ex.execute(text, "keep_doc()", program)
    assert r.errors == () and r.text == text.replace(word, up)
    assert r.stats["normalize_not_found"] == repeats - 1 and r.normalizations == ((word, up, text.count(word)),)
    checked += 1
  assert checked >= 10


def test_a_lone_space_source_is_skipped_other_whitespace_applies(docs):
  for text in docs:
    program = (
      'normalize(source_str=" ", target_str="")\nnormalize(source_str="  ", target_str=" ")\n'
      'normalize(source_str=" ", target_str="_")'
    )
    r = ex.execute(text, "keep_doc()", program)
    assert r.errors == () and r.stats["normalize_skipped"] == 2
    assert r.text == text.replace("  ", " ") and r.stats["words_after"] == len(text.split())
    assert r.stats["normalize_not_found"] == ("  " not in text)


def test_empty_sources_are_errors(docs):
  for text in docs:
    r = ex.execute(text, "keep_doc()", 'normalize(source_str="", target_str="x")\nremove_lines(0, 0)')
    assert r.stats["chunk_errors"] == 1 and "source_str is empty" in r.errors[0]
    assert r.text == "\n".join(text.split("\n")[1:])  # one error: the program runs
    r = ex.execute(text, "keep_doc()", 'normalize("", "x")\nremove_lines(0, 0)\nnormalize("", "")')
    assert r.stats["chunk_errors"] == 2 and r.stats["program_ignored"] and r.text == text


def test_line_ranges_are_merged_then_counted_and_clipped(docs):
  for text in docs:
    n = text.count("\n") + 1
    lines = text.split("\n")
    # Three calls past the end that overlap or touch: one merged range, one error; the program runs.
    r = ex.execute(
      text,
      "keep_doc()",
      f"remove_lines({n}, {n + 2})\nremove_lines({n + 3}, {n + 3})\nremove_lines({n + 1}, {n + 5})\nremove_lines(0, 0)",
    )
    assert r.stats["chunk_errors"] == 1 and not r.stats["program_ignored"] and "nothing removed" in r.errors[0]
    assert r.removed == ((0, 0),) and r.text == "\n".join(lines[1:])
    # A range in the document touching one past its end: one clipped range, one error.
    r = ex.execute(text, "keep_doc()", f"remove_lines({n - 3}, {n - 2})\nremove_lines({n - 1}, {n + 9})")
    assert r.stats["chunk_errors"] == 1 and "clipped" in r.errors[0] and r.removed == ((n - 3, n - 1),)
    assert r.text == "\n".join(lines[: n - 3])
    # Two separate ranges past the end (a gap between them): two errors, the document is kept unchanged.
    r = ex.execute(text, "keep_doc()", f"remove_lines(0, 1)\nremove_lines({n}, {n})\nremove_lines({n + 2}, {n + 2})")
    assert r.stats["chunk_errors"] == 2 and r.stats["program_ignored"] and r.text == text
    # Impossible ranges are one error each and never merged.
    r = ex.execute(text, "keep_doc()", "remove_lines(3, 1)\nremove_lines(-1, 2)")
    assert r.stats["chunk_errors"] == 2 and r.text == text
