"""The ProX program grammar: every call form, aliases, quoting, comments, junk, and errors as values."""

import time

import pytest

from tokensift.refine import program as prog
from tokensift.refine import program_writer as writer


def calls(text):
  p = prog.parse(text)
  return [(c.name, dict(c.args)) for c in p.calls], [str(e) for e in p.errors]


@pytest.mark.parametrize(
  "text,expected",
  [
    # The paper's examples (DESIGN §3).
    ("drop_doc()", [("drop_doc", {})]),
    ("keep_doc()", [("keep_doc", {})]),
    ("remove_lines(line_start=0, line_end=5)", [("remove_lines", {"line_start": 0, "line_end": 5})]),
    (
      'normalize(source_str="http://scholar.google.co.uk/citations?user", target_str="")',
      [("normalize", {"source_str": "http://scholar.google.co.uk/citations?user", "target_str": ""})],
    ),
    # Positional arguments and single quotes (which ProX fails to parse).
    ("remove_lines(0, 0)", [("remove_lines", {"line_start": 0, "line_end": 0})]),
    ("normalize('a','b')", [("normalize", {"source_str": "a", "target_str": "b"})]),
    ("remove_lines(3, line_end=4)", [("remove_lines", {"line_start": 3, "line_end": 4})]),
    # Short keyword names and aliases.
    ("remove_lines(start=1, end=1)", [("remove_lines", {"line_start": 1, "line_end": 1})]),
    ("remove_lines(end=7, start=2)", [("remove_lines", {"line_start": 2, "line_end": 7})]),
    ("normalize(source='x', target='y')", [("normalize", {"source_str": "x", "target_str": "y"})]),
    ("untouch_doc()", [("keep_doc", {})]),
    ("skip_chunk()", [("keep_chunk", {})]),
    ("keep_chunk()", [("keep_chunk", {})]),
    ("remove_lines(all=True)", [("remove_lines", {"all": True})]),
    # Whitespace, trailing commas, line breaks inside the parentheses, signs.
    ("remove_lines (  line_start = 2 ,\n  line_end=+3, )", [("remove_lines", {"line_start": 2, "line_end": 3})]),
  ],
)
def test_call_forms(text, expected):
  got, errors = calls(text)
  assert errors == []
  assert got == expected


@pytest.mark.parametrize(
  "text,source,target",
  [
    # Backslashes are literal text (LaTeX), never escapes.
    (r'normalize(source_str="\frac", target_str="\dfrac")', r"\frac", r"\dfrac"),
    (r'normalize(source_str="\alpha", target_str="α")', r"\alpha", "α"),
    (r'normalize(source_str="\nabla \times", target_str="curl")', r"\nabla \times", "curl"),
    (r'normalize(source_str="\begin{align}", target_str="\begin{aligned}")', r"\begin{align}", r"\begin{aligned}"),
    (r'normalize(source_str="\\[", target_str="$$")', r"\\[", "$$"),
    (r'normalize("\x4", "\u00e9\")', r"\x4", "\\u00e9\\"),
    # Quotes inside a string survive; the other quote style is plain text.
    ('normalize(source_str="said "yes" twice", target_str="said yes twice")', 'said "yes" twice', "said yes twice"),
    ("""normalize(source_str='it's', target_str="it is")""", "it's", "it is"),
    ("""normalize('say "hi"', 'hi')""", 'say "hi"', "hi"),
    ('normalize("f("x")", "y")', 'f("x")', "y"),  # ')' followed by a quote does not close
    ('normalize("a", b", "c")', 'a", b', "c"),  # ', b"' is not the start of an argument
    ('normalize("a" "b", "c")', 'a" "b', "c"),
    # Whitespace-only strings, whitespace around the closing quote, multi-line calls.
    ('normalize(source_str="  ", target_str=" ")', "  ", " "),
    ('normalize(\n  "a b" ,\n  "c"\n)', "a b", "c"),
    ('normalize("x",)', None, None),
  ],
)
def test_strings_are_literal_text(text, source, target):
  got, errors = calls(text)
  if source is None:
    assert errors == ["1:1: normalize() missing target_str"]
    return
  assert errors == []
  assert got == [("normalize", {"source_str": source, "target_str": target})]


def test_ambiguous_strings_resolve_as_documented():
  # A quote followed by ', <argument>' inside a string closes it: three arguments, an error, not a misreading.
  assert calls('normalize("a", "b", "c")')[1] == ["1:1: normalize() takes 2 arguments, got 3 positional"]
  # ... and the other quote style holds it.
  assert calls("""normalize('a", "b', "c")""")[0] == [("normalize", {"source_str": 'a", "b', "target_str": "c"})]
  # A quote followed by ')' (not followed by a quote) ends the string and the call.
  got, errors = calls('normalize("x", "a") b")')
  assert got == [("normalize", {"source_str": "x", "target_str": "a"})] and errors == []
  assert calls('normalize("g("x"), h", "y")')[1] == ["1:1: normalize() missing target_str"]  # source 'g("x'

  # No closing quote on the line: unterminated, and the next line is still read.
  p = prog.parse('normalize("a, "b\nkeep_chunk()')
  assert [c.name for c in p.calls] == ["keep_chunk"] and "unterminated string" in p.errors[0].message


@pytest.mark.parametrize("source", ["a,b", "f(x)", "a=b", "x), drop_doc(", "# not a comment", "line_end=3"])
def test_separators_inside_strings(source):
  """ProX skips a source containing ',' or ')' and truncates one containing '='."""
  got, errors = calls(writer.format_call("normalize", source_str=source, target_str="T"))
  assert errors == []
  assert got == [("normalize", {"source_str": source, "target_str": "T"})]


def test_comments_and_junk_are_skipped():
  text = (
    "# Analysis: the first lines are navigation, so drop_doc() would be wrong\n"
    "Sure! Here is the program:\n```python\n"
    "remove_lines(line_start=0, line_end=2)  # drop_doc() in a trailing comment\n"
    "print('hello') and the document (which is fine) ...\n```\n"
  )
  p = prog.parse(text)
  assert [(c.name, dict(c.args)) for c in p.calls] == [("remove_lines", {"line_start": 0, "line_end": 2})]
  assert p.errors == ()
  assert any("print(" in s for s in p.ignored) and any("document(" in s for s in p.ignored)


def test_repeated_calls_are_all_kept():
  text = "\n".join(["remove_lines(start=1, end=1)"] * 40)
  got, errors = calls(text)
  assert errors == [] and len(got) == 40


def test_identifier_boundaries():
  got, _ = calls("xdrop_doc() keep_docs() my.keep_doc()")
  # ``xdrop_doc``/``keep_docs`` are other names; ``.keep_doc()`` is still the call keep_doc.
  assert got == [("keep_doc", {})]


@pytest.mark.parametrize(
  "text,message,line,col",
  [
    ("remove_lines(0, 1", "unterminated call", 1, 1),
    ('normalize("abc, "x")', "missing target_str", 1, 1),  # the string is 'abc, "x'
    ('normalize("abc)', "unterminated string", 1, 11),
    ('normalize("a\nb", "c")', "unterminated string", 1, 11),
    ("remove_lines(1.5, 2)", "expected an integer", 1, 14),
    ("remove_lines(a, 2)", "expected a value", 1, 14),
    ("remove_lines(0, 1, 2)", "takes 2 arguments", 1, 1),
    ("remove_lines(line=0, line_end=1)", "unexpected keyword 'line'", 1, 1),
    ("remove_lines(0, line_start=1)", "'line_start' twice", 1, 1),
    ("remove_lines(line_start=0)", "missing line_end", 1, 1),
    ('remove_lines("0", "1")', "line_start must be int", 1, 1),
    ("remove_lines(True, 1)", "line_start must be int", 1, 1),
    ("remove_lines(all=False)", "removes nothing", 1, 1),
    ("remove_lines(all=True, line_start=0)", "no other argument", 1, 1),
    ('normalize(source_str="x")', "missing target_str", 1, 1),
    ("normalize(source_str=1, target_str='a')", "source_str must be str", 1, 1),
    ("drop_doc(reason='spam')", "unexpected keyword 'reason'", 1, 1),
    ("keep_doc(1)", "takes 0 arguments", 1, 1),
    ("  \n  remove_lines(line_start=0, 1)", "positional argument after keyword", 2, 30),
  ],
)
def test_errors_are_values_with_positions(text, message, line, col):
  p = prog.parse(text)
  assert p.calls == ()
  assert len(p.errors) == 1, p.errors
  e = p.errors[0]
  assert message in e.message
  assert (e.line, e.col) == (line, col)
  assert str(e).startswith(f"{line}:{col}: ")


def test_parsing_resumes_after_errors():
  text = (
    "remove_lines(line_start=0, line_end=5\n"  # missing ')' : the next line's call is still read
    'normalize(source_str="a", target_str=drop_doc())\n'  # bad value: the rest of the line is skipped
    "keep_chunk()\n"
    'normalize("unterminated, "b")\n'
    "remove_lines(2, 3)\n"
  )
  p = prog.parse(text)
  assert [c.name for c in p.calls] == ["keep_chunk", "remove_lines"]
  assert [e.line for e in p.errors] == [1, 2, 4]


def test_huge_integers_are_clamped_not_raised():
  p = prog.parse("remove_lines(0, " + "9" * 5000 + ")")
  assert p.errors == ()
  assert p.calls[0].arg("line_end") == 10**prog.MAX_INT_DIGITS


def test_parse_never_raises_on_non_strings():
  assert prog.parse(None).calls == ()
  assert [c.name for c in prog.parse(b"drop_doc() \xff").calls] == ["drop_doc"]  # bytes: decoded as UTF-8
  assert prog.parse("").errors == ()


@pytest.mark.parametrize(
  "value",
  [
    "",
    "plain",
    'q"uote',
    "it's",
    'a", "b',
    "a', 'b",
    "back\\slash",
    r"\frac{a}{b}",
    "tab\t",
    "\x00\x1f\x7f",
    "é😀",
    "\ud800",
    "f(x), y=2",
    ")",
    '"',
    "'",
    "  ",
  ],
)
def test_quote_round_trips(value):
  for text in [
    writer.format_call("normalize", source_str=value, target_str=value),
    f"normalize({writer.quote(value)}, {writer.quote(value)})",
  ]:
    p = prog.parse(text)
    assert p.errors == () and p.calls[0].arg("source_str") == value == p.calls[0].arg("target_str")


@pytest.mark.parametrize("value", ["new\nline", """a", "b and a', 'b"""])
def test_quote_refuses_what_no_literal_holds(value):
  with pytest.raises(ValueError, match="no string literal"):
    writer.quote(value)


def test_call_records_name_as_written_and_position():
  p = prog.parse("junk\n  untouch_doc()")
  c = p.calls[0]
  assert (c.name, c.written, c.line, c.col, c.pos) == ("keep_doc", "untouch_doc", 2, 3, 7)


_CALL_FREE = {
  "letters": lambda n: "a" * n,
  "words": lambda n: ("lorem ipsum dolor " * n)[:n],
}
_PATHOLOGICAL = {  # texts full of half-calls, quotes and errors
  "open quotes": lambda n: 'normalize("' + '"' * n,
  "quote comma": lambda n: 'normalize("' + '", x' * (n // 4),
  "quote paren quote": lambda n: 'normalize("' + '")"' * (n // 3),
  "failing calls": lambda n: 'normalize("x").' * (n // 15),
  "unknown calls": lambda n: "foo(" * (n // 4),
  "comment lines": lambda n: ("#" + "x" * 30 + "\n") * (n // 32),
}


def _parse_seconds(make, sizes, repeats=2):
  """Best of ``repeats`` parse times per size (the machine running the tests may be shared)."""
  out = {}
  for n in sizes:
    text = make(n)
    out[n] = float("inf")
    for _ in range(repeats):
      t0 = time.perf_counter()
      prog.parse(text)
      out[n] = min(out[n], time.perf_counter() - t0)
  return out


@pytest.mark.parametrize("kind", sorted(_CALL_FREE))
def test_call_free_text_parses_in_linear_time(kind):
  """10k/100k/1M characters of call-free text (quadratic parsing took ~11 s for 40,000 letters)."""
  seconds = _parse_seconds(_CALL_FREE[kind], (10_000, 100_000, 1_000_000))
  assert seconds[1_000_000] < 1.5, seconds  # ~0.03 s on a quiet core; quadratic would take hours
  assert seconds[1_000_000] < 40 * seconds[100_000] + 0.05, seconds  # 10x the text, ~10x the time


@pytest.mark.parametrize("kind", sorted(_PATHOLOGICAL))
def test_worst_case_programs_parse_in_linear_time(kind):
  seconds = _parse_seconds(_PATHOLOGICAL[kind], (20_000, 200_000))
  assert seconds[200_000] < 3.0, seconds
  assert seconds[200_000] < 30 * seconds[20_000] + 0.1, seconds  # quadratic: 100x
