"""The ablation data path: compact vocabulary, packing (tokens, reference losses and noise labels stay aligned),
and the unigram level, on hand-made cases."""
import math

import numpy as np
import pytest

from tokensift.pipeline import ablations as ab


def test_compact_vocab_most_frequent_first_then_oov():
  m = ab.compact_vocab([[50, 7, 7, 9], [7, 9, 123]], max_vocab=5)
  assert m == {7: 3, 9: 4}  # 3 reserved ids (pad, OOV, separator) + the 2 most frequent
  assert ab.compact_vocab([[5, 4], [4, 5]], 10) == {4: 3, 5: 4}  # ties by id


def test_pack_keeps_labels_aligned():
  docs = [{"tokens": [10, 11, 12], "ref_losses": [1.0, 2.0, 3.0], "noise": [0, 1, 0]},
          {"tokens": [13, 99], "ref_losses": [4.0, 5.0], "noise": [1, 1]}]
  mapping = {10: 3, 11: 4, 12: 5, 13: 6}
  rows = ab.pack(docs, mapping, seq_len=4)
  # stream: 3 4 5 SEP 6 OOV SEP + padding, rows of 5 overlapping by one (inputs/targets)
  np.testing.assert_array_equal(rows["tokens"], [[3, 4, 5, ab.SEP, 6], [6, ab.OOV, ab.SEP, ab.PAD, ab.PAD]])
  np.testing.assert_array_equal(rows["ref"], [[1, 2, 3, 0, 4], [4, 5, 0, 0, 0]])
  np.testing.assert_array_equal(rows["noise"], [[0, 1, 0, 0, 1], [1, 1, 0, 0, 0]])
  np.testing.assert_array_equal(rows["weight"], [[1, 1, 1, 0, 1], [1, 1, 0, 0, 0]])


def test_unigram_level():
  train = ab.pack([{"tokens": [3, 3, 3, 4], "ref_losses": [0] * 4, "noise": [0] * 4}], {3: 3, 4: 4}, 8)
  val = ab.pack([{"tokens": [3, 4], "ref_losses": [0] * 2, "noise": [0] * 2}], {3: 3, 4: 4}, 8)
  # training targets (everything after the first token): 3 3 4 -> add-one counts over 5 ids: 3 -> 3, 4 -> 2
  p3, p4 = 3 / 8, 2 / 8
  assert ab.unigram_ce(train, val, 5) == pytest.approx(-math.log(p4))  # the one validation target is 4
  assert p3 > p4


def test_config_is_checked():
  with pytest.raises(ValueError, match="unknown"):
    ab.AblationConfig(runs=("clm_everything",))
  with pytest.raises(ValueError, match="seeds=1"):
    ab.AblationConfig(seeds=1)
