"""The compiled word counter (refine/_words.c) against str.split and against the pure-Python counters, down to
the executor's results on real documents."""

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokensift.refine import word_count as wc

words = pytest.importorskip("tokensift.refine._words", reason="built without a C compiler (optional extension)")

# Every whitespace character str.split knows (ASCII, \x1c-\x1f, the 19 non-ASCII ones), letters of the three
# PEP 393 widths (1, 2, 4 bytes) and a lone surrogate.
_SPACES = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
_ALPHABET = _SPACES + "ab\u00e9\u2019\u20ac\U0001f600\ud800"


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=400))
def test_compiled_count_is_len_split(text):
  n = len(text.split())
  spaced = any(c.isspace() and not c.isascii() for c in text)
  assert words.count(text) == n
  assert words.count_plain(text) == (n, not spaced)
  assert wc.PYTHON_COUNTERS["count_words_plain"](text) == (n, not spaced)


def test_compiled_counter_is_the_one_in_use_and_rejects_non_str():
  assert wc.COMPILED and wc.count_words is words.count and wc.count_words_plain is words.count_plain
  assert words.count("") == 0 and words.count(" \u3000 ") == 0 and words.count("\U0001f600x y") == 2
  with pytest.raises(TypeError, match="expected a str, got bytes"):
    words.count(b"a b")


_RESULTS = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
import bench_executor as be
from tokensift.refine import executor, word_count
texts = be.c4_train_texts()[:300] + be.owm_texts()[:300]
h = hashlib.sha256()
for lines in (False, True):
  for t, c in zip(texts, be.editing_programs(texts, seed=3, lines=lines)):
    r = executor.execute(t, "keep_doc()", c)
    h.update(json.dumps([r.text, r.kept, r.errors, r.stats, r.removed, r.normalizations]).encode())
print(word_count.COMPILED, h.hexdigest())
"""


def test_executor_results_are_the_same_with_the_pure_python_counters():
  """Refined text, errors and every stat of 1200 editing programs on real C4 and OpenWebMath documents."""
  bench = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
  out = {}
  for pure in ("0", "1"):
    env = dict(os.environ, TOKENSIFT_PURE_PYTHON_WORDS=pure, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([sys.executable, "-c", _RESULTS, bench], env=env, capture_output=True, text=True, check=True)
    out[pure] = res.stdout.split()[-2:]
  assert out["0"][0] == "True" and out["1"][0] == "False"
  assert out["0"][1] == out["1"][1]
