"""Id lists and seqio task variants filtering a real base task (C4 sample) by id."""

import pytest
import seqio

import tokensift.tasks
from tokensift.selection import variants


def _val_ids(n=30):
  task = seqio.get_mixture_or_task("c4_en_raw")
  ds = task.source.get_dataset("validation", shuffle=False).take(n)
  return [ex["id"].decode() for ex in ds.as_numpy_iterator()]


def test_id_list_round_trip_and_errors(tmp_path):
  ids = ["c4-a__1", "owm:https://x.org/q?a=1 b", "ü-id"]
  p = variants.write_id_list(tmp_path / "sub" / "ids.txt", ids)
  assert variants.read_id_list(p) == ids
  assert p.read_bytes() == "".join(i + "\n" for i in ids).encode("utf-8")
  with pytest.raises(ValueError, match="'a\\\\nb'"):
    variants.write_id_list(tmp_path / "bad.txt", ["a\nb"])
  with pytest.raises(ValueError, match="twice"):
    variants.write_id_list(tmp_path / "bad.txt", ["a", "a"])
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    variants.read_id_list(tmp_path / "nope.txt")
  variants.write_id_list(p, ["z"])  # rewritten file is re-read, not served from the cache
  assert variants.read_id_list(p) == ["z"]


def test_variant_names():
  assert variants.variant_name("c4_en_raw", "askllm", 20) == "c4_en_askllm_r20"
  assert variants.variant_name("c4_en_raw_smollm2", "density", 10) == "c4_en_density_r10_smollm2"
  assert variants.variant_name("mytask", "askllm", 2.5) == "mytask_askllm_r2p5"


def test_variant_keeps_exactly_the_listed_documents(tmp_path, data_dir):
  tokensift.tasks.register_all()
  ids = _val_ids()
  keep = ids[::4] + ["not-a-real-id"]
  path = variants.write_id_list(tmp_path / "ids.txt", keep)
  task = variants.register_variant("c4_en_askllm_r20", "c4_en_raw", path)
  assert seqio.get_mixture_or_task("c4_en_askllm_r20") is task
  ds = task.get_dataset({"targets": 64}, split="validation", shuffle=False)
  got = [ex for ex in ds.as_numpy_iterator()]
  assert sorted(ex["id"].decode() for ex in got) == sorted(ids[::4])
  base = seqio.get_mixture_or_task("c4_en_raw").get_dataset({"targets": 64}, split="validation", shuffle=False)
  base_by_id = {ex["id"].decode(): ex["targets"].tolist() for ex in base.take(30).as_numpy_iterator()}
  for ex in got:  # same tokenization as the base task
    assert ex["targets"].tolist() == base_by_id[ex["id"].decode()]
  # a new selection re-registers the same name
  variants.write_id_list(tmp_path / "ids2.txt", ids[:2])
  task2 = variants.register_variant("c4_en_askllm_r20", "c4_en_raw", tmp_path / "ids2.txt")
  got2 = [
    ex["id"].decode()
    for ex in task2.get_dataset({"targets": 64}, split="validation", shuffle=False).as_numpy_iterator()
  ]
  assert sorted(got2) == sorted(ids[:2])


def test_variant_on_files_task_and_empty_list(tmp_path, data_dir):
  tokensift.tasks.register_all()
  src = seqio.get_mixture_or_task("owm_raw_smollm2").source
  ids = [ex["id"].decode() for ex in src.get_dataset("train", shuffle=False).take(5).as_numpy_iterator()]
  tasks = variants.register_variants(
    "owm_raw_smollm2",
    "density",
    {10: variants.write_id_list(tmp_path / "a.txt", ids[1:3]), 20: variants.write_id_list(tmp_path / "b.txt", [])},
  )
  assert [t.name for t in tasks] == ["owm_density_r10_smollm2", "owm_density_r20_smollm2"]
  got = [
    ex["id"].decode() for ex in tasks[0].get_dataset({"targets": 32}, split="train", shuffle=False).as_numpy_iterator()
  ]
  assert got == ids[1:3]
  assert list(tasks[1].get_dataset({"targets": 32}, split="train", shuffle=False).as_numpy_iterator()) == []


def test_variant_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.txt"):
    variants.register_variant("x_v", "c4_en_raw", tmp_path / "missing.txt")
  p = variants.write_id_list(tmp_path / "ids.txt", ["a"])
  with pytest.raises(ValueError, match="'no_such_task'"):
    variants.register_variant("x_v", "no_such_task", p)


def test_selection_dir_and_env_registration(tmp_path, monkeypatch, data_dir):
  tokensift.tasks.register_all()
  ids = _val_ids(10)
  sel = tmp_path / "selections"
  variants.write_id_list(sel / "askllm_r20.txt", ids[:2])
  variants.write_id_list(sel / "askllm20_density_r2p5.txt", ids[2:3])
  (sel / "notes.txt").write_text("not an id list name")
  tasks = variants.register_selection_dir("c4_en_raw", sel)
  assert sorted(t.name for t in tasks) == ["c4_en_askllm20_density_r2p5", "c4_en_askllm_r20"]
  monkeypatch.setenv(variants.SELECTIONS_ENV, f"c4_en_raw_smollm2={sel}")
  seqio.TaskRegistry.reset()
  names = tokensift.tasks.register_all()  # the env registrar runs with every register_all
  assert {"c4_en_askllm_r20_smollm2", "c4_en_askllm20_density_r2p5_smollm2"} <= set(names)
  task = seqio.get_mixture_or_task("c4_en_askllm_r20_smollm2")
  got = [
    ex["id"].decode() for ex in task.get_dataset({"targets": 16}, split="validation", shuffle=False).as_numpy_iterator()
  ]
  assert sorted(got) == sorted(ids[:2])
  monkeypatch.setenv(variants.SELECTIONS_ENV, "no-equals-sign")
  with pytest.raises(ValueError, match="'no-equals-sign'"):
    variants.register_from_env()
  monkeypatch.setenv(variants.SELECTIONS_ENV, f"c4_en_raw={tmp_path / 'absent'}")
  with pytest.raises(FileNotFoundError, match="absent"):
    variants.register_from_env()


def _graph_bytes(ds) -> int:
  """Size of the dataset's serialized GraphDef (what tf.data service, checkpoints and graph-mode launches hold)."""
  return len(ds._as_serialized_graph().numpy())


def test_variant_with_ten_million_ids_keeps_the_graph_small(tmp_path, data_dir):
  """10^7 decoy ids plus every 7th C4 validation id, streamed through write_id_list: the variant yields exactly
  the listed C4 documents, and its graph holds the id file's path, not the ids (same size as a 1-id list)."""
  tokensift.tasks.register_all()
  ids = _val_ids(200)
  chosen = ids[::7]
  at = {i * (10_000_000 // len(chosen)): doc_id for i, doc_id in enumerate(chosen)}  # spread over the list

  def stream():
    for i in range(10_000_000):
      if i in at:
        yield at[i]
      yield f"c4-decoy-{i}"

  big = variants.write_id_list(tmp_path / "askllm_r20.txt", stream())
  assert big.stat().st_size > 10_000_000 * 10
  task = variants.register_variant("c4_en_askllm_r20_big", "c4_en_raw", big)
  ds = task.get_dataset({"targets": 16}, split="validation", shuffle=False)
  assert sorted(ex["id"].decode() for ex in ds.as_numpy_iterator()) == sorted(chosen)
  small = variants.write_id_list(tmp_path / "askllm_r1.txt", chosen[:1])
  one = variants.register_variant("c4_en_askllm_r1_small", "c4_en_raw", small)
  base = seqio.get_mixture_or_task("c4_en_raw").get_dataset({"targets": 16}, split="validation", shuffle=False)
  size_big = _graph_bytes(ds)
  size_one = _graph_bytes(one.get_dataset({"targets": 16}, split="validation", shuffle=False))
  assert abs(size_big - size_one) < 64  # only the file name differs
  # The filter adds a table op, its file name and one lookup (~2.4 KB measured; the base graph is ~850 KB, most
  # of it the SentencePiece model). The ids as a tf.constant added ~20 MB per million ids.
  assert size_big - _graph_bytes(base) < 20_000


def test_id_list_streams_and_rejects_repeats_late_in_the_stream(tmp_path):
  n = 200_000
  with pytest.raises(ValueError, match="'doc-17' appears twice"):
    variants.write_id_list(tmp_path / "ids.txt", (f"doc-{i}" if i < n else "doc-17" for i in range(n + 1)))
  assert list(tmp_path.iterdir()) == []  # no list, no temp file
  p = variants.write_id_list(tmp_path / "ids.txt", (f"doc-{i}" for i in range(n)))
  assert next(variants.iter_id_list(p)) == "doc-0" and len(variants.read_id_list(p)) == n


def test_hand_written_id_list_errors_name_the_file(tmp_path, data_dir):
  tokensift.tasks.register_all()
  for name, text, problem in [("blank.txt", "a\n\nb\n", "empty line"), ("twice.txt", "a\nb\na\n", "Key a")]:
    (tmp_path / name).write_text(text)
    task = variants.register_variant("c4_en_bad_r1", "c4_en_raw", tmp_path / name)
    with pytest.raises(ValueError, match=f"{name}.*{problem}"):
      task.get_dataset({"targets": 16}, split="validation", shuffle=False)
  (tmp_path / "crlf.txt").write_bytes(b"x\r\ny\r\n")  # Windows line ends: ids without the \r
  assert variants.read_id_list(tmp_path / "crlf.txt") == ["x", "y"]
  import tensorflow as tf

  assert variants.id_table(tmp_path / "crlf.txt").lookup(tf.constant(["x", "y", "x\r"])).numpy().tolist() == [0, 1, -1]


def test_variants_on_a_non_local_file_system(data_dir):
  """An id list and a selection directory on TensorFlow's in-memory file system (``ram://``), which goes through
  tf.io.gfile exactly as ``gs://`` does."""
  tokensift.tasks.register_all()
  ids = _val_ids(10)
  path = variants.write_id_list("ram://tokensift-test/sel/askllm_r20.txt", ids[3:6])
  assert path == "ram://tokensift-test/sel/askllm_r20.txt"
  assert variants.read_id_list(path) == ids[3:6]
  tasks = variants.register_selection_dir("c4_en_raw", "ram://tokensift-test/sel")
  assert [t.name for t in tasks] == ["c4_en_askllm_r20"]
  got = [
    ex["id"].decode()
    for ex in tasks[0].get_dataset({"targets": 16}, split="validation", shuffle=False).as_numpy_iterator()
  ]
  assert sorted(got) == sorted(ids[3:6])
  with pytest.raises(FileNotFoundError, match="ram://tokensift-test/none.txt"):
    variants.register_variant("c4_en_x_r1", "c4_en_raw", "ram://tokensift-test/none.txt")
