"""BERT encoder: parity with HF transformers on a random tiny config, the real all-MiniLM-L6-v2 against
sentence-transformers on 50 real C4 documents, and bad checkpoints."""

import gzip
import json
import shutil

import jax
import numpy as np
import pytest

from tokensift.core import paths
from tokensift.models import bert_loader
from tokensift.models.bert import BertConfig, sentence_embeddings
from tokensift.models.checkpoint_check import CheckpointError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
  path = tmp_path_factory.mktemp("hf_bert")
  cfg = transformers.BertConfig(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
    type_vocab_size=2,
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
  )
  model = transformers.BertModel(cfg, add_pooling_layer=True).eval()
  torch.manual_seed(0)
  with torch.no_grad():
    for p in model.parameters():
      p.normal_(0.0, 0.3)
  model.save_pretrained(str(path))
  return path, transformers.BertModel.from_pretrained(str(path)).eval()


def test_hf_parity_fp32(hf_bert):
  path, model = hf_bert
  loaded = bert_loader.load_bert(path)
  assert loaded.config == BertConfig(
    vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=40
  )
  rng = np.random.default_rng(0)
  ids = rng.integers(1, 100, (3, 17))
  mask = np.ones_like(ids)
  mask[1, 9:] = 0
  mask[2, 3:] = 0
  ids[mask == 0] = 0
  types = rng.integers(0, 2, ids.shape)
  with torch.no_grad():
    ref = model(
      input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(types)
    ).last_hidden_state.numpy()
  out = np.asarray(loaded.module.apply({"params": loaded.params}, ids, mask, types))
  assert np.abs(out - ref).max() <= 1e-4, np.abs(out - ref).max()
  # sentence embeddings (token type 0) = mask-weighted mean of the states, unit length
  with torch.no_grad():
    ref0 = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
  pooled = (ref0 * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  pooled /= np.linalg.norm(pooled, axis=-1, keepdims=True)
  emb = np.asarray(sentence_embeddings(loaded.module, loaded.params, ids, mask))
  np.testing.assert_allclose(emb, pooled, atol=1e-5)


def test_bf16_compute_close(hf_bert):
  path, _ = hf_bert
  f32, b16 = bert_loader.load_bert(path), bert_loader.load_bert(path, dtype="bfloat16")
  ids = np.arange(1, 21).reshape(2, 10)
  mask = np.ones_like(ids)
  a = np.asarray(sentence_embeddings(f32.module, f32.params, ids, mask))
  b = np.asarray(sentence_embeddings(b16.module, b16.params, ids, mask))
  assert b16.module.apply({"params": b16.params}, ids, mask).dtype == jax.numpy.bfloat16
  cos = (a * b).sum(-1)
  assert (cos > 0.99).all() and (cos < 1.0 - 1e-7).any(), cos


def _c4_docs(data_dir, n):
  with gzip.open(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
    return [json.loads(line)["text"] for line, _ in zip(f, range(n))]


def test_minilm_matches_sentence_transformers_on_c4(data_dir):
  st_mod = pytest.importorskip("sentence_transformers")
  docs = _c4_docs(data_dir, 50)
  loaded = bert_loader.load_minilm()
  assert loaded.config.hidden_size == 384 and loaded.config.num_layers == 6
  ids, mask = bert_loader.tokenize(loaded, docs)
  assert ids.shape[1] <= 256 and mask.sum(1).max() == 256  # sentence-transformers' max_seq_length truncation
  ours = np.asarray(jax.jit(lambda p, i, m: sentence_embeddings(loaded.module, p, i, m))(loaded.params, ids, mask))
  st = st_mod.SentenceTransformer(str(paths.minilm_dir()), device="cpu")
  ref = st.encode(docs, batch_size=50, convert_to_numpy=True)
  assert ours.shape == ref.shape == (50, 384)
  cos = (ours * ref).sum(-1) / np.linalg.norm(ref, axis=-1) / np.linalg.norm(ours, axis=-1)
  assert cos.min() >= 0.9999, cos.min()


def test_bad_checkpoints(hf_bert, tmp_path):
  path, _ = hf_bert

  def variant(name, edit_state=None, edit_config=None):
    dst = tmp_path / name
    shutil.copytree(path, dst)
    if edit_state:
      sd = load_file(str(dst / "model.safetensors"))
      edit_state(sd)
      save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
    if edit_config:
      cfg = json.loads((dst / "config.json").read_text())
      edit_config(cfg)
      (dst / "config.json").write_text(json.dumps(cfg))
    return dst

  with pytest.raises(CheckpointError, match=r"missing tensors: layers_1/mlp/wo_bias"):
    bert_loader.load_bert(variant("missing", lambda sd: sd.pop("encoder.layer.1.output.dense.bias")))
  with pytest.raises(CheckpointError, match=r"unexpected tensors: unexpected/encoder\.layer\.0\.adapter\.weight"):
    bert_loader.load_bert(variant("extra", lambda sd: sd.update({"encoder.layer.0.adapter.weight": torch.ones(2)})))
  with pytest.raises(CheckpointError, match=r"embeddings/word_embeddings: expected \(100, 32\), got \(99, 32\)"):
    bert_loader.load_bert(
      variant("shape", lambda sd: sd.update({"embeddings.word_embeddings.weight": torch.zeros(99, 32)}))
    )
  with pytest.raises(CheckpointError, match=r"unknown architecture model_type='roberta'"):
    bert_loader.load_bert(variant("arch", edit_config=lambda c: c.update(model_type="roberta")))
  with pytest.raises(FileNotFoundError, match="no config.json"):
    bert_loader.load_bert(tmp_path / "nowhere")
