"""``tokensift refine``: refine documents with ProX programs (rule programmer or a refining model).

Examples::

    tokensift refine --task c4_en_raw --split train --out runs/refine_c4
    tokensift refine --input 'owm-*.jsonl' --id_field url --profile math --out runs/refine_owm --shard 0/4 \\
      --format parquet
    tokensift refine --input 'gs://bucket/owm/*.parquet' --id_field url --out gs://bucket/refined --shard 7/64
    tokensift refine --task c4_en_raw --programmer /path/to/refining-model --out runs/refine_c4_model
    tokensift refine --input 'owm-*.jsonl' --id_field url --out runs/refine_owm --shards 8 --runner local
    tokensift refine --input 'gs://b/owm/*.parquet' --id_field url --out gs://b/refined --shards 256 \
        --runner DataflowRunner --beam_args "--project=P --region=R --temp_location=gs://b/tmp"
"""

from __future__ import annotations

import argparse
import sys

from tokensift.cli.args import (
  add_distributed_args,
  add_input_args,
  add_mesh_args,
  add_progress_arg,
  add_runner_args,
  beam_args_of,
  input_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
  p = sub.add_parser(
    "refine",
    help="refine documents with ProX programs (rules or a refining model)",
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  add_input_args(p, "refined", "output directory ({name}-*-of-*.jsonl|parquet + .done markers)")
  p.add_argument("--name", default="refine", help="output file stem")
  p.add_argument(
    "--programmer",
    default="rules",
    help="'rules' (the rule programmer) or the path of a Llama-family refining model "
    "(HF directory with config.json + safetensors, or a .gguf file)",
  )
  p.add_argument(
    "--profile",
    choices=["auto", "web", "math"],
    default="auto",
    help="rule profile; auto = math for OpenWebMath inputs (task owm_*, path with owm/openwebmath)",
  )
  p.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
  p.add_argument("--piece_size", type=int, default=256, help="documents per resumable piece")
  p.add_argument(
    "--vocab",
    default=None,
    help="count tokens before/after with this vocabulary (c4sp, smollm2, or a tokenizer file); "
    "default: the refining model's tokenizer, none for rules",
  )
  p.add_argument("--max_errors", type=int, default=2)
  p.add_argument("--min_words", type=int, default=10)
  p.add_argument("--min_keep_fraction", type=float, default=0.05)
  m = p.add_argument_group("refining model")
  m.add_argument("--max_new_tokens", type=int, default=256, help="per chunk program (ProX: 256)")
  m.add_argument("--doc_max_new_tokens", type=int, default=64, help="per doc-level program")
  m.add_argument("--chunk_tokens", type=int, default=1500, help="chunk budget in tokens (ProX: 1500)")
  m.add_argument("--doc_prompt_tokens", type=int, default=2000, help="doc-level prompt budget (ProX: 2000)")
  m.add_argument("--max_batch", type=int, default=8, help="prompts generated together")
  m.add_argument("--dtype", default="float32", help="compute dtype of the refining model")
  m.add_argument(
    "--chat_template",
    default=None,
    help="'llama2' (ProX's prompt format) or a Jinja template file; default: the model's own template, else llama2",
  )
  add_mesh_args(m)
  add_progress_arg(p)
  p.add_argument(
    "--shards",
    type=int,
    default=None,
    help="with --runner: the number of output shards the Beam pipeline writes (default: the n of "
    "--shard i/n, else 1); every shard is refined in one pipeline",
  )
  add_runner_args(p)
  add_distributed_args(p)
  p.set_defaults(func=cmd_refine)


def _profile(args) -> str:
  if args.profile != "auto":
    return args.profile
  names = [args.task or ""] + list(args.input or [])
  return "math" if any(("owm" in n.lower() or "openwebmath" in n.lower()) for n in names) else "web"


def _template(value: str | None) -> str | None:
  if value is None or value == "llama2":
    return value
  from pathlib import Path

  path = Path(value)
  if not path.is_file():
    raise FileNotFoundError(f"--chat_template {value!r}: use 'llama2' or an existing Jinja template file")
  return path.read_text()


def cmd_refine(args) -> int:
  from tokensift.core import jobs
  from tokensift.refine import executor, job, rules

  inp, shard = input_from_args(args)  # before anything is loaded or written
  exec_config = executor.ExecConfig(args.max_errors, args.min_words, args.min_keep_fraction)
  profile = _profile(args)
  total = inp.total() if not args.no_progress else None
  source = {"input": inp.describe()}
  count_tokens = None
  config = dict(source, profile=profile, vocab=args.vocab)
  if args.runner:
    return _cmd_refine_beam(args, inp, shard, exec_config, profile, config)
  from tokensift.core import multihost

  # multi-host (a refining model on every host of a slice / cluster): before any JAX computation
  shard, p_index, p_count = multihost.initialize_from_args(args, shard, uses_jax=args.programmer != "rules")
  if args.programmer == "rules":
    programmer = job.RuleProgrammer(rules.RuleConfig.named(profile))
  else:
    from tokensift.refine import model_programmer as mp

    mcfg = mp.ModelProgrammerConfig(
      max_new_tokens=args.max_new_tokens,
      doc_max_new_tokens=args.doc_max_new_tokens,
      chunk_tokens=args.chunk_tokens,
      doc_prompt_tokens=args.doc_prompt_tokens,
      batch_size=args.max_batch,
      chat_template=_template(args.chat_template),
    )
    programmer = mp.ModelProgrammer.from_path(
      args.programmer, config=mcfg, dtype=args.dtype, exec_config=exec_config, mesh=mp.mesh_from_spec(_mesh_spec(args))
    )
    count_tokens = programmer.count_tokens
    config.update(
      model=str(args.programmer),
      dtype=args.dtype,
      mesh=_mesh_spec(args),
      chat_template=args.chat_template,
      **{
        k: getattr(mcfg, k)
        for k in ("max_new_tokens", "doc_max_new_tokens", "chunk_tokens", "doc_prompt_tokens", "batch_size")
      },
    )
  if args.vocab:
    from tokensift.refine.chunks import vocab_counter
    from tokensift.tasks import vocabularies

    count_tokens = vocab_counter(vocabularies.get_vocabulary(args.vocab))
  result = job.run_refine(
    rows=inp,
    out_dir=args.out,
    programmer=programmer,
    shard=shard,
    fmt=args.format,
    piece_size=args.piece_size,
    exec_config=exec_config,
    count_tokens=count_tokens,
    config=config,
    name=args.name,
    progress=not args.no_progress,
    total=total,
  )
  state = (
    "already finished"
    if result.skipped_done
    else (f"done (resumed {result.resumed_pieces} pieces)" if result.resumed_pieces else "done")
  )
  print(f"refine shard {shard.index}/{shard.count} {state}: {result.path}")
  print(job.format_summary(result.stats))
  if multihost.finish_hosts(args.out, args.name, p_index, p_count) is not None:
    print(f"all {p_count} hosts finished: {args.out}/{args.name}.hosts.json")
  finished = len(jobs.shard_files(args.out, args.name))
  if shard.count > 1:
    merged = jobs.merged_stats(args.out, args.name)
    print(f"--- all finished shards ({finished}/{shard.count}):")
    print(job.format_summary(merged))
  sys.stdout.flush()
  return 0


def _mesh_spec(args) -> str:
  """``--mesh_data/--mesh_model`` as the ``"DATA,MODEL"`` spec of ``model_programmer.mesh_from_spec`` (and of the
  completion markers' config)."""
  return f"{args.mesh_data},{args.mesh_model}"


def _model_factory(path, mcfg, dtype, exec_config, mesh):
  """Builds the refining model on a Beam worker (picklable: module-level, called there)."""
  from tokensift.refine import model_programmer as mp

  return mp.ModelProgrammer.from_path(
    path, config=mcfg, dtype=dtype, exec_config=exec_config, mesh=mp.mesh_from_spec(mesh)
  )


def _programmer_counter(programmer):
  return programmer.count_tokens


def _vocab_counter_factory(name, programmer=None):
  from tokensift.refine.chunks import vocab_counter
  from tokensift.tasks import vocabularies

  return vocab_counter(vocabularies.get_vocabulary(name))


def _cmd_refine_beam(args, inp, shard, exec_config, profile, config) -> int:
  """``--runner``: every shard in one Beam pipeline (``refine/beam_refine.py``); same files as without it."""
  import functools
  from tokensift.core import jobs
  from tokensift.refine import beam_refine, job, rules

  if shard.index != 0 and args.shards is None:
    raise ValueError(
      f"--shard {shard.index}/{shard.count} with --runner: the Beam pipeline writes every shard; "
      f"give --shards {shard.count} (or --shard 0/{shard.count})"
    )
  count = args.shards if args.shards is not None else shard.count
  if count < 1:
    raise ValueError(f"--shards must be >= 1, got {count}")
  count_tokens_factory = None
  if args.programmer == "rules":
    factory = functools.partial(job.RuleProgrammer, rules.RuleConfig.named(profile))
    name = factory().name
  else:
    from tokensift.refine import model_programmer as mp

    mcfg = mp.ModelProgrammerConfig(
      max_new_tokens=args.max_new_tokens,
      doc_max_new_tokens=args.doc_max_new_tokens,
      chunk_tokens=args.chunk_tokens,
      doc_prompt_tokens=args.doc_prompt_tokens,
      batch_size=args.max_batch,
      chat_template=_template(args.chat_template),
    )
    factory = functools.partial(_model_factory, str(args.programmer), mcfg, args.dtype, exec_config, _mesh_spec(args))
    from pathlib import Path

    name = f"model:{Path(args.programmer).name}"  # ModelProgrammer.from_path's name (the marker config matches)
    count_tokens_factory = _programmer_counter
    config.update(
      model=str(args.programmer),
      dtype=args.dtype,
      mesh=_mesh_spec(args),
      chat_template=args.chat_template,
      **{
        k: getattr(mcfg, k)
        for k in ("max_new_tokens", "doc_max_new_tokens", "chunk_tokens", "doc_prompt_tokens", "batch_size")
      },
    )
  if args.vocab:
    count_tokens_factory = functools.partial(_vocab_counter_factory, args.vocab)
  done = beam_refine.run_refine_beam(
    inp=inp,
    out_dir=args.out,
    programmer_factory=factory,
    programmer_name=name,
    shards=count,
    fmt=args.format,
    piece_size=args.piece_size,
    exec_config=exec_config,
    count_tokens_factory=count_tokens_factory,
    config=config,
    name=args.name,
    runner=args.runner,
    workers=args.beam_workers,
    beam_args=beam_args_of(args),
    spread_pieces=not name.startswith("rules"),
  )
  print(
    f"refine (Beam, {args.runner}): {len(done)} shards committed, {count - len(done)} already finished, in {args.out}"
  )
  print(job.format_summary(jobs.merged_stats(args.out, args.name)))
  sys.stdout.flush()
  return 0
