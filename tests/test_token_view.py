"""The token-selection HTML view: pieces reassemble the document, escaping, colours follow the excess loss.
(A view of a real trained run is written through `tokensift token-view` in test_trainer.py.)"""

import re

import numpy as np
import pytest

from tokensift.trainer.token_view import render_token_html, token_pieces


def test_pieces_reassemble_real_text_with_multibyte_characters(data_dir):
  from tokensift.tasks import vocabularies

  vocab = vocabularies.smollm2()
  text = "Let $α ∈ ℝ$ and ∑ᵢ xᵢ² — naïve bound: <b>&</b>\n\n  x_{n+1} = x_n/2"
  ids = vocab.encode(text)
  pieces = token_pieces(vocab, ids)
  assert len(pieces) == len(ids)
  assert "".join(pieces) == vocab.decode(ids) == text


def test_render_escapes_marks_and_shades_tokens():
  pieces = ["<b>", "a & b", "\n", "x", "y", "z"]
  excess = np.array([3.0, 1.0, -0.5, 2.0, -4.0, 0.5])
  selected = np.array([True, False, False, True, False, True])
  page = render_token_html(
    pieces, excess, selected, title="doc <1>", model_losses=excess + 5, ref_losses=np.full(6, 5.0)
  )
  assert "&lt;b&gt;" in page and "a &amp; b" in page and "doc &lt;1&gt;" in page and "<b>" not in page
  assert page.count('class="sel"') == 3 and page.count('class="uns"') == 3
  assert "3 of 6 tokens selected (50%)" in page
  assert "↵<br>" in page  # newlines stay visible
  spans = re.findall(
    r'<span class="(sel|uns)" style="background:rgba\((\d+),\d+,\d+,([0-9.]+)\)" title="([^"]*)"', page
  )
  alpha = {int(re.search(r"token (\d+)", t).group(1)): (cls, float(a)) for cls, _, a, t in spans}
  assert alpha[0] == ("sel", 0.9)  # highest excess: darkest red
  assert alpha[4] == ("uns", 0.9)  # lowest excess: darkest blue
  assert alpha[5][1] == pytest.approx(0.12)  # the selection threshold itself: lightest
  assert "model loss 8.000 | reference loss 5.000" in page
  assert "selection threshold 0.500" in page


def test_render_rejects_mismatched_inputs():
  with pytest.raises(ValueError, match="2 pieces but 3 excess losses"):
    render_token_html(["a", "b"], np.zeros(3), np.zeros(3, bool))
