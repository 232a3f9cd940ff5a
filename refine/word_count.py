"""Word counts for the executor's stats and result rules: ``len(text.split())`` exactly, computed faster.

``count_words(text)`` counts without building the list of words (splitting dominates the cost of running a
program: ~12 us for a 2 kB C4 document, against ~1.2 us compiled and ~2-9 us in pure Python here).
``replacement_word_delta`` gives the change in the count that one ``str.replace`` makes by looking only at the
replaced spots, so the executor counts each document once (the input's count and the output's follow from one
another).

Words are ``str.split``'s: maximal runs of characters that are not ``str.isspace``.

``count_words``, ``count_plain_words`` and ``count_words_plain`` are the compiled counter's
(``tokensift.refine._words``, ``refine/_words.c``: one pass over the str's buffer, ~1.2 us for a C4 document)
when the package was built with it, else the pure-Python ones below (``PYTHON_COUNTERS``), which give the same
results; ``TOKENSIFT_PURE_PYTHON_WORDS=1`` chooses the pure-Python ones (benchmarks, tests).
"""

from __future__ import annotations

import os
import re

# ASCII whitespace becomes 0x80, every other byte 0x01 (UTF-8 lead and continuation bytes included). Read as
# one little-endian integer ``m`` (byte i = bits 8i..8i+7), a word starts at byte i exactly when bit 8i is set
# (byte i is not a space) and bit 8i-1 is set (byte i-1 is a space), i.e. at the set bits of
# ``((m << 1) | 1) & m`` (the ``| 1`` stands for a space before the text; no other bits of the two overlap).
# Python's big integers do the shift, the ``and`` and the bit count in C over 30-bit digits: ~1.3x faster on
# C4 than counting the two-byte pattern of a space before a non-space with ``bytes.count``.
# (No well-kept library counts words of a ``str`` faster than this without a C extension of our own. numpy
# (flags as a uint8 array, a word where a 1 follows a 0; non-ASCII text as UTF-16 units through a 65,536-entry
# table) was faster alone on texts past ~800 characters, but made the executor ~5% slower on C4 editing
# programs, measured in one run against this.)
_FLAGS = bytes(0x80 if b < 0x80 and chr(b).isspace() else 0x01 for b in range(256))
# The non-ASCII characters ``str.split`` splits on (19; none above U+3000). A text holding one of them takes
# ``len(text.split())``; they are rare in web text.
_NON_ASCII_SPACES = tuple(chr(c) for c in range(0x80, 0x3001) if chr(c).isspace())

# Every non-ASCII whitespace character (checked on the short string of a text's non-ASCII characters only).
_UNICODE_SPACE = re.compile("[" + "".join(_NON_ASCII_SPACES) + "]")
_ASCII_BYTES = bytes(range(0x80))


def _utf8_has_unicode_space(b: bytes) -> bool:
  """Whether UTF-8 bytes ``b`` hold a non-ASCII space: its non-ASCII characters alone, searched at once."""
  return _UNICODE_SPACE.search(b.translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass")) is not None


def has_unicode_space(text: str) -> bool:
  """Whether ``text`` holds one of the 19 non-ASCII characters ``str.split`` splits on."""
  if text.isascii():
    return False
  if len(text) >= 256:  # the text's non-ASCII characters alone, searched at once (see ``count_words_plain``)
    return _utf8_has_unicode_space(text.encode("utf-8", "surrogatepass"))
  for c in _NON_ASCII_SPACES:  # 19 single-character searches: ~3x faster than one regex character class
    if c in text:
      return True
  return False


def count_plain_words(text: str) -> int:
  """``len(text.split())`` for a ``text`` that holds no non-ASCII whitespace (``has_unicode_space`` is False:
  the caller knows it, e.g. for a piece of a text already checked)."""
  if text.isascii():
    if len(text) < 80:  # (``str.split`` is faster on short texts)
      return len(text.split())
    b = text.encode("ascii")
  else:
    if len(text) < 320:
      return len(text.split())
    b = text.encode("utf-8", "surrogatepass")
  m = int.from_bytes(b.translate(_FLAGS), "little")
  return (((m << 1) | 1) & m).bit_count()


def count_words_plain(text: str) -> tuple[int, bool]:
  """(``len(text.split())``, ``not has_unicode_space(text)``), the pair for about the cost of the count alone.

  A non-ASCII text is encoded to UTF-8 once, for both: its non-ASCII characters (the bytes left after deleting
  the ASCII ones, ~30 in a typical C4 document) are searched for a non-ASCII space, then the bytes are counted.
  (19 ``in`` searches of a UCS-2 text cost ~4.5 us for a 3 kB C4 document: ``"\u2000"`` and ``"\u3000"``,
  whose low byte is 0, cannot use ``memchr``; this costs ~1.4 us past the encoding.)
  """
  if text.isascii():
    return count_plain_words(text), True
  if len(text) < 320:
    return len(text.split()), not has_unicode_space(text)
  b = text.encode("utf-8", "surrogatepass")
  if _utf8_has_unicode_space(b):
    return len(text.split()), False
  m = int.from_bytes(b.translate(_FLAGS), "little")
  return (((m << 1) | 1) & m).bit_count(), True


def count_words(text: str) -> int:
  """``len(text.split())``, computed without splitting (see above)."""
  if text.isascii():
    return count_plain_words(text)
  if len(text) < 320:  # (exact whatever spaces it holds)
    return len(text.split())
  return count_words_plain(text)[0]


def keeps_word_count(src: str, tgt: str) -> bool:
  """Whether replacing ``src`` with ``tgt`` never changes a text's word count: both are non-empty and either
  hold no whitespace or are all whitespace."""
  if not tgt:
    return False
  if " " not in src and " " not in tgt and src.isprintable() and tgt.isprintable():
    return True  # (every whitespace character but " " is unprintable: the common case without splitting)
  return src.split() == [src] and tgt.split() == [tgt] or src.isspace() and tgt.isspace()


def _ends_and_words(src: str, tgt: str) -> tuple:
  """(``src`` starts / ends with a non-space, its word count, whether ``tgt`` is non-empty, then the same three
  for ``tgt``, 0 when it is empty): what ``_zone_change`` reads."""
  if not tgt:
    return not src[0].isspace(), not src[-1].isspace(), len(src.split()), False, 0, 0, 0
  return (
    not src[0].isspace(),
    not src[-1].isspace(),
    len(src.split()),
    True,
    not tgt[0].isspace(),
    not tgt[-1].isspace(),
    len(tgt.split()),
  )


def _zone_change(shape: tuple, k: int, b: bool, a: bool) -> int:
  """The change in word starts that replacing a zone of ``k`` touching copies of the source makes (``b``/``a``:
  the characters just before / after the zone are non-spaces; ``shape``: ``_ends_and_words``; see below)."""
  s_first, s_last, s_words, t, t_first, t_last, t_words = shape
  old = k * s_words - (k - 1) * (s_first and s_last) - (s_first and b) + (a and not s_last)
  if t:
    new = k * t_words - (k - 1) * (t_first and t_last) - (t_first and b) + (a and not t_last)
  else:
    new = a and not b
  return new - old


def replacement_word_delta(s: str, src: str, tgt: str, count: int) -> int:
  """``count_words(s.replace(src, tgt)) - count_words(s)``, where ``src`` (non-empty) occurs ``count`` times in
  ``s`` (as ``str.replace`` and ``str.count`` count them), found by looking at each replaced spot only.

  ``str.replace`` replaces the leftmost non-overlapping occurrences, exactly those that repeated ``find``s from
  the end of the previous one return. Occurrences that touch form one zone. Whether a character starts a word
  depends on it and on the character before it only, so the characters whose status can change are those of
  a zone and the one just after it, ``a``; the one just before, ``b``, is in no occurrence and unchanged (at
  the start of the text, count ``b`` as a space: the same for a word start). A zone ``X`` (``k`` copies of a
  string) then holds ``W(X) - [X starts with a non-space and b is one]`` word starts, and ``a`` starts a word
  when it is not a space and the character before it (the last of ``X``, or ``b`` when ``X`` is empty) is one.
  ``W(x * k) = k W(x) - (k - 1) [x starts and ends with a non-space]`` (each junction joins two words).
  Costs a ``find`` and a few operations per zone: for few occurrences, much less than recounting ``s``.
  """
  ls = len(src)
  n = len(s)
  shape = _ends_and_words(src, tgt)
  delta = 0
  p = s.find(src)
  left = count
  while left > 0 and p >= 0:
    q = p + ls
    k = 1
    while k < left and s.startswith(src, q):  # touching occurrences: one zone
      q += ls
      k += 1
    left -= k
    b = p > 0 and not s[p - 1].isspace()  # b is a non-space
    a = q < n and not s[q].isspace()  # a is a non-space
    delta += _zone_change(shape, k, b, a)
    if left:
      p = s.find(src, q)
  return delta


def pieces_word_delta(pieces: list[str], src: str, tgt: str) -> int:
  """``replacement_word_delta`` read off ``pieces = s.split(src)`` (``len(pieces) - 1`` occurrences, at least
  one): the same zones and the same formula, with no search (``str.split`` cuts at the very occurrences
  ``str.replace`` replaces). Occurrences ``j`` and ``j + 1`` touch when the piece between them is empty; the
  character before a zone ends the piece before it (none: the start of the text), the one after it starts the
  piece after it (none: the end)."""
  shape = _ends_and_words(src, tgt)
  c = len(pieces) - 1
  delta = 0
  j = 1
  while j <= c:
    before = pieces[j - 1]
    b = bool(before) and not before[-1].isspace()  # b is a non-space
    k = 1
    while j + k - 1 < c and not pieces[j + k - 1]:  # touching occurrences: one zone
      k += 1
    after = pieces[j + k - 1]
    a = bool(after) and not after[0].isspace()  # a is a non-space
    delta += _zone_change(shape, k, b, a)
    j += k
  return delta


# The pure-Python counters, kept as the fallback (and compared with the compiled ones in the tests).
PYTHON_COUNTERS = {
  "count_words": count_words,
  "count_plain_words": count_plain_words,
  "count_words_plain": count_words_plain,
}


def _compiled():
  if os.environ.get("TOKENSIFT_PURE_PYTHON_WORDS", "") not in ("", "0"):
    return None
  try:
    from tokensift.refine import _words  # pyright: ignore[reportAttributeAccessIssue]  (the optional C extension)
  except ImportError:  # built without a C compiler (the extension is optional)
    return None
  return _words


_WORDS = _compiled()
COMPILED = _WORDS is not None
if COMPILED:
  count_words = count_plain_words = _WORDS.count
  count_words_plain = _WORDS.count_plain
