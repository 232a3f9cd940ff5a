"""The executor: ProX's semantics on well-formed programs, each reference weakness fixed, stats."""

import json
import signal

import pytest

from tokensift.refine import executor as ex
from tokensift.refine import program as prog

# 12 lines of 5 words each (60 words): line i is "wI a b c d".
DOC = "\n".join(f"w{i} a b c d" for i in range(12))


def lines_of(text):
  return text.split("\n")


def run(chunk_program, text=DOC, doc_program=None, **cfg):
  return ex.execute(text, doc_program, chunk_program, ex.ExecConfig(**cfg) if cfg else ex.DEFAULT_CONFIG)


# ---- ProX semantics on well-formed programs -------------------------------------------------------------


def test_remove_lines_is_zero_based_inclusive():
  r = run("remove_lines(line_start=0, line_end=2)")
  assert r.kept and lines_of(r.text) == [f"w{i} a b c d" for i in range(3, 12)]
  assert r.removed == ((0, 2),)
  r = run("remove_lines(line_start=5, line_end=5)")
  assert [ln.split()[0] for ln in lines_of(r.text)] == [f"w{i}" for i in range(12) if i != 5]


def test_line_numbers_are_global_over_concatenated_chunk_programs():
  # Two chunks' programs, concatenated; line numbers refer to the whole document, ranges may overlap.
  r = run(
    "remove_lines(line_start=1, line_end=2)\nkeep_chunk()\nremove_lines(line_start=2, line_end=3)\n"
    "remove_lines(line_start=10, line_end=11)"
  )
  assert [ln.split()[0] for ln in lines_of(r.text)] == ["w0", "w4", "w5", "w6", "w7", "w8", "w9"]
  assert r.removed == ((1, 3), (10, 11))
  assert r.stats["lines_removed"] == 5 and r.stats["lines_after"] == 7


def test_normalize_replaces_every_occurrence_in_order():
  text = "the cat sat on the mat\nthe end of the story is near now\none more line with more words here"
  r = run('normalize(source_str="the", target_str="a")\nnormalize(source_str="a cat", target_str="one dog")', text)
  assert r.text == ("one dog sat on a mat\na end of a story is near now\none more line with more words here")
  assert r.normalizations == (("the", "a", 4), ("a cat", "one dog", 1))
  assert r.stats["normalizations"] == 2 and r.stats["replacements"] == 5


def test_two_errors_keep_the_document_unchanged():
  r = run("remove_lines(0, 3)\nremove_lines(50, 60)\nremove_lines(5, 4)\nnormalize('absent', 'x')")
  assert r.kept and r.text == DOC and r.stats["program_ignored"]
  assert r.stats["chunk_errors"] == 2 and r.removed == () and r.stats["normalize_not_found"] == 0
  r = run("remove_lines(0, 3)\nremove_lines(50, 60)")  # one error: the valid call still runs
  assert r.kept and not r.stats["program_ignored"] and r.removed == ((0, 3),)


def test_max_errors_is_configurable():
  r = run("remove_lines(0, 3)\nremove_lines(50, 60)", max_errors=1)
  assert r.text == DOC and r.stats["program_ignored"]


def test_ten_or_fewer_surviving_words_drop():
  # 12 lines x 5 words; keep 2 lines = 10 words -> dropped; keep 3 lines = 15 words -> kept.
  r = run("remove_lines(line_start=2, line_end=11)")
  assert not r.kept and r.text == "" and r.stats["drop_reason"] == "few_words"
  r = run("remove_lines(line_start=3, line_end=11)")
  assert r.kept and r.stats["words_after"] == 15
  # A short document is dropped even by an empty chunk program (ProX's FineWeb-style rule).
  r = run("keep_chunk()", "only ten words here one two three four five six")
  assert not r.kept and r.stats["drop_reason"] == "few_words"


def test_five_percent_survival_drops():
  text = "\n".join(["x " * 20] * 20)  # 400 words, 20 per line
  r = run("remove_lines(line_start=1, line_end=19)", text, min_words=0)  # 20/400 = 5% -> dropped
  assert not r.kept and r.stats["drop_reason"] == "low_fraction"
  text21 = text + "\nextra"  # 401 words; removing lines 1..19 keeps 21 of them (5.2%) -> kept
  r = run("remove_lines(line_start=1, line_end=19)", text21, min_words=0)
  assert r.kept and r.stats["words_after"] == 21


def test_five_percent_rule_does_not_apply_when_program_is_ignored():
  text = "\n".join(["x " * 20] * 20)
  r = run("remove_lines(1, 19)\nnormalize('', 'y')\nremove_lines(30, 31)", text)
  assert r.kept and r.text == text and r.stats["chunk_errors"] == 2


def test_out_of_range_lines():
  r = run("remove_lines(line_start=10, line_end=99)")  # end past the last line: clipped, one error
  assert r.kept and r.removed == ((10, 11),) and r.stats["chunk_errors"] == 1
  assert "clipped" in r.errors[0] and r.errors[0].startswith("chunk 1:1:")
  r = run("remove_lines(line_start=12, line_end=13)")  # start past the last line: nothing removed
  assert r.kept and r.text == DOC and r.stats["chunk_errors"] == 1 and "nothing removed" in r.errors[0]


def test_line_ranges_are_merged_before_they_are_checked():
  # Two calls past the end that touch are one merged range: one error, the rest of the program applies.
  r = run("remove_lines(0, 0)\nremove_lines(12, 12)\nremove_lines(13, 15)")
  assert r.stats["chunk_errors"] == 1 and not r.stats["program_ignored"] and r.removed == ((0, 0),)
  assert "remove_lines(12, 15) (merged): line_start past the last line 11" in r.errors[0]
  assert r.errors[0].startswith("chunk 2:1:")  # the call that starts the merged range
  # A range inside the document merged with one past its end: one clipped range, one error.
  r = run("remove_lines(line_start=12, line_end=20)\nremove_lines(line_start=9, line_end=11)")
  assert r.removed == ((9, 11),) and r.stats["chunk_errors"] == 1 and "clipped" in r.errors[0]
  assert r.errors[0].startswith("chunk 1:1:")  # the call that ends it
  # Two separate ranges past the end: two errors, the program is ignored.
  r = run("remove_lines(0, 0)\nremove_lines(13, 13)\nremove_lines(15, 16)")
  assert r.stats["chunk_errors"] == 2 and r.stats["program_ignored"] and r.text == DOC


def test_a_source_not_found_is_a_counted_no_op():
  r = run('normalize(source_str="nowhere", target_str="x")\nnormalize(source_str="zz", target_str="y")')
  assert r.text == DOC and r.errors == () and not r.stats["program_ignored"]
  assert r.stats["normalize_not_found"] == 2 and r.normalizations == ()


def test_a_source_already_replaced_is_a_counted_no_op():
  # Each chunk's program repeats the same fix; the 2nd and 3rd find nothing left: no errors, counted.
  program = "\n".join(['normalize(source_str="a b", target_str="A-B")'] * 3)
  r = run(program)
  assert r.errors == () and not r.stats["program_ignored"]
  assert r.text == DOC.replace("a b", "A-B") and r.stats["normalize_not_found"] == 2
  assert r.normalizations == (("a b", "A-B", 12),)


def test_a_normalization_to_itself_is_applied_not_an_error():
  r = run("normalize('w1 a', 'w1 a')\nnormalize('zz', 'zz')")
  assert r.text == DOC and r.normalizations == (("w1 a", "w1 a", 1),)
  assert r.errors == () and r.stats["normalize_not_found"] == 1


def test_a_source_only_an_earlier_call_created_applies():
  r = run('normalize("w1 a", "QQ a")\nnormalize("QQ", "w1")')
  assert r.errors == () and r.stats["normalize_not_found"] == 0
  assert r.text == DOC  # applied: w1 a -> QQ a -> w1 a
  assert r.normalizations == (("w1 a", "QQ a", 1), ("QQ", "w1", 1))


@pytest.mark.parametrize("source,target", [("  ", " "), ("\t", " "), ("\tb ", " "), (" a", "")])
def test_whitespace_sources_apply(source, target):
  text = "\n".join(f"w{i}  a\tb c d e" for i in range(6))
  r = run(f'normalize(source_str="{source}", target_str="{target}")', text)
  assert r.errors == () and r.text == text.replace(source, target)
  assert r.stats["words_after"] == len(r.text.split())


@pytest.mark.parametrize("target", ["", "_", " "])
def test_a_single_space_source_is_skipped_and_counted(target):
  r = run(f'normalize(source_str=" ", target_str="{target}")\nnormalize("w1 a", "W1 A")')
  assert r.errors == () and r.stats["normalize_skipped"] == 1 and r.normalizations == (("w1 a", "W1 A", 1),)
  assert r.text == DOC.replace("w1 a", "W1 A")


def test_growth_is_bounded_before_anything_is_built():
  import tracemalloc

  text = " ".join(["a"] * 100)  # 199 characters
  program = "\n".join(['normalize("a", "aaaaaaaaaa")'] * 6)  # would be 10**6 x: ~100 MB
  tracemalloc.start()
  try:
    r = run(program, text)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < 2_000_000, peak
  assert r.text == text and r.stats["program_ignored"] and r.stats["chunk_errors"] == 1
  assert "past the bound 65735" in r.errors[0] and "program ignored" in r.errors[0]
  assert ex.max_output_chars(text) == 199 + 64 * 1024
  # Within the bound (2x the input, or 64 KiB more), growth is fine.
  r = run('normalize("a", "aaaaaaaaaa")\nnormalize("a a", "a - a")', text)
  assert r.errors == () and len(r.text) == 199 + 100 * 9 + 99 * 2


def test_growth_never_passes_the_ten_megabyte_limit():
  text = "ab " * 2_000_000  # 6 MB: the 2x bound is capped at 10 MB
  assert ex.max_output_chars(text) == ex.MAX_DOC_BYTES
  r = run('normalize("ab", "ababab")', text)  # 14 MB
  assert r.text == text and r.stats["program_ignored"] and "past the bound" in r.errors[0]
  # Characters within the bound but UTF-8 bytes past the limit (4 bytes each): also ignored.
  text = "ab " * 1_200_000  # 3.6 M characters either way; 10.8 MB of UTF-8 after
  r = run('normalize("ab", "\U0001f600\U0001f600")', text)
  assert r.text == text and r.stats["program_ignored"] and "UTF-8 bytes" in r.errors[0]


def test_remove_all_lines():
  r = run("remove_lines(all=True)")
  assert not r.kept and r.stats["drop_reason"] == "low_fraction"


def test_model_failure_modes_from_the_paper():
  program = (
    "# Analysis: The first three lines are navigation links and should be removed.\n"
    + "remove_lines(start=1, end=1)\n" * 30
    + "remove_lines(start=0, end=2)"
  )
  r = run(program)
  assert r.kept and r.removed == ((0, 2),) and r.errors == ()


# ---- The reference implementation's weaknesses (DESIGN §3), each fixed ----------------------------------


def test_drop_in_a_comment_or_string_does_not_drop():
  for doc_program in [
    "# this is not a drop candidate\nkeep_doc()",
    "keep_doc()  # drop_doc() was considered",
    "untouch_doc() dropdown menus are fine",
    'normalize("drop_doc()", "x")',
  ]:
    r = run(None, doc_program=doc_program)
    assert r.kept and r.text == DOC, doc_program
  assert not run(None, doc_program="drop_doc()").kept


def test_doc_stage_first_decision_wins_and_chunk_stage_is_skipped_on_drop():
  assert run(None, doc_program="drop_doc()\nkeep_doc()").stats["doc_action"] == "drop"
  r = run("remove_lines(0, 0)", doc_program="keep_doc()\ndrop_doc()")
  assert r.kept and r.stats["doc_action"] == "keep" and r.removed == ((0, 0),)
  r = run("remove_lines(0, 0)", doc_program="drop_doc()")
  assert r.stats["drop_reason"] == "drop_doc" and r.stats["lines_removed"] == 12 and r.text == ""
  r = run(None, doc_program="nothing decided here")
  assert r.kept and r.stats["doc_action"] == "none"


def test_positional_arguments_and_single_quotes_work():
  r = run("remove_lines(0, 0)")
  assert r.removed == ((0, 0),) and r.errors == ()
  r = run("normalize('w1 a', 'W1 A')")
  assert lines_of(r.text)[1] == "W1 A b c d"


@pytest.mark.parametrize("source", ["a, b", "c)", "b=c", "=", "w3 a b"])
def test_sources_with_separators_are_applied(source):
  text = "x a, b c) d b=c e = f\n" + DOC
  r = run(f"normalize(source_str={json.dumps(source)}, target_str='<R>')", text)
  assert r.errors == () and source not in r.text and "<R>" in r.text


def test_single_argument_normalize_of_a_space_does_not_delete_spaces():
  r = run('normalize(source_str=" ")')  # ProX's one-argument form deletes every space
  assert r.text == DOC and r.stats["chunk_errors"] == 1 and "missing target_str" in r.errors[0]


def test_whitespace_only_and_empty_text_do_not_raise():
  for text in ["", " ", "\n\n\t  \n", "\u3000\u2003"]:
    r = run("remove_lines(0, 0)", text)
    assert not r.kept and r.stats["drop_reason"] == "empty" and r.text == ""


def test_huge_line_end_does_not_hang():
  def timeout(*_):
    raise TimeoutError("remove_lines with a huge line_end took too long")

  old = signal.signal(signal.SIGALRM, timeout)
  signal.alarm(5)
  try:
    r = run("remove_lines(line_start=11, line_end=999999999999999999999999)")
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
  assert r.removed == ((11, 11),)


def test_bad_ranges_and_line_breaks_are_errors():
  for program, msg in [
    ("remove_lines(3, 1)", "line_start > line_end"),
    ("remove_lines(-1, 1)", "negative"),
    ('normalize("", "x")', "empty"),
  ]:
    r = run(program)
    assert r.text == DOC and len(r.errors) == 1 and msg in r.errors[0], program
  # A string literal cannot hold a line break (r"\n" is two characters); a Program built in code can.
  for src, tgt in [("a\nb", "x"), ("w1", "x\ny")]:
    p = prog.Program("", (prog.Call("normalize", (("source_str", src), ("target_str", tgt)), 0, 1, 1),), ())
    r = run(p)
    assert r.text == DOC and len(r.errors) == 1 and "line break" in r.errors[0]


def test_stats_have_fixed_keys():
  for r in [run("remove_lines(0, 1)"), run(None, doc_program="drop_doc()"), run(None), run("x", "")]:
    assert tuple(r.stats) == ex.STAT_KEYS
    assert r.stats["chars_after"] == len(r.text)
  r = run("remove_lines(0, 1)\nnormalize('w5', 'five')", doc_program="keep_doc()")
  assert r.stats == {
    "kept": True,
    "drop_reason": "",
    "doc_action": "keep",
    "program_ignored": False,
    "doc_errors": 0,
    "chunk_errors": 0,
    "lines_before": 12,
    "lines_after": 10,
    "lines_removed": 2,
    "normalizations": 1,
    "replacements": 1,
    "chars_before": len(DOC),
    "chars_after": len(r.text),
    "words_before": 60,
    "words_after": 50,
    "normalize_not_found": 0,
    "normalize_skipped": 0,
  }


def test_config_validation_names_the_value():
  with pytest.raises(ValueError, match="1.5"):
    ex.ExecConfig(min_keep_fraction=1.5)
  with pytest.raises(ValueError, match="0"):
    ex.ExecConfig(max_errors=0)
