"""The new decoder families through their consumers: ``tokensift score``'s scorer (ASK-LLM) built from an HF
directory whose chat template is the checkpoint's own (``tokenizer_config.json`` string, list form, or
``chat_template.jinja``), scores equal to HF transformers' log-probabilities on the same prompt ids, and the Rho-1
reference scorer (``reference-losses``) equal to HF's per-token losses. SmolLM2's real tokenizer, real C4 text."""

import gzip
import json
import shutil

import numpy as np
import pytest

from tokensift.core import hf_tokenizer, paths
from tokensift.rho1.reference_losses import load_reference_scorer
from tokensift.selection import score_job

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_decoder_families import save_hf_family  # noqa: E402

SMOL_VOCAB = 49152
# Family-style templates, structured as the families' checkpoints ship them (BOS written by the template for
# Gemma and Mistral, ChatML with a default system turn for Qwen2/2.5).
GEMMA = (
  "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
  "{% endif %}{% for message in messages %}<start_of_turn>"
  "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n{{ message['content'] | trim }}"
  "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
QWEN = (
  "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You "
  "are a helpful assistant.<|im_end|>\n{% endif %}{% for message in messages %}<|im_start|>{{ message['role'] }}"
  "\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
  "{% endif %}"
)
MISTRAL = (
  "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}[INST] "
  "{{ message['content'] }} [/INST]{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
TEMPLATES = {  # family: (where the template is stored, template, expected prompt start, expected prompt end)
  "gemma": ("config", GEMMA, "<|im_start|><start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n"),
  "gemma2": ("config_list", GEMMA, "<|im_start|><start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n"),
  "qwen2": ("jinja", QWEN, "<|im_start|>system\nYou are Qwen", "<|im_end|>\n<|im_start|>assistant\n"),
  "mistral": ("config", MISTRAL, "<|im_start|>[INST] ", " [/INST]"),
}


def _c4_texts(data_dir, n, offset=0):
  with gzip.open(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
    return [json.loads(line)["text"] for i, line in zip(range(offset + n), f) if i >= offset]


def write_family_dir(family, directory):
  """A random tiny ``family`` model with SmolLM2's real tokenizer and a family-style chat template, stored where
  that family's checkpoints keep it; returns the HF model."""
  model = save_hf_family(
    family, directory, seed=7, overrides={"vocab_size": SMOL_VOCAB, "max_position_embeddings": 256}
  )
  files = hf_tokenizer.tokenizer_files(paths.smollm2_gguf())
  shutil.copy(files.tokenizer_json, directory / "tokenizer.json")
  where, template, _, _ = TEMPLATES[family]
  cfg = {
    "bos_token": None if family == "qwen2" else "<|im_start|>",
    "eos_token": "<|im_end|>",
    "add_bos_token": family != "qwen2",
  }
  if where == "config":
    cfg["chat_template"] = template
  elif where == "config_list":
    cfg["chat_template"] = [{"name": "tool_use", "template": "unused"}, {"name": "default", "template": template}]
  else:
    (directory / "chat_template.jinja").write_text(template)
    cfg["chat_template"] = "a stale template that chat_template.jinja overrides"
  (directory / "tokenizer_config.json").write_text(json.dumps(cfg))
  return model


@pytest.fixture(scope="module", params=sorted(TEMPLATES))
def family_dir(request, tmp_path_factory):
  directory = tmp_path_factory.mktemp(f"{request.param}_scorer")
  return request.param, write_family_dir(request.param, directory), directory


def test_askllm_scorer_uses_the_checkpoints_chat_template_and_matches_hf(family_dir, data_dir):
  family, model, directory = family_dir
  cfg = score_job.ScoreJobConfig(model=str(directory), max_length=160, min_bucket=32, max_batch=8)
  assert score_job.detect_architecture(directory) == "decoder_only"
  scorer = score_job.build_scorer(cfg)
  texts = _c4_texts(data_dir, 5, offset=200)
  built = scorer.prompts(texts)
  _, _, start, end = TEMPLATES[family]
  for p in built:
    text = scorer.tokenizer.decode(p.ids)
    assert text.startswith(start) and text.endswith(end), (family, text[:60], text[-60:])
    if family != "qwen2":  # one BOS: the template's; add_bos_token does not double it
      assert p.ids[0] == scorer.tokenizer.bos_id and p.ids[1] != scorer.tokenizer.bos_id
  records = scorer.score(texts)
  for p, rec in zip(built, records):
    with torch.no_grad():
      logits = model(torch.tensor([p.ids])).logits[0, -1].double()
    ref = torch.log_softmax(logits, -1)
    assert abs(rec.logp_yes - float(ref[scorer.answers.yes])) <= 1e-4, family
    assert abs(rec.logp_no - float(ref[scorer.answers.no])) <= 1e-4, family


def test_reference_losses_match_hf_token_losses(family_dir, data_dir):
  family, model, directory = family_dir
  scorer, loaded = load_reference_scorer(str(directory))
  assert loaded.config.family == family
  tok = hf_tokenizer.tokenizer_files(directory)
  from tokenizers import Tokenizer

  enc = Tokenizer.from_file(str(tok.tokenizer_json))
  seqs = [enc.encode(t, add_special_tokens=False).ids[:40] for t in _c4_texts(data_dir, 3, offset=300)]
  seqs = [s for s in seqs if len(s) > 5]
  ours = scorer(seqs)  # each token's loss given the ones before it, after the scorer's BOS (id 0) input
  for seq, got in zip(seqs, ours):
    with torch.no_grad():
      logits = model(torch.tensor([[scorer.bos_id] + seq])).logits[0, :-1].double()
    ref = torch.nn.functional.cross_entropy(logits, torch.tensor(seq), reduction="none").numpy()
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-4, err_msg=family)


def test_refiner_loads_gemma2_with_its_template_and_generates_as_hf(tmp_path, data_dir):
  """``ModelProgrammer.from_path`` (the refiner): the checkpoint's Gemma template (which refuses a system turn, as
  Gemma's do) wraps ProX's prompt with the system prompt folded into the user turn, and the refiner's batched
  cached generation equals HF ``generate`` greedy on the same prompt ids."""
  from tokensift.refine import chunks as ck
  from tokensift.refine import model_programmer as mp

  model = write_family_dir("gemma2", tmp_path)
  config = mp.ModelProgrammerConfig(
    max_new_tokens=6, doc_max_new_tokens=6, chunk_tokens=64, doc_prompt_tokens=96, batch_size=2
  )
  refiner = mp.ModelProgrammer.from_path(tmp_path, config=config)
  assert refiner.chat_template == GEMMA
  texts = [t for t in _c4_texts(data_dir, 30, offset=400) if len(t) < 800][:2]
  prompts = refiner.doc_prompts(texts)
  for ids in prompts:
    rendered = refiner.tokenizer.decode(ids, skip_special_tokens=False)
    assert rendered.startswith("<|im_start|><start_of_turn>user\n" + ck.SYSTEM_PROMPT + "\n\n")
    assert rendered.endswith("<end_of_turn>\n<start_of_turn>model\n")
  ours = refiner.generate(prompts, 6)
  for ids, got in zip(prompts, ours):
    with torch.no_grad():
      out = model.generate(
        torch.tensor([ids]),
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=refiner.eos_id,
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
      )
    new = out[0, len(ids) :].tolist()
    if refiner.eos_id in new:
      new = new[: new.index(refiner.eos_id)]
    assert got == refiner.tokenizer.decode(new, skip_special_tokens=True).strip(" ")
