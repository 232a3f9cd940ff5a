"""Programs as refining models write them, on real OpenWebMath LaTeX (DESIGN §3): backslashes are literal text,
quotes inside strings survive, repeated per-chunk normalizations are no-ops, whitespace normalizations apply."""

import json
import re

import pytest

from tokensift.refine import chunks
from tokensift.refine import executor as ex
from tokensift.refine import program as prog

# LaTeX commands whose first letters Python would read as escapes (\f \n \b \t \a \r \v).
_ESCAPE_LIKE = re.compile(r"\\(?:frac|nabla|beta|begin|bigg?|times|theta|tau|text|alpha|approx|right|rho|vec|varphi)\b")


@pytest.fixture(scope="module")
def owm(data_dir):
  with open(data_dir / "openwebmath" / "owm-sample-878.jsonl") as f:
    return [json.loads(line)["text"] for line in f]


def _replace_all(text, pairs):
  for s, t in pairs:
    text = text.replace(s, t)
  return text


def test_several_latex_normalizations_per_document(owm):
  """``"\\frac"``, ``"\\nabla"``, ``"\\begin"`` ... mean exactly those characters: every call applies."""
  checked = 0
  for text in owm:
    found = sorted(set(_ESCAPE_LIKE.findall(text)))
    if len(found) < 3 or len(text.split()) < 60:
      continue
    pairs = [(cmd, cmd + "{}") for cmd in found[:4]]
    program = "\n".join(f'normalize(source_str="{s}", target_str="{t}")' for s, t in pairs)
    r = ex.execute(text, "keep_doc()", program)
    assert r.errors == (), r.errors
    assert r.text == _replace_all(text, pairs)
    assert [n[:2] for n in r.normalizations] == pairs
    checked += 1
  assert checked >= 20  # 266 of the 878 documents use \frac


def test_double_backslash_is_two_backslashes(owm):
  text = next(t for t in owm if "\\\\[" in t)
  r = ex.execute(text, None, r'normalize(source_str="\\[", target_str="\\[2pt]")')
  assert r.errors == () and r.normalizations[0][0] == "\\\\["
  assert r.text == text.replace("\\\\[", "\\\\[2pt]") and r.text != text


def test_latex_in_single_quotes_and_positional_arguments(owm):
  text = next(t for t in owm if "\\alpha" in t and "\\beta" in t and len(t.split()) > 60)
  r = ex.execute(text, None, "normalize('\\alpha', '\\beta')\nnormalize(source='\\beta', target='B')")
  assert r.errors == () and r.text == text.replace("\\alpha", "\\beta").replace("\\beta", "B")


def test_quotes_inside_strings_survive(owm):
  quoted = re.compile(r'[A-Za-z]+ "[A-Za-z][^"\n]{0,38}[A-Za-z.]" [A-Za-z]+')
  checked = 0
  for text in owm:
    m = quoted.search(text)
    if m is None or len(text.split()) < 60:
      continue
    source = m.group()
    target = source.replace('"', "")
    program = f'normalize(source_str="{source}", target_str="{target}")'
    call = prog.parse(program).calls[0]
    assert (call.arg("source_str"), call.arg("target_str")) == (source, target)
    r = ex.execute(text, "keep_doc()", program)
    assert r.errors == () and r.text == text.replace(source, target)
    checked += 1
  assert checked >= 50


def test_per_chunk_repeats_merged_as_prox_merges_them(owm):
  """Each chunk's program is written without seeing the others, so the same fix is repeated per chunk; the
  chunk outputs are joined with line breaks and run against the whole document. Repeats are no-ops."""
  checked = 0
  for text in owm:
    cmd = "\\frac"
    parts = chunks.pack_chunks(text, chunks.whitespace_counter, 120)
    with_cmd = [c for c in parts if cmd in c.text]
    if len(with_cmd) < 3:
      continue
    programs, norms = [], []
    for c in parts:
      calls = []
      if cmd in c.text:
        calls.append(f'normalize(source_str="{cmd}", target_str="\\dfrac")')
        norms.append((cmd, "\\dfrac"))
      if "  " in c.text:  # several chunks collapse double spaces
        calls.append('normalize(source_str="  ", target_str=" ")')
        norms.append(("  ", " "))
      if c.last_line > c.first_line + 3:
        calls.append(f"remove_lines(line_start={c.first_line}, line_end={c.first_line})")
      programs.append("\n".join(calls) if calls else "keep_chunk()")
    merged = "\n".join(programs)
    r = ex.execute(text, "keep_doc()", merged)
    assert r.errors == () and not r.stats["program_ignored"], r.errors
    out, noops = text, 0
    for s, t in norms:  # in order: a source already gone is a no-op ("   " -> "  " still holds "  ")
      noops += s not in out
      out = out.replace(s, t)
    assert r.stats["normalize_not_found"] == noops >= len(with_cmd) - 1
    removed = {c.first_line for c in parts if c.last_line > c.first_line + 3}
    if r.kept:
      assert r.text.split("\n") == [ln for i, ln in enumerate(out.split("\n")) if i not in removed]
    checked += 1
  assert checked >= 10


def test_double_space_collapse(owm):
  checked = 0
  for text in owm:
    if "  " not in text or len(text.split()) < 60:
      continue
    r = ex.execute(text, "keep_doc()", 'normalize(source_str="  ", target_str=" ")')
    assert r.errors == () and r.text == text.replace("  ", " ")
    assert r.stats["replacements"] == text.count("  ") and r.stats["words_after"] == len(text.split())
    checked += 1
  assert checked >= 100
