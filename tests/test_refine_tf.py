"""Refinement inside tf.data (seqio preprocessors) and the registered rule tasks, on the real samples."""

import pytest
import seqio
import tensorflow as tf

import tokensift.tasks
from tokensift.refine import executor, rules
from tokensift.refine import tasks as refine_tasks
from tokensift.refine import tf_preprocessors as tfp

TEXTS = [
  "\n".join(f"Line {i} of the first document has the words that we need." for i in range(6)),
  "Too short.",
  "\n".join(["Home | About | Contact"] + [f"The second document has line {i} with the words." for i in range(6)]),
  "",
]
DOC_PROGRAMS = ["keep_doc()", "keep_doc()", "untouch_doc() # not drop", "drop_doc()"]
CHUNK_PROGRAMS = ["remove_lines(0, 1)\nnormalize('Line', 'Row')", "keep_chunk()", "remove_lines(start=0, end=0)", ""]


def _dataset(texts=TEXTS):
  return tf.data.Dataset.from_tensor_slices(
    {
      "id": [f"d{i}" for i in range(len(texts))],
      "text": texts,
      "doc_program": DOC_PROGRAMS[: len(texts)],
      "chunk_program": CHUNK_PROGRAMS[: len(texts)],
    }
  )


@pytest.mark.parametrize("batch_size", [1, 3])
def test_execute_programs_matches_the_executor(batch_size):
  out = list(tfp.execute_programs(_dataset(), batch_size=batch_size).as_numpy_iterator())
  expected = [
    (f"d{i}", executor.execute(t, d, c)) for i, (t, d, c) in enumerate(zip(TEXTS, DOC_PROGRAMS, CHUNK_PROGRAMS))
  ]
  expected = [(i, r) for i, r in expected if r.kept]
  assert [e["id"].decode() for e in out] == [i for i, _ in expected] == ["d0", "d2"]
  assert [e["text"].decode() for e in out] == [r.text for _, r in expected]
  assert [e["raw_text"].decode() for e in out] == [TEXTS[0], TEXTS[2]]
  assert out[0]["text"].decode().startswith("Row 2 of")


def test_refine_with_rules_matches_the_rule_programmer_and_keeps_dropped_on_request():
  out = list(
    tfp.refine_with_rules(
      _dataset(), keep_programs=True, drop_dropped=False, config=rules.RuleConfig(min_doc_words=5)
    ).as_numpy_iterator()
  )
  assert len(out) == 4
  for ex, text in zip(out, TEXTS):
    rp = rules.write_program(text, rules.RuleConfig(min_doc_words=5))
    r = executor.execute(text, rp.doc_program, rp.chunk_program)
    assert ex["text"].decode() == r.text
    assert (ex["doc_program"].decode(), ex["chunk_program"].decode()) == (rp.doc_program, rp.chunk_program)
  assert "Home |" not in out[2]["text"].decode() and out[2]["text"]


def test_invalid_utf8_bytes_pass_through():
  bad = b"\xff\xfe broken bytes " + " ".join(["word"] * 30).encode() + b"\xc3"
  ds = tf.data.Dataset.from_tensor_slices(
    {
      "id": ["x"],
      "text": tf.constant([bad]),
      "doc_program": ["keep_doc()"],
      "chunk_program": ["normalize('broken', 'fixed')"],
    }
  )
  out = list(tfp.execute_programs(ds).as_numpy_iterator())
  assert out[0]["text"] == bad.replace(b"broken", b"fixed")


def _python_rules(source, split, cfg):
  kept = []
  for ex in source.get_dataset(split, shuffle=False).as_numpy_iterator():
    text = ex["text"].decode()
    rp = rules.write_program(text, cfg)
    r = executor.execute(text, rp.doc_program, rp.chunk_program)
    if r.kept:
      kept.append((ex["id"].decode(), r.text))
  return kept


@pytest.mark.parametrize(
  "name,split,cfg",
  [
    ("c4_en_prox_rules", "validation", rules.RuleConfig.web()),
    ("owm_prox_rules", "validation", rules.RuleConfig.math()),
  ],
)
def test_registered_rule_tasks(data_dir, name, split, cfg):
  assert name in tokensift.tasks.register_all()
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(sequence_length={"targets": 64}, split=split, shuffle=False)
  got = [(e["id"].decode(), e["text"].decode(), e["raw_text"].decode(), e["targets"]) for e in ds.as_numpy_iterator()]
  want = _python_rules(task.source, split, cfg)
  assert [(i, t) for i, t, _, _ in got] == want
  assert 0 < len(got) <= sum(1 for _ in task.source.get_dataset(split, shuffle=False))
  vocab = task.output_features["targets"].vocabulary
  i, text, raw, targets = got[0]
  assert targets.tolist() == (list(vocab.encode(text)) + [vocab.eos_id])[:64] and raw  # seqio trims to length


def test_rule_tasks_survive_registry_reset():
  seqio.TaskRegistry.reset()
  names = tokensift.tasks.register_all()
  assert {"c4_en_prox_rules", "owm_prox_rules", "c4_en_prox_rules_smollm2", "owm_prox_rules_smollm2"} <= set(names)
  assert refine_tasks.register_rule_tasks() == [n for n in names if "prox_rules" in n]
