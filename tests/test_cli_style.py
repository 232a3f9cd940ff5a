"""One CLI style across subcommands: defaults in --help, the same flag for the same idea, user errors as one
line (gin syntax errors included), and a quiet start-up unless --verbose."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tokensift import cli

ROOT = Path(__file__).resolve().parents[1]
PARSER = cli.build_parser()
COMMANDS = cli._subparsers(PARSER)


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
  return {s: a for a in p._actions for s in a.option_strings}


# idea -> (the one spelling, spellings that must not exist in any subcommand)
SAME_IDEA = {
  "where the command writes": ("--out", ("--out_dir", "--output", "--output_dir", "--output_path")),
  "tokens per model batch": ("--tokens_per_batch", ("--batch_tokens", "--max_tokens_per_batch")),
  "rows per model batch": ("--max_batch", ("--batch_size", "--max_batch_size")),
  "device mesh": ("--mesh_data", ("--mesh", "--data_parallel", "--mesh_shape")),
  "tokenizer override": ("--vocab", ("--tokenizer", "--vocabulary")),
  "progress bars off": ("--no_progress", ("--quiet", "--progress", "--no_bar")),
  "document id field": ("--id_field", ("--id_from", "--id_key", "--id")),
  "SLM ratio": ("--slm_ratio", ("--ratio", "--selection_ratio")),
}


SAME_DEFAULT = ("--mesh_data", "--no_progress", "--id_field", "--slm_ratio")


@pytest.mark.parametrize("idea", sorted(SAME_IDEA))
def test_same_idea_same_flag_in_every_subcommand(idea):
  flag, others = SAME_IDEA[idea]
  having = [name for name, p in COMMANDS.items() if flag in _options(p)]
  assert having, f"no subcommand has {flag}"
  for name, p in COMMANDS.items():
    bad = sorted(set(others) & set(_options(p)))
    assert not bad, f"tokensift {name} spells {idea!r} as {bad}; use {flag}"
  if flag == "--mesh_data":  # the pair travels together
    assert all("--mesh_model" in _options(COMMANDS[n]) for n in having)
  defaults = {name: _options(COMMANDS[name])[flag].default for name in having}
  if flag in SAME_DEFAULT:  # batch sizes are the model's (a scorer's 64 rows, a generator's 8 prompts)
    assert len({repr(d) for d in defaults.values()}) == 1, f"{flag} defaults differ: {defaults}"


def test_argparse_lives_only_in_the_cli_package():
  """Method packages and the core expose functions and configs; every flag is defined in ``tokensift.cli`` (one
  module per command, shared flags in ``tokensift.cli.args``), so each idea has one definition."""
  roots = ["refine", "selection", "rho1", "trainer", "models", "tasks", "tokensift"]
  files = [f for r in roots for f in (ROOT / r).rglob("*.py") if "cli" not in f.relative_to(ROOT).parts]
  assert len(files) > 50
  offenders = [
    str(f.relative_to(ROOT)) for f in files if "import argparse" in f.read_text() or ".add_argument(" in f.read_text()
  ]
  assert not offenders, f"argparse outside tokensift/cli: {offenders}"
  from tokensift.cli import COMMAND_MODULES

  assert all(m.__name__.startswith("tokensift.cli.") for m in COMMAND_MODULES)
  for flag in ("--no_progress", "--distributed", "--runner", "--mesh_data", "--input", "--gin_file"):
    defined = [f.name for f in (ROOT / "tokensift" / "cli").glob("*.py") if f'"{flag}"' in f.read_text()]
    assert defined == ["args.py"], (flag, defined)


def test_model_dir_only_where_it_means_t5x_model_dir():
  having = sorted(n for n, p in COMMANDS.items() if "--model_dir" in _options(p))
  assert having == ["token-view", "train"]
  for n in having:
    assert "MODEL_DIR" in _options(COMMANDS[n])["--model_dir"].help


def test_document_commands_share_input_flags_and_defaults():
  doc_commands = ["score", "embed", "refine"]
  for flag in ("--id_field", "--text_field", "--shard", "--split", "--out", "--no_progress"):
    defaults = {n: _options(COMMANDS[n])[flag].default for n in doc_commands}
    assert len(set(defaults.values())) == 1, (flag, defaults)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_every_default(name):
  p = COMMANDS[name]
  assert issubclass(p.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
  text = " ".join(p.format_help().split())
  for a in p._actions:
    if a.option_strings and cli._shows_default(a.default) and a.dest != "help":
      assert f"(default: {a.default})" in text, f"tokensift {name} --help: {a.option_strings[0]} hides its default"


def test_gin_syntax_error_in_pipeline_is_one_line(tmp_path, capsys):
  bad = tmp_path / "bad.gin"
  bad.write_text(
    "from __gin__ import dynamic_registration\nfrom tokensift.pipeline import config\n"
    "config.CorpusConfig.max_docs = 4\nconfig.LMConfig.seq_len = (1,\n"
  )
  rc = cli.main(["pipeline", "--run_dir", str(tmp_path / "run"), "--gin_file", str(bad)])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1, err
  assert err[0].startswith("tokensift pipeline: error: gin syntax error in gin file") and "bad.gin" in err[0]
  rc = cli.main(["pipeline", "--run_dir", str(tmp_path / "run"), "--gin", "tc.TrainConfig.train_steps = = 3"])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and "--gin bindings, line 1" in err[0], err
  # gin's other errors span lines too (file, line, content): printed as one
  rc = cli.main(["pipeline", "--run_dir", str(tmp_path / "run"), "--gin", "config.NoSuchConfig.x = 3"])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and "NoSuchConfig" in err[0], err
  assert not (tmp_path / "run").exists()


def _tokensift(*args, cwd=ROOT):
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
  return subprocess.run(
    [sys.executable, "-m", "tokensift.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
  )


BANNER = ("cuInit", "oneDNN", "cuda drivers", "absl::InitializeLog")


def test_train_gin_syntax_error_is_one_line_and_start_up_is_quiet(tmp_path):
  """The console entry in its own process: exit 2, one line on stderr, no TF/XLA banner and no traceback."""
  bad = tmp_path / "bad.gin"
  bad.write_text("include 'gin_configs/local/owm_slm_tiny.gin'\nTRAIN_STEPS = [3\n")
  r = _tokensift("train", "--gin_file", str(bad), "--model_dir", str(tmp_path / "run"))
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1, r.stderr
  assert lines[0].startswith("tokensift train: error: gin syntax error in gin file") and "bad.gin" in lines[0]


def test_default_start_up_is_quiet_and_verbose_restores_it():
  quiet = _tokensift("tasks")
  assert quiet.returncode == 0 and "c4_en_raw" in quiet.stdout
  assert not [line for line in quiet.stderr.splitlines() if any(b in line for b in BANNER)], quiet.stderr
  loud = _tokensift("--verbose", "tasks")
  assert loud.returncode == 0 and loud.stdout == quiet.stdout
  # TensorFlow's start-up notices (oneDNN on x86; cuda-driver / cuInit lines on machines with CUDA libraries)
  assert any(b in loud.stderr for b in BANNER), loud.stderr


def test_quiet_drops_start_up_notices_but_keeps_user_warnings(caplog):
  from absl import logging as absl_logging
  from tokensift.core import quiet

  quiet.silence_logging_env()
  with caplog.at_level("WARNING", logger="absl"):
    absl_logging.warning("T5 library uses PAD_ID=0, which is different from the sentencepiece vocabulary")
    absl_logging.warning("%s: skipped %d bad rows: %s", "owm_raw", 3, {"empty": 3})
  assert [r.getMessage() for r in caplog.records] == ["owm_raw: skipped 3 bad rows: {'empty': 3}"]
