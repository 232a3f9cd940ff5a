"""The benchmark's inputs: models' configs from the gin files, random weights, packed training batches."""

from __future__ import annotations

from typing import Sequence


def gin_config(spec: Sequence[str]):
  """The ``LlamaConfig`` that gin files and bindings (``spec``: the items ending in ``.gin`` are files) bind,
  as the trainer's gin files build its networks."""
  import gin

  import tokensift
  from tokensift.core import gin_parse
  from tokensift.models import llama

  files = [s for s in spec if s.endswith(".gin")]
  bindings = [s for s in spec if not s.endswith(".gin")]
  gin.clear_config()
  gin.add_config_file_search_path(tokensift.gin_dir())
  gin_parse.parse_files_and_bindings(files, bindings)
  config = gin.get_configurable(llama.LlamaConfig)()
  gin.clear_config()
  return config


def random_llama_params(cfg, seed: int = 0, std: float = 0.02):
  """Host params of ``models.llama.Llama(cfg)`` in ``cfg.param_dtype``: normal(0, ``std``) weights, unit norm
  scales (numpy, so that nothing compiles for the init)."""
  import flax.linen as nn
  import jax
  import numpy as np

  from tokensift.models import llama

  shapes = jax.eval_shape(lambda: llama.Llama(cfg).init(jax.random.PRNGKey(0), np.ones((1, 8), np.int32))["params"])
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    if path[-1].key == "scale":
      return np.ones(s.shape, s.dtype)
    return (rng.standard_normal(s.shape, np.float32) * std).astype(s.dtype)

  return jax.tree_util.tree_map_with_path(leaf, nn.unbox(shapes))


def c4_sentencepiece():
  import sentencepiece as spm

  from tokensift.core import paths

  return spm.SentencePieceProcessor(model_file=str(paths.data_path("tokenizers", "c4-32768.model")))


def pack(sequences: list[list[int]], losses: list, rows: int, length: int) -> dict:
  """Greedy packing of documents (each at most ``length`` tokens, no 0 inside) into ``[rows, length]`` model
  features as seqio's LM feature converter packs them: ``decoder_target_tokens``, ``decoder_input_tokens``
  (shifted right within each document, 0 first), ``decoder_loss_weights``, ``decoder_segment_ids`` (1, 2, ...;
  0 on padding), ``decoder_positions`` (restarting per document) and ``decoder_ref_losses``. Documents that do
  not fit a row start the next one; packing stops when the rows are full."""
  import numpy as np

  out = {
    k: np.zeros((rows, length), np.int32)
    for k in ("decoder_target_tokens", "decoder_input_tokens", "decoder_segment_ids", "decoder_positions")
  }
  out["decoder_loss_weights"] = np.zeros((rows, length), np.float32)
  out["decoder_ref_losses"] = np.zeros((rows, length), np.float32)
  row, col, seg = 0, 0, 0
  for ids, ref in zip(sequences, losses):
    n = len(ids)
    if col + n > length:
      row, col, seg = row + 1, 0, 0
      if row == rows:
        break
    seg += 1
    sl = slice(col, col + n)
    out["decoder_target_tokens"][row, sl] = ids
    out["decoder_input_tokens"][row, sl] = [0] + list(ids[:-1])
    out["decoder_segment_ids"][row, sl] = seg
    out["decoder_positions"][row, sl] = np.arange(n)
    out["decoder_loss_weights"][row, sl] = 1.0
    out["decoder_ref_losses"][row, sl] = ref
    col += n
  if row < rows - 1:
    raise ValueError(f"the documents fill {row + 1} of {rows} rows of {length} tokens")
  return out


def train_batch(texts: Sequence[str], vocab: int, rows: int, length: int) -> dict:
  """A packed ``[rows, length]`` batch of documents (C4 SentencePiece ids + EOS, at most ``length``) with the
  per-token losses of a small random reference Llama of ``vocab`` ids (``rho1.reference_losses.ReferenceScorer``,
  as the reference-losses job computes them)."""
  from tokensift.models import llama
  from tokensift.rho1.reference_losses import ReferenceScorer

  sp = c4_sentencepiece()
  seqs = []
  for text in texts:
    ids = [i for i in sp.encode(text) if i > 0][: length - 1] + [sp.eos_id()]  # 0 (unknown) is padding here
    seqs.append(ids)
  ref_cfg = llama.LlamaConfig(
    vocab_size=vocab, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1
  )
  scorer = ReferenceScorer(
    llama.Llama(ref_cfg),
    random_llama_params(ref_cfg, std=0.3),
    batch_tokens=8 * length,
    length_multiple=128,
    max_length=length,
  )
  need = rows * length
  count, total = 0, 0
  while total < 1.5 * need and count < len(seqs):  # enough documents to fill the rows
    total += len(seqs[count])
    count += 1
  seqs = seqs[:count]
  return pack(seqs, scorer(seqs), rows, length)
