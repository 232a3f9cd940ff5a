"""T5 and BERT on 8 fake CPU devices, mesh (data 4, model 2): params land sharded per the logical-axis rules
and outputs equal the single-device outputs."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tokensift.models import partitioning as part
from tokensift.models.bert import Bert, BertConfig, sentence_embeddings
from tokensift.models.t5 import T5, T5Config


@pytest.fixture(scope="module")
def mesh():
  assert len(jax.devices()) == 8, "conftest sets 8 fake CPU devices"
  return part.make_mesh(part.MeshConfig(data=4, model=2))


def _spec(x):
  return x.sharding.spec


def _shards_of(x):
  return {tuple(s.data.shape) for s in x.addressable_shards}


T5_CFG = T5Config(
  vocab_size=64,
  d_model=16,
  num_heads=4,
  head_dim=4,
  d_ff=32,
  num_encoder_layers=2,
  num_decoder_layers=2,
  relative_attention_num_buckets=8,
  relative_attention_max_distance=16,
)


def _t5_batch():
  rng = np.random.default_rng(0)
  enc = rng.integers(2, 64, (8, 12)).astype(np.int32)
  enc[3, 7:] = 0
  dec = rng.integers(2, 64, (8, 6)).astype(np.int32)
  dec[:, 0] = 0
  return enc, dec


@pytest.mark.parametrize("rules", ["standard", "fsdp"])
def test_t5_params_sharded_and_outputs_match_single_device(mesh, rules):
  module = T5(T5_CFG)
  enc, dec = _t5_batch()
  params, shardings = part.sharded_init(module, mesh, enc[:1], dec[:1], rules=rules)
  layer = params["encoder"]["layers_0"]
  embed_axis = "data" if rules == "fsdp" else None
  assert _spec(layer["attention"]["query"]["kernel"]) == P(embed_axis, "model", None)
  assert _shards_of(layer["attention"]["query"]["kernel"]) == {(16 // (4 if rules == "fsdp" else 1), 2, 4)}
  assert _spec(layer["attention"]["out"]["kernel"]) == P("model", None, embed_axis)
  assert _spec(layer["mlp"]["wi_0"]["kernel"]) == P(embed_axis, "model")
  assert _spec(layer["mlp"]["wo"]["kernel"]) == P("model", embed_axis)
  assert _spec(params["token_embedder"]["embedding"]) == P("model", embed_axis)
  assert _spec(params["decoder"]["logits_dense"]["kernel"]) == P(embed_axis, "model")
  assert _spec(params["encoder"]["relpos_bias"]["rel_embedding"]) == P("model", None)
  assert _shards_of(params["token_embedder"]["embedding"]) == {(32, 16 // (4 if rules == "fsdp" else 1))}

  host = jax.tree.map(np.asarray, params)
  single = np.asarray(module.apply({"params": host}, enc, dec))
  apply = part.jit_apply(module, mesh, shardings, rules=rules)
  batch = part.batch_sharding(mesh, 2)
  out = apply(params, jax.device_put(enc, batch), jax.device_put(dec, batch))
  assert np.abs(np.asarray(out) - single).max() <= 1e-5
  encode = part.jit_apply(module, mesh, shardings, rules=rules, method="encode")
  encoded = encode(params, jax.device_put(enc, batch))
  assert _spec(encoded)[0] == "data"  # activations stay batch-sharded
  single_enc = module.apply({"params": host}, enc, method=module.encode)
  assert np.abs(np.asarray(encoded) - np.asarray(single_enc)).max() <= 1e-5


def test_bert_params_sharded_and_embeddings_match_single_device(mesh):
  cfg = BertConfig(
    vocab_size=100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=32
  )
  module = Bert(cfg)
  rng = np.random.default_rng(1)
  ids = rng.integers(1, 100, (8, 10)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[2, 6:] = 0
  ids[mask == 0] = 0
  params, shardings = part.sharded_init(module, mesh, ids[:1], mask[:1])
  att = params["layers_0"]["attention"]
  assert _spec(att["query_kernel"]) == P(None, "model", None)
  assert _spec(att["query_bias"]) == P("model", None)
  assert _spec(att["out_kernel"]) == P("model", None, None)
  assert _spec(params["layers_0"]["mlp"]["wi_kernel"]) == P(None, "model")
  assert _spec(params["embeddings"]["word_embeddings"]) == P("model", None)
  assert _shards_of(params["layers_0"]["mlp"]["wi_kernel"]) == {(32, 32)}

  host = jax.tree.map(np.asarray, params)
  single = np.asarray(sentence_embeddings(module, host, ids, mask))
  batch = part.batch_sharding(mesh, 2)
  with jax.set_mesh(mesh):
    fn = jax.jit(lambda p, i, m: sentence_embeddings(module, p, i, m))
    with __import__("flax").linen.logical_axis_rules(part.STANDARD_RULES):
      out = fn(params, jax.device_put(ids, batch), jax.device_put(mask, batch))
  assert np.abs(np.asarray(out) - single).max() <= 1e-5
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out), axis=-1), 1.0, rtol=1e-5)
