"""Fuzzing the parser and executor (DESIGN §9): any program text x any document never raises, and the output
lines are the input lines minus the removed ones, with the applied normalizations."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokensift.refine import executor as ex
from tokensift.refine import program as prog
from tokensift.refine import program_writer as writer

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = st.sampled_from(["a", "b", "the", "x=1", "(c)", "drop", "é", "😀", "\t", "#", '"', "'", ",", ")"])
_line = st.lists(WORDS, max_size=8).map(" ".join)
plain_docs = st.lists(_line, min_size=1, max_size=25).map("\n".join)
invalid_utf8_docs = st.binary(max_size=300).map(lambda b: b.decode("utf-8", errors="surrogateescape"))
documents = st.one_of(
  st.just(""), st.text(alphabet=" \t\n\r\u3000", max_size=20), st.text(max_size=300), plain_docs, invalid_utf8_docs
)

_ints = st.one_of(st.integers(-3, 30), st.just(10**30), st.just(-(10**30)))
_strs = st.one_of(st.text(max_size=6), WORDS, st.sampled_from(["", " ", "  ", "\n", "a\nb", "\\frac", '"', "x, y"]))


def _lit(v, quote_style):
  """A literal as a model would write it: the text between quotes, as is (it may not parse: fine here)."""
  if isinstance(v, str):
    q = "'" if quote_style else '"'
    return q + v + q
  return str(v)


@st.composite
def calls(draw):
  kind = draw(st.sampled_from(["remove", "normalize", "doc", "bare", "broken", "junk", "comment"]))
  q = draw(st.booleans())
  if kind == "remove":
    a, b = draw(_ints), draw(_ints)
    form = draw(st.sampled_from(["kw", "short", "pos", "all", "mixed", "bad_mixed"]))
    return {
      "kw": f"remove_lines(line_start={a}, line_end={b})",
      "short": f"remove_lines(start={a}, end={b})",
      "pos": f"remove_lines({a}, {b})",
      "all": "remove_lines(all=True)",
      "mixed": f"remove_lines({a}, line_end={b})",
      "bad_mixed": f"remove_lines(line_start={a}, {b})",
    }[form]
  if kind == "normalize":
    s, t = draw(_strs), draw(_strs)
    form = draw(st.sampled_from(["kw", "pos", "canonical"]))
    if form == "kw":
      return f"normalize(source_str={_lit(s, q)}, target_str={_lit(t, q)})"
    if form == "canonical":  # ProX's own style, one call per line (the parser's one-step path)
      return f'normalize(source_str="{s}", target_str="{t}")'
    return f"normalize({_lit(s, q)}, {_lit(t, q)})"
  if kind == "doc":
    return draw(st.sampled_from(["drop_doc()", "keep_doc()", "untouch_doc()"]))
  if kind == "bare":
    return draw(st.sampled_from(["keep_chunk()", "skip_chunk()"]))
  if kind == "broken":
    full = draw(
      st.sampled_from(
        ["remove_lines(line_start=1, line_end=2)", 'normalize("a", "b")', "drop_doc()", "normalize(source_str='x')"]
      )
    )
    return full[: draw(st.integers(0, len(full)))]
  if kind == "comment":
    return "# " + draw(st.text(max_size=20)).replace("\n", " ")
  return draw(st.text(max_size=20))


programs = st.one_of(
  st.text(max_size=200), st.lists(calls(), max_size=12).map("\n".join), st.lists(calls(), max_size=6).map(" ".join)
)


def check_invariants(text, r: ex.Refined):
  assert isinstance(r.text, str) and tuple(r.stats) == ex.STAT_KEYS
  assert r.stats["chars_after"] == len(r.text)
  if not r.kept:
    assert r.text == "" and r.stats["drop_reason"]
    return
  assert r.stats["words_after"] > 10
  if r.stats["program_ignored"]:
    assert r.text == text
    return
  lines = text.split("\n")
  removed = set()
  for a, b in r.removed:
    assert 0 <= a <= b < len(lines)
    removed.update(range(a, b + 1))
  expected = []
  for i, line in enumerate(lines):
    if i in removed:
      continue
    for src, tgt, count in r.normalizations:
      assert count > 0 and "\n" not in src + tgt and src
      line = line.replace(src, tgt)
    expected.append(line)
  assert r.text.split("\n") == expected
  assert r.stats["lines_after"] == len(expected) == len(lines) - len(removed)
  assert r.stats["words_after"] == len(r.text.split()) and r.stats["words_before"] == len(text.split())
  assert len(r.text) <= ex.max_output_chars(text)


@FUZZ
@given(documents, programs, programs)
def test_any_program_any_document(text, doc_program, chunk_program):
  prog.parse(doc_program)
  prog.parse(chunk_program)
  r = ex.execute(text, doc_program, chunk_program)
  check_invariants(text, r)
  if r.kept:
    assert ex.execute(r.text, None, None).text == r.text


@FUZZ
@given(documents, st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="surrogateescape")))
def test_program_text_with_invalid_utf8(text, program):
  check_invariants(text, ex.execute(text, program, program))


def _spec(text, ops):
  """A direct statement of the semantics for well-formed operations (what the executor must compute)."""
  lines = text.split("\n")
  errors, remove, out = 0, set(), text
  merged: list[list[int]] = []  # the line ranges merged where they overlap or touch, then checked (as ProX does)
  for a, b in sorted((op[1], op[2]) for op in ops if op[0] == "remove"):
    if merged and a <= merged[-1][1] + 1:
      merged[-1][1] = max(merged[-1][1], b)
    else:
      merged.append([a, b])
  for a, b in merged:
    if a >= len(lines) or b >= len(lines):  # starts past the end (removes nothing) or is clipped there
      errors += 1
    remove.update(range(a, min(b, len(lines) - 1) + 1))
  for op in ops:
    if op[0] == "normalize":
      if not op[1]:
        errors += 1
      elif op[1] != " ":  # (a lone space is skipped; an absent source or one already replaced: a no-op)
        out = out.replace(op[1], op[2])
  before = len(text.split())
  if errors >= 2:
    result = text
  else:
    result = "\n".join(ln for i, ln in enumerate(out.split("\n")) if i not in remove)
  after = len(result.split())
  if before == 0 or (errors < 2 and after <= 0.05 * before) or after <= 10:
    return ""
  return result


@st.composite
def well_formed(draw):
  text = draw(plain_docs)
  n = len(text.split("\n"))
  vocab = sorted(set(text.split())) or ["a"]
  ops = []
  for _ in range(draw(st.integers(0, 6))):
    kind = draw(st.sampled_from(["remove", "normalize", "repeat"]))
    if kind == "remove":
      a = draw(st.integers(0, n + 2))
      ops.append(("remove", a, a + draw(st.integers(0, 4))))
    elif kind == "repeat" and any(op[0] == "normalize" for op in ops):
      ops.append(draw(st.sampled_from([op for op in ops if op[0] == "normalize"])))
    else:
      ops.append(
        (
          "normalize",
          draw(st.sampled_from(vocab + ["zz", " ", "  ", "a b", ""])),
          draw(st.sampled_from(["", "Q", "a b", " "])),
        )
      )
  return text, ops


@FUZZ
@given(well_formed(), st.booleans())
def test_well_formed_programs_follow_the_spec(case, positional):
  text, ops = case
  written = []
  for op in ops:
    if op[0] == "remove":
      written.append(
        f"remove_lines({op[1]}, {op[2]})" if positional else f"remove_lines(line_start={op[1]}, line_end={op[2]})"
      )
    else:
      s, t = writer.quote(op[1]), writer.quote(op[2])
      written.append(f"normalize({s}, {t})" if positional else f"normalize(source_str={s}, target_str={t})")
  r = ex.execute(text, "keep_doc()", "\n".join(written))
  assert r.text == _spec(text, ops)


def test_ten_megabyte_document():
  line = "The quick brown fox jumps over the lazy dog near the river bank today."
  n = 10 * 1024 * 1024 // (len(line) + 1)
  text = "\n".join([line] * n)
  assert len(text) >= 10 * 1024 * 1024 - 100
  program = (
    "remove_lines(line_start=0, line_end=99999)\nnormalize(source_str='fox', target_str='cat')\n"
    "remove_lines(start=123456, end=9999999999999)\n# drop_doc()"
  )
  r = ex.execute(text, "keep_doc()", program)
  check_invariants(text, r)
  assert r.kept and r.stats["lines_after"] == n - 100000 - (n - 123456)
  assert r.normalizations == (("fox", "cat", n),)


# Programs in ProX's canonical style (the readers' fast paths), then mutated: a character deleted, inserted or
# replaced where the fast paths decide (quotes, parentheses, separators, digits, line breaks, spaces).
_canonical_calls = st.one_of(
  st.builds(
    lambda a, b: f"remove_lines(line_start={a}, line_end={b})",
    st.sampled_from(["9" * 19, "9" * 18, "0", "07", "12"]),
    st.sampled_from(["0", "3", "10", "99"]),
  ),
  st.builds(lambda s, t: f'normalize(source_str="{s}", target_str="{t}")', _strs, _strs),
  st.sampled_from(["keep_chunk()", "skip_chunk()", "keep_doc()", "untouch_doc()", "drop_doc()"]),
)
_other_lines = st.sampled_from(
  [
    "remove_lines(all=True)",
    "# note",
    "",
    'normalize("a")"b", "c")',
    'normalize(source_str="a", target_str="b") "',
    "remove_lines(0, 1)",
  ]
)
_MUTATIONS = ['"', "'", "(", ")", ",", "=", " ", "\n", "\r", "\t", "#", "0", "x", "\\", ""]


@st.composite
def near_canonical(draw):
  lines = draw(
    st.lists(st.one_of(_canonical_calls, _canonical_calls, _canonical_calls, _other_lines), min_size=1, max_size=6)
  )
  text = "\n".join(lines) + draw(st.sampled_from(["", "\n"]))
  for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
    at = draw(st.integers(0, len(text)))
    how = draw(st.sampled_from(["insert", "delete", "replace"]))
    ch = draw(st.sampled_from(_MUTATIONS))
    text = (
      text[:at] + ch + text[at:]
      if how == "insert"
      else text[:at] + text[at + 1 :]
      if how == "delete"
      else text[:at] + ch + text[at + 1 :]
    )
  return text


@FUZZ
@given(st.one_of(programs, near_canonical()))
def test_the_fast_paths_agree_with_the_general_reader(text):
  """``parse``'s canonical one-pass reading and its one-match reading of plain calls against the general reader."""
  assert prog.parse(text) == prog.parse(text, fast=False)


@settings(max_examples=500, deadline=None)
@given(
  st.one_of(
    st.text(),
    st.text(alphabet=" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u3000ab\u00e9\U0001f600"),
    invalid_utf8_docs,
  )
)
def test_count_words_is_len_split(text):
  from tokensift.refine import word_count as wc

  assert ex.count_words(text) == len(text.split())
  assert wc.PYTHON_COUNTERS["count_words"](text) == len(text.split())


_SPACEY = st.text(alphabet=" \t\n\x0b\x1c\x85\xa0\u2000\u3000abé😀", max_size=60)


@settings(max_examples=500, deadline=None)
@given(_SPACEY, _SPACEY.filter(bool), _SPACEY)
def test_replacement_word_delta_is_the_recounted_change(text, src, tgt):
  from tokensift.refine import word_count as wc

  count = text.count(src)
  new = text.replace(src, tgt)
  assert wc.replacement_word_delta(text, src, tgt, count) == len(new.split()) - len(text.split())
  if count:
    assert wc.pieces_word_delta(text.split(src), src, tgt) == len(new.split()) - len(text.split())
  if wc.keeps_word_count(src, tgt):
    assert len(new.split()) == len(text.split())
  assert wc.has_unicode_space(text) == any(c.isspace() and not c.isascii() for c in text)
  if not wc.has_unicode_space(text):
    assert wc.count_plain_words(text) == len(text.split())


_LONG = st.text(alphabet=" \t\n\x1cab\u00e9\u2019\u20ac\U0001f600", min_size=256, max_size=3000)


@settings(max_examples=300, deadline=None)
@given(
  _LONG,
  st.sampled_from(("", "\ud800", "\u2019\u2000") + tuple(chr(c) for c in range(0x80, 0x3001) if chr(c).isspace())),
  st.integers(0, 3000),
)
def test_long_texts_count_and_find_unicode_spaces_as_split(base, extra, at):
  """The long-text paths (one UTF-8 encoding, the non-ASCII characters searched at once), each non-ASCII
  space, a lone surrogate and a UCS-2 text without one."""
  from tokensift.refine import word_count as wc

  text = base[:at] + extra + base[at:]
  spaced = any(c.isspace() and not c.isascii() for c in text)
  assert wc.has_unicode_space(text) == spaced
  for counters in (wc.PYTHON_COUNTERS, vars(wc)):  # the pure-Python ones and those in use (compiled if built)
    assert counters["count_words_plain"](text) == (len(text.split()), not spaced)
    assert counters["count_words"](text) == len(text.split())
    if not spaced:
      assert counters["count_plain_words"](text) == len(text.split())


@FUZZ
@given(
  st.one_of(
    programs,
    near_canonical(),
    st.lists(
      st.sampled_from(
        [
          "remove_lines(line_start=3, line_end=5)",
          'normalize(source_str="a b", target_str="")',
          "keep_chunk()",
          "untouch_doc()",
          'normalize(source_str="", target_str="x")',
          "remove_lines(line_start=07, line_end=2)",
        ]
      ),
      max_size=5,
    ).map("\n".join),
  )
)
def test_the_canonical_reading_agrees_with_the_general_reader(text):
  """``program_ops.read`` (``program.canonical_calls`` for a canonical program) against the general reader."""
  from tokensift.refine import program_ops as po

  ops = po.read(text)
  general = prog.parse(text, fast=False)
  parsed = po.from_program(general)

  def same(op):  # line numbers as numbers (the canonical reading keeps them as written, e.g. "07")
    return tuple(int(x) if k < 2 and x not in ("", "all") else x for k, x in enumerate(op))

  assert [same(op) for op in ops.ops] == [same(op) for op in parsed.ops]
  assert [ops.where(i) for i in range(len(ops.ops))] == [c.where() for c in general.calls]
  assert (ops.errors, ops.ignored) == (parsed.errors, parsed.ignored)


@FUZZ
@given(documents, st.one_of(programs, near_canonical(), st.sampled_from(["keep_chunk()", "skip_chunk()", ""])))
def test_executor_results_do_not_depend_on_the_reading(text, program):
  """The executor on a program read by its fast paths (a program that changes nothing is not run) and by the
  general reader alone: the same result."""
  assert ex.execute(text, "keep_doc()", program) == ex.execute(text, "keep_doc()", prog.parse(program, fast=False))
