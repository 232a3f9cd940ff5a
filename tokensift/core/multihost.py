"""Multi-host JAX for the model jobs (score, embed, reference losses): one command started on every host of a TPU
slice or GPU cluster (DESIGN §11).

- ``jax.distributed.initialize()`` (``--distributed`` or ``$TOKENSIFT_DISTRIBUTED=1``; on Cloud TPU and SLURM the
  coordinator, process count and id are detected, elsewhere give ``--coordinator_address/--num_processes/
  --process_id``);
- each host reads **its own input split** through the document layer: job shard ``i/n`` on ``P`` hosts is host
  shard ``(i*P + p)/(n*P)`` (``host_shard``), so no host reads another's files, row groups or byte ranges;
- each host runs the model on a mesh of **its local devices** and writes its own shard file + ``.done`` marker
  (``jobs.run_sharded``: resumable, byte-identical after a kill). A per-host mesh rather than one global mesh,
  as t5x ``infer`` does per host: inference needs no cross-host collective (every document's forward pass fits
  a host, model parallelism stays within a host), so a global mesh would only add a cross-host synchronization
  per batch and tie every host to the slowest one;
- at the end every host meets at a barrier and process 0 writes the one job-level completion file
  ``{name}.hosts.json`` (the shard files, the merged stats); a rerun of a finished host shard skips it, so a
  job restarted after a lost host redoes only that host's unfinished pieces.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tokensift.core import docs, jobs, storage

DISTRIBUTED_ENV = "TOKENSIFT_DISTRIBUTED"


def distributed_requested(enabled: bool | None = None) -> bool:
  """``enabled``, else ``$TOKENSIFT_DISTRIBUTED`` (1 / true / yes)."""
  if enabled is None:
    return os.environ.get(DISTRIBUTED_ENV, "").lower() in ("1", "true", "yes")
  return enabled


def maybe_initialize_distributed(enabled: bool | None = None, **kwargs) -> tuple[int, int]:
  """Runs ``jax.distributed.initialize(**kwargs)`` when ``enabled`` (default: ``$TOKENSIFT_DISTRIBUTED``);
  returns ``(process_index, process_count)``."""
  import jax

  if distributed_requested(enabled):
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})
  return jax.process_index(), jax.process_count()


def host_shard(shard: docs.ShardSpec, process_index: int, process_count: int) -> docs.ShardSpec:
  """The job shard this host runs: job shard ``i/n`` split over ``P`` hosts is ``(i*P + p) / (n*P)``."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  return docs.ShardSpec(shard.index * process_count + process_index, shard.count * process_count)


def initialize_from_args(args, shard: docs.ShardSpec, *, uses_jax: bool = True) -> tuple[docs.ShardSpec, int, int]:
  """``(host shard, process_index, process_count)`` for a command with the multi-host flags (``--distributed``,
  ``--coordinator_address``, ``--num_processes``, ``--process_id``; ``tokensift.cli.args.add_distributed_args``). A
  job without a model (``uses_jax=False``: the rule refiner) that is not asked to run multi-host is one process and
  never imports JAX (its start-up costs seconds)."""
  if not uses_jax and not distributed_requested(True if args.distributed else None):
    return shard, 0, 1
  p_index, p_count = maybe_initialize_distributed(
    True if args.distributed else None,
    coordinator_address=args.coordinator_address,
    num_processes=args.num_processes,
    process_id=args.process_id,
  )
  return (host_shard(shard, p_index, p_count) if p_count > 1 else shard), p_index, p_count


def finish_hosts(out_dir, name: str, p_index: int, p_count: int) -> dict[str, Any] | None:
  """After every host's shard: a barrier, then process 0 writes ``{name}.hosts.json`` (shard files and merged
  stats) and returns it; other processes return None. Nothing is done for one process."""
  if p_count <= 1:
    return None
  from jax.experimental import multihost_utils

  multihost_utils.sync_global_devices(f"tokensift-{name}-done")
  if p_index != 0:
    return None
  files = jobs.finished_files(str(out_dir), name)
  info = {
    "processes": p_count,
    "files": [os.path.basename(str(f)) for f in files],
    "stats": jobs.merged_stats(str(out_dir), name),
  }
  storage.atomic_write_bytes(
    storage.join(str(out_dir), f"{name}.hosts.json"), json.dumps(info, indent=1, sort_keys=True).encode()
  )
  return info
