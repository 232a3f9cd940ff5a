"""The perplexity selector: every mode and rate against a NumPy reference (arrays and job records), and the job
path on real C4 documents: reference losses -> score file -> id lists (one process and Beam) -> seqio variants
(plain, span corruption, mixture) that read back exactly the chosen ids -> DENSITY's pool."""

import math

import numpy as np
import pytest
import seqio

from tokensift.rho1 import reference_losses as rl
from tokensift.selection import perplexity as ppl
from tokensift.selection import select_job, topk, variants
from tokensift.selection.keep import PAPER_RATES, keep_count

from test_feature_converters import tiny_llama


def _reference(x, rate, mode):
  """The definition, written out: sort ascending (stable), keep the low / middle / high slice of k."""
  n = len(x)
  k = int(math.floor(n * rate / 100 + 0.5)) or 1
  order = np.argsort(x, kind="stable")
  start = {"low": 0, "middle": (n - k) // 2, "high": n - k}[mode]
  return np.sort(order[start : start + k])


@pytest.mark.parametrize("n", [1, 2, 7, 40, 145])
@pytest.mark.parametrize("mode", ppl.MODES)
def test_select_indices_matches_numpy_every_rate(n, mode):
  rng = np.random.default_rng(n)
  x = rng.normal(size=n).round(1)  # rounding makes ties
  for rate in (*PAPER_RATES, 33.0, 50.0, 100.0):
    np.testing.assert_array_equal(ppl.select_indices(x, rate, mode), _reference(x, rate, mode))
  assert sorted(ppl.middle_entry_rank(n)) == list(range(1, n + 1))


def test_select_indices_errors():
  with pytest.raises(ValueError, match="mode='median'"):
    ppl.select_indices([1.0, 2.0], 10, "median")
  with pytest.raises(ValueError, match=r"1 log_ppl values are NaN/inf \(positions \[1\]\)"):
    ppl.select_indices([1.0, math.nan], 10, "low")
  with pytest.raises(ValueError, match="rate 0"):
    ppl.select_indices([1.0, 2.0], 0, "low")


def test_records_rank_like_the_reference_ties_by_id():
  rng = np.random.default_rng(3)
  ids = [f"d{i:03d}" for i in rng.permutation(60)]
  losses = [rng.gamma(2.0, 1.0, size=rng.integers(1, 20)).round(1).tolist() for _ in ids]
  losses[5] = losses[9] = [1.0, 2.0]  # an exact tie
  recs = [{"id": i, "ref_losses": ls} for i, ls in zip(ids, losses)] + [
    {"id": "empty", "ref_losses": []},
    {"id": ids[0], "ref_losses": [99.0]},
  ]
  stats = {}
  out = ppl.perplexity_records(recs, stats=stats)
  assert stats == {"repeated_ids": 1, "no_tokens": 1, "documents": 61}
  by_id = dict(zip(ids, ppl.log_perplexity(losses)))
  sorted_ids = sorted(ids)
  x = np.array([by_id[i] for i in sorted_ids])
  for mode in ppl.MODES:
    for rate in PAPER_RATES:
      chosen, unranked = topk.rank(out, ppl.method_name(mode))
      assert unranked == 1
      got = sorted(chosen[: keep_count(len(chosen), rate)])
      assert got == sorted(sorted_ids[i] for i in _reference(x, rate, mode))


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory, data_dir):
  model, params = tiny_llama(seed=2)
  scorer = rl.ReferenceScorer(model, params, batch_tokens=512, max_length=48, length_multiple=16)
  out = tmp_path_factory.mktemp("ppl_ref")
  rl.compute_reference_losses(
    task="c4_en_raw_smollm2",
    out_dir=out,
    splits=("validation",),
    max_docs=30,
    max_length=48,
    scorer=scorer,
    progress=False,
  )
  return out


def test_job_lists_variants_and_density_pool(ref_dir, tmp_path):
  from tokensift.tasks import mixtures, span_corruption

  records = list(rl.read_reference_losses(ref_dir, "validation"))
  ids = [r["id"] for r in records]
  x = ppl.log_perplexity([r["ref_losses"] for r in records])
  scores, written = ppl.topk_from_reference_losses(
    ref_dir, "middle", (10, 20, 40), split="validation", out_dir=tmp_path / "sel"
  )
  assert scores == ref_dir / "perplexity_validation.parquet"
  for rate, (path, k, ranked) in written.items():
    assert path.name == f"ppl_middle_r{rate}.txt" and ranked == 30 and k == keep_count(30, rate)
    assert sorted(variants.read_id_list(path)) == sorted(ids[i] for i in ppl.select_indices(x, rate, "middle"))
  # Beam writes the same lists (order included)
  from tokensift.core.beam_util import LOCAL

  _, beam = ppl.topk_from_reference_losses(
    ref_dir, "middle", (10, 20, 40), split="validation", out_dir=tmp_path / "beam", runner=LOCAL
  )
  for rate, path in beam.items():
    assert variants.read_id_list(path) == variants.read_id_list(written[rate][0])
  # variants: plain, span corruption, mixture with the full corpus; they read back the chosen ids
  tasks = ppl.register_perplexity_variants(scores, "high", "c4_en_raw", (20,), out_dir=tmp_path / "high")
  assert [t.name for t in tasks] == ["c4_en_ppl_high_r20"]
  want = sorted(ids[i] for i in ppl.select_indices(x, 20, "high"))
  got = [
    ex["id"].decode()
    for ex in tasks[0].get_dataset({"targets": 32}, split="validation", shuffle=False).as_numpy_iterator()
  ]
  assert sorted(got) == want
  sc = span_corruption.span_corruption_variant("c4_en_ppl_high_r20")
  assert sc.name == "c4_en_ppl_high_r20_span_corruption"

  def count(task):  # span corruption cuts a long document into several examples
    return sum(
      1
      for _ in seqio.get_mixture_or_task(task).get_dataset(
        {"inputs": 64, "targets": 16}, split="validation", shuffle=False
      )
    )

  assert sc.preprocessors[0].__name__ == "filter_by_ids[ppl_high_r20.txt]" and count(sc.name) >= len(want)
  mix = mixtures.mix_with_full("c4_en_ppl_high_r20")
  assert mix.name == "c4_en_ppl_high_r20_mix50" and "c4_en_raw" in [t.name for t in mix.tasks]
  assert seqio.get_mixture_or_task("c4_en_ppl_high_r20_mix50") is mix
  # DENSITY's pool: the perplexity ranking's top fraction, like ASK-LLM
  from test_embed_job import c4_embed_dir  # the 200 C4 validation documents, embedded once per session

  sel = select_job.select(
    c4_embed_dir(),
    tmp_path / "dens",
    select_job.SelectConfig(rates=(5,), askllm_fraction=50, askllm_key="ppl_low"),
    askllm_scores=scores,
  )
  low_half = {ids[i] for i in ppl.select_indices(x, 50, "low")}
  assert sel.summary["pool"] == 15 and sel.summary["embedded_not_scored"] == 170
  chosen = variants.read_id_list(sel.lists[5][0])
  assert len(chosen) == 10 and set(chosen) <= low_half


def test_cli_topk_by_perplexity_writes_the_libraries_lists(ref_dir, tmp_path, capsys):
  """``tokensift topk REF_DIR --by perplexity --mode middle`` writes the lists the library writes (one process and
  ``--runner local``)."""
  from tokensift.cli import main

  _, want = ppl.topk_from_reference_losses(
    ref_dir, "middle", (10, 20, 40), split="validation", out_dir=tmp_path / "lib"
  )
  for extra, out in (([], "one"), (["--runner", "local", "--beam_workers", "1"], "beam")):
    assert (
      main(
        [
          "topk",
          str(ref_dir),
          "--by",
          "perplexity",
          "--mode",
          "middle",
          "--split",
          "validation",
          "--rates",
          "10,20,40",
          "--out",
          str(tmp_path / out),
          *extra,
        ]
      )
      == 0
    )
    printed = capsys.readouterr().out
    for rate, (path, k, _) in want.items():
      got = tmp_path / out / f"ppl_middle_r{rate}.txt"
      assert variants.read_id_list(got) == variants.read_id_list(path)
      assert f"rate {rate:g}%: {k} ids (middle perplexity)" in printed
