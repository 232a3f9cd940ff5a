"""ASK-LLM scorer: bucketing plan, and scores invariant (<= 1e-5) to devices/mesh, batch size and bucketing,
equal to an unpadded full forward, for tiny random decoder-only and encoder-decoder scorers."""

import functools
import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tokensift.core import paths
from tokensift.models import llama, partitioning, t5
from tokensift.selection import askllm_prompt as ap
from tokensift.selection import askllm_scorer as sc
from tokensift.core import hf_tokenizer


def test_plan_batches_covers_each_prompt_once_with_bounded_shapes():
  rng = np.random.default_rng(0)
  lengths = rng.integers(20, 513, size=333).tolist()
  assert sc.bucket_lengths(512, sc.BatchConfig(min_bucket=64, bucket_growth=2)) == (64, 128, 256, 512)
  assert sc.bucket_lengths(512, sc.BatchConfig(min_bucket=64)) == (64, 96, 128, 160, 224, 288, 384, 480, 512)
  for growth in (2, 1.25):
    cfg = sc.BatchConfig(tokens_per_batch=4096, max_batch=32, min_bucket=64, bucket_growth=growth)
    buckets = sc.bucket_lengths(512, cfg)
    plan = sc.plan_batches(lengths, 512, cfg, data_size=4)
    assert sorted(i for b in plan for i in b.indices) == list(range(333))
    for b in plan[:-1]:
      assert len(b.indices) == b.rows  # every batch but the last is full
    for b in plan:
      assert b.length in buckets and b.rows % 4 == 0 and len(b.indices) <= b.rows
      assert max(lengths[i] for i in b.indices) <= b.length
      assert b.length == min(x for x in buckets if x >= max(lengths[i] for i in b.indices))
      assert b.rows * b.length <= max(4096, 4 * b.length)
    assert len({(b.rows, b.length) for b in plan}) <= len(buckets) + 4  # bounded number of jit shapes
    real = sum(lengths)
    padded = sum(b.rows * b.length for b in plan)
    assert real / padded > (0.7 if growth == 2 else 0.85), real / padded  # sorted batches: little padding
  # fixed buckets; a prompt longer than the last bucket is named
  plan = sc.plan_batches([5, 50, 70], 100, sc.BatchConfig(buckets=(16, 100), max_batch=2))
  assert [(b.indices, b.length, b.rows) for b in plan] == [((0, 1), 100, 2), ((2,), 100, 1)]
  with pytest.raises(ValueError, match="prompt #1 has 101 tokens"):
    sc.plan_batches([5, 101], 100, sc.BatchConfig(buckets=(16, 100)))
  with pytest.raises(ValueError, match="increasing"):
    sc.BatchConfig(buckets=(64, 32))
  with pytest.raises(ValueError, match="bucket_growth"):
    sc.BatchConfig(bucket_growth=1.0)


def test_answer_logprobs_full_vocab():
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(3, 50)), jnp.float32)
  out = sc.answer_logprobs(logits, 7, 9, (7, 8), (9,))
  ref = jax.nn.log_softmax(logits, -1)
  np.testing.assert_allclose(out["logp_yes"], ref[:, 7], atol=1e-6)
  np.testing.assert_allclose(out["logp_yes_variants"], np.log(np.exp(ref[:, 7]) + np.exp(ref[:, 8])), atol=1e-6)
  np.testing.assert_allclose(out["logp_no_variants"], ref[:, 9], atol=1e-6)


@pytest.fixture(scope="module")
def docs(data_dir):
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz") as f:
    texts = [json.loads(line)["text"] for line in f][:12]
  return texts + ["Short.", "Yes or no?"]


@pytest.fixture(scope="module")
def smol_tok():
  files = hf_tokenizer.tokenizer_files(paths.smollm2_gguf())
  fmt = ap.chat_format_from_template(functools.partial(hf_tokenizer.render_chat, files), 128)
  return ap.HFPromptTokenizer.from_files(files), fmt


def _mesh(kind):
  if kind == "1":
    return partitioning.make_mesh(partitioning.MeshConfig(), jax.devices()[:1])
  return partitioning.make_mesh(partitioning.MeshConfig(data=4, model=2))


LLAMA = llama.LlamaConfig(
  vocab_size=49152,
  hidden_size=32,
  intermediate_size=64,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  init_std=0.3,
  tie_word_embeddings=False,
)


def random_params(module, *init_args, std, seed=0):
  """Random params in ``module``'s tree, drawn with numpy (eager jax init compiles every random op: ~10 s);
  norm scales are ones as in a fresh model."""
  import flax.linen as nn

  shapes = jax.eval_shape(lambda: nn.unbox(module.init(jax.random.PRNGKey(0), *init_args)["params"]))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if path[-1].key == "scale":
      return np.ones(leaf.shape, np.float32)
    return (rng.standard_normal(leaf.shape) * std).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _scores(records):
  return np.array([[r.logp_yes, r.logp_no, r.logp_yes_variants, r.logp_no_variants] for r in records])


def _sharpen(kernel, ids, scale):
  """Output projection of a random scorer whose P("yes") spans (0, 1): the answer ids' columns scaled, every
  other column zero (their logits are exactly 0, so the comparison is about the network body, not about
  float32 rounding of 49k large random logits)."""
  kernel = np.asarray(kernel)
  out = np.zeros_like(kernel)
  out[:, list(ids)] = kernel[:, list(ids)] * scale
  return out


def _assert_same(a, b):
  """Scores (probabilities, the issue's <= 1e-5) and log-probs (relative, away from 0) agree."""
  np.testing.assert_allclose(np.exp(a), np.exp(b), atol=1e-5, rtol=0)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_decoder_only_invariant_to_mesh_batch_and_buckets(smol_tok, docs):
  tok, fmt = smol_tok
  params = random_params(llama.Llama(LLAMA), jnp.ones((1, 8), jnp.int32), std=LLAMA.init_std, seed=4)
  a = ap.answer_ids(tok)
  params["lm_head"]["kernel"] = _sharpen(params["lm_head"]["kernel"], {*a.yes_variants, *a.no_variants}, 8.0)
  module = llama.Llama(LLAMA)
  settings = [
    ("1", sc.BatchConfig(max_batch=1, buckets=(128,))),
    ("8", sc.BatchConfig(max_batch=8, buckets=(64, 128))),
    ("1", sc.BatchConfig(max_batch=4, buckets=(96, 128))),
  ]
  results = []
  for mesh_kind, bcfg in settings:
    scorer = sc.AskLlmScorer("decoder_only", module, params, tok, fmt, mesh=_mesh(mesh_kind), batch=bcfg)
    recs = scorer.score(docs)
    results.append(_scores(recs))
    assert [r.tokens for r in recs] == [len(ap.prompt_ids(d, tok, fmt).ids) for d in docs]
    assert any(r.truncated for r in recs) and not all(r.truncated for r in recs)
    np.testing.assert_allclose([r.score for r in recs], np.exp(results[-1][:, 0]), rtol=1e-6)
  p_yes = np.exp(results[0][:, 0])
  assert p_yes.max() - p_yes.min() > 0.3, p_yes  # P("yes") varies widely: the comparison means something
  for other in results[1:]:
    _assert_same(other, results[0])
  # equal to an unpadded full forward of the same prompt (last position of __call__'s logits)
  for i in (0, len(docs) - 1):
    ids = jnp.asarray([ap.prompt_ids(docs[i], tok, fmt).ids], jnp.int32)
    logp = jax.nn.log_softmax(module.apply({"params": params}, ids)[0, -1])
    yes, no = ap.answer_ids(tok).yes, ap.answer_ids(tok).no
    _assert_same(results[0][i, :2], np.array([logp[yes], logp[no]]))


def test_encoder_decoder_invariant_and_equal_to_full_forward(data_dir, docs):
  tok = ap.SentencePiecePromptTokenizer.from_file(str(data_dir / "tokenizers/c4-32768.model"))
  fmt = ap.ChatFormat(max_length=128, append_eos=True)
  cfg = t5.T5Config(
    vocab_size=32768, d_model=16, num_heads=2, head_dim=8, d_ff=32, num_encoder_layers=2, num_decoder_layers=2
  )
  module = t5.T5(cfg)
  ex = jnp.ones((1, 8), jnp.int32)
  params = random_params(module, ex, ex, std=1.0)  # a far-from-uniform random scorer
  a = ap.answer_ids(tok)
  runs = []
  for mesh_kind, bcfg in [
    ("1", sc.BatchConfig(max_batch=1, buckets=(128,))),
    ("8", sc.BatchConfig(max_batch=8, buckets=(32, 128))),
  ]:
    scorer = sc.AskLlmScorer(
      "encoder_decoder", module, params, tok, fmt, mesh=_mesh(mesh_kind), batch=bcfg, variants=False
    )
    recs = scorer.score(docs)
    assert recs[0].logp_yes_variants is None
    runs.append(np.array([[r.logp_yes, r.logp_no] for r in recs]))
  assert runs[0][:, 0].std() > 0.5, runs[0][:, 0]  # log P("yes") varies across documents
  _assert_same(runs[1], runs[0])
  for i in (0, 3):
    ids = jnp.asarray([ap.prompt_ids(docs[i], tok, fmt).ids], jnp.int32)
    logits = module.apply({"params": params}, ids, jnp.zeros((1, 1), jnp.int32))[0, 0]
    logp = jax.nn.log_softmax(logits)
    _assert_same(runs[0][i], np.array([logp[a.yes], logp[a.no]]))


def test_scorer_errors(smol_tok):
  tok, fmt = smol_tok
  params = random_params(llama.Llama(LLAMA), jnp.ones((1, 8), jnp.int32), std=0.02)
  with pytest.raises(ValueError, match="'encoder_only'"):
    sc.AskLlmScorer("encoder_only", llama.Llama(LLAMA), params, tok, fmt)
  with pytest.raises(ValueError, match="largest bucket 64 < max_length 128"):
    sc.AskLlmScorer("decoder_only", llama.Llama(LLAMA), params, tok, fmt, batch=sc.BatchConfig(buckets=(64,)))
