"""Refining-model inference: prompts as ProX builds them, batched greedy generation under the mesh, and the real
SmolLM2 GGUF writing (poor) programs that the executor survives."""

import dataclasses
import gzip
import json

import pytest

from tokensift import cli
from tokensift.core import docs, jobs, paths
from tokensift.models import llama, partitioning
from tokensift.refine import chunks as ck
from tokensift.refine import executor, job
from tokensift.refine import model_programmer as mp
from tokensift.core import hf_tokenizer


@pytest.fixture(scope="module")
def c4_texts(data_dir):
  with gzip.open(data_dir / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz", "rt") as f:
    return [json.loads(line)["text"] for line in f]


@pytest.fixture(scope="module")
def tiny(data_dir):
  """A tiny random Llama with SmolLM2's real tokenizer and chat template, on the 8-device mesh."""
  files = hf_tokenizer.tokenizer_files(paths.smollm2_gguf())
  cfg = llama.LlamaConfig(
    vocab_size=49152,
    hidden_size=16,
    intermediate_size=32,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    max_position_embeddings=512,
  )
  mesh = partitioning.make_mesh()
  assert mesh.shape["data"] == 8
  config = mp.ModelProgrammerConfig(
    max_new_tokens=6, doc_max_new_tokens=6, chunk_tokens=64, doc_prompt_tokens=96, batch_size=3
  )
  return mp.ModelProgrammer(llama.Llama(cfg), llama.init_params(cfg), files, config=config, mesh=mesh, name="tiny")


def test_prompts_follow_prox(tiny, c4_texts):
  text = max(c4_texts[:50], key=len)
  ids = tiny.doc_prompts([text])[0]
  assert len(ids) <= 96  # cut to the doc prompt budget ...
  rendered = tiny.tokenizer.decode(ids, skip_special_tokens=False)
  assert rendered.startswith(tiny._prefix) and rendered.endswith(tiny._suffix)  # ... inside the user turn
  assert ck.SYSTEM_PROMPT in rendered and text[:200] in rendered
  short = "A short document.\nWith two lines."
  assert tiny.tokenizer.decode(tiny.doc_prompts([short])[0], skip_special_tokens=False) == tiny._render(short)
  chunks = tiny.chunks(text)
  assert len(chunks) > 2 and all(c.tokens <= 64 or c.first_line == c.last_line for c in chunks)
  first = tiny.tokenizer.decode(tiny.prompt_ids(ck.chunk_prompt(chunks[1]), 10**6), skip_special_tokens=False)
  assert f"[doc]\n[{chunks[1].first_line:03d}]" in first and first.endswith(tiny._suffix)
  assert first.count("[/doc]") == 1


def test_llama2_chat_format_when_the_model_has_no_template(tiny):
  """ProX's refiners ship no chat template; ProX rendered prompts in the Llama-2 chat format."""
  files = dataclasses.replace(tiny.files, chat_template=None)
  prox = mp.ModelProgrammer(tiny.module, tiny.params, files, mesh=tiny.mesh, config=tiny.config)
  assert prox.chat_template == mp.LLAMA2
  assert prox._render("DOC") == "<s>[INST] <<SYS>>\n" + ck.SYSTEM_PROMPT + "\n<</SYS>>\n\nDOC [/INST]"
  ids = prox.prompt_ids(ck.chunk_prompt("[000]a line"), 100)
  assert prox.tokenizer.decode(ids, skip_special_tokens=False).endswith("[doc]\n[000]a line\n[/doc] [/INST]")


def test_batched_generation_matches_one_by_one(tiny, c4_texts):
  texts = [t for t in c4_texts[:12] if len(t) < 600][:5]
  prompts = tiny.doc_prompts(texts)
  batched = tiny.generate(prompts, 6)
  single = [tiny.generate([p], 6)[0] for p in prompts[:3]]
  assert batched[:3] == single
  assert all(isinstance(s, str) for s in batched)


def test_programs_from_a_random_model_run_through_the_job(tiny, c4_texts):
  texts = [t for t in c4_texts[:40] if len(t) < 700][:3]
  batch = [docs.Document(str(i), t) for i, t in enumerate(texts)]
  recs = job.refine_documents(batch, tiny, count_tokens=tiny.count_tokens)
  assert [r["id"] for r in recs] == ["0", "1", "2"]
  for rec, d in zip(recs, batch):
    again = executor.execute(d.text, rec["doc_program"], rec["chunk_program"])
    assert (again.text, again.kept) == (rec["text"], rec["kept"])
    assert rec["stats"]["tokens_before"] == tiny.count_tokens([d.text])[0]
  only_chunks = mp.ModelProgrammer(
    tiny.module,
    tiny.params,
    tiny.files,
    mesh=tiny.mesh,
    config=mp.ModelProgrammerConfig(stages="chunk", max_new_tokens=6, chunk_tokens=64, batch_size=3),
  )
  progs = only_chunks(texts[:2])
  assert all(p.doc_program is None and isinstance(p.chunk_program, str) for p in progs)
  with pytest.raises(ValueError, match="stages"):
    mp.ModelProgrammerConfig(stages="all")


def test_refine_bar_moves_per_document_as_generation_batches_finish(tiny, c4_texts, tmp_path, monkeypatch):
  """With a refining model the refine job's bar counts documents as the generation batch that finishes each one
  ends (jobs.advance, as score / embed / reference-losses do), inside one piece, not when the piece ends."""
  from tqdm.auto import tqdm

  from tokensift.models import generate as gen

  texts = [t for t in c4_texts[:80] if 150 < len(t) < 700][:6]
  seen = []  # the live bar before each generation batch
  real = gen.greedy_generate

  def spy(*args, **kwargs):
    seen.append(max((b.n for b in tqdm._instances), default=None))  # the job's live bar
    return real(*args, **kwargs)

  monkeypatch.setattr(gen, "greedy_generate", spy)
  rows = jobs.in_memory_rows([docs.Document(str(i), t) for i, t in enumerate(texts)])
  doc_only = mp.ModelProgrammer(
    tiny.module, tiny.params, tiny.files, mesh=tiny.mesh, config=dataclasses.replace(tiny.config, stages="doc")
  )
  res = job.run_refine(
    rows=rows, out_dir=tmp_path / "doc", programmer=doc_only, piece_size=64, total=6, count_tokens=tiny.count_tokens
  )
  assert res.stats["records"] == 6 and seen == [0, 3]  # one piece; batches of 3 documents

  seen.clear()
  chunk_only = mp.ModelProgrammer(
    tiny.module, tiny.params, tiny.files, mesh=tiny.mesh, config=dataclasses.replace(tiny.config, stages="chunk")
  )
  job.run_refine(
    rows=rows, out_dir=tmp_path / "chunk", programmer=chunk_only, piece_size=64, total=6, count_tokens=tiny.count_tokens
  )
  n_chunks = sum(len(chunk_only.chunks(t)) for t in texts)
  assert n_chunks > 6 and len(seen) == -(-n_chunks // 3)
  assert seen == sorted(seen) and seen[0] == 0 and 0 < seen[-1] < 6, seen  # moved inside the piece
  # every document counted exactly once, as its last chunk program is generated (outside a job: no bar)
  done, batches = [], len(seen)
  seen.clear()
  chunk_only.chunk_programs(texts + [""], done.append)
  assert len(seen) == batches and seen == [None] * batches  # the same batches, no job bar
  assert done[0] == 1 and sum(done) == 7 and len(done) == 1 + batches, done  # "" has no chunk: counted first


def test_real_smollm2_through_the_cli(c4_texts, tmp_path, capsys):
  """SmolLM2-135M-Instruct (GGUF) is no refiner: it chats back. The job still yields well-formed records."""
  texts = sorted((t for t in c4_texts if len(t.split()) > 60), key=len)[:2]
  inp = tmp_path / "in.jsonl"
  inp.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
  out = tmp_path / "out"
  assert (
    cli.main(
      [
        "refine",
        "--input",
        str(inp),
        "--out",
        str(out),
        "--programmer",
        str(paths.smollm2_gguf()),
        "--mesh_data",
        "1",
        "--mesh_model",
        "1",
        "--max_new_tokens",
        "8",
        "--doc_max_new_tokens",
        "8",
        "--max_batch",
        "2",
        "--no_progress",
      ]
    )
    == 0
  )  # one device: one short compile
  printed = capsys.readouterr().out
  assert "2 refined" in printed and "tokens:" in printed
  recs = jobs.read_records(out / "refine-00000-of-00001.jsonl")
  assert [r["id"] for r in recs] == ["d0", "d1"]
  for rec, text in zip(recs, texts):
    assert rec["doc_program"].strip() and rec["raw_text"] == text
    assert rec["kept"] == (rec["text"] != "")
    assert executor.execute(text, rec["doc_program"], rec["chunk_program"]).text == rec["text"]
    assert 0 < rec["stats"]["tokens_before"] < 200
  with pytest.raises(ValueError, match="needs 64 devices"):
    mp.mesh_from_spec("64,1")
