"""Devices, meshes and shardings: one CPU, many local devices, or many processes.

The batch is split over a ``data`` mesh axis spanning every device of every
process; parameters are replicated (or, with ``param_sharding="fsdp"``, split
over the same axis). Each process contributes its own share of a global batch;
evaluation and prediction run on each process's own devices (``local_mesh``).
``initialize()`` starts ``jax.distributed`` from a RunConfig, the environment,
TF_CONFIG or JAX's cluster detection; the Estimator calls it on construction.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"

log = logging.getLogger("estimator")


class ShardingError(ValueError):
    """A batch or parameter cannot be laid out over the devices as asked."""


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over all (global) devices."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def local_mesh() -> Mesh:
    """A 1-D ``data`` mesh over this process's own devices (all devices with one process).

    For work each process does alone on its share of the input, in step with no
    other process: evaluation (metric states are combined at the end) and prediction.
    On CPU with several processes it holds one device: XLA's CPU collectives go through
    gloo even between a process's own devices, and such a local reduction was seen to hang
    while another process waited in a job-wide gather.
    """
    devices = jax.local_devices()
    if jax.process_count() > 1 and devices[0].platform == "cpu":
        devices = devices[:1]
    return data_mesh(devices)


def _is_local(mesh: Mesh) -> bool:
    return all(d.process_index == jax.process_index() for d in mesh.devices.flat)


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, leading_dims: int = 0) -> NamedSharding:
    """Splits axis ``leading_dims`` (the batch axis) over ``data``.

    ``leading_dims=1`` is for stacked groups of batches ``[k, batch, ...]``.
    """
    return NamedSharding(mesh, PartitionSpec(*([None] * leading_dims), DATA_AXIS))


def fsdp_sharding(mesh: Mesh, shape: tuple[int, ...]) -> NamedSharding:
    """Splits the largest axis divisible by the device count; replicates small arrays."""
    n = mesh.devices.size
    candidates = [i for i, d in enumerate(shape) if d % n == 0 and d >= n]
    if not candidates or int(np.prod(shape)) < 4 * n:
        return replicated(mesh)
    axis = max(candidates, key=lambda i: shape[i])
    spec = [None] * len(shape)
    spec[axis] = DATA_AXIS
    return NamedSharding(mesh, PartitionSpec(*spec))


def state_shardings(mesh: Mesh, abstract_state: Any, param_sharding: str) -> Any:
    """Shardings for every leaf of the training state."""
    if param_sharding == "fsdp":
        return jax.tree.map(lambda x: fsdp_sharding(mesh, tuple(x.shape)), abstract_state)
    return jax.tree.map(lambda _: replicated(mesh), abstract_state)


def put_batch(tree: Any, mesh: Mesh, leading_dims: int = 0) -> Any:
    """Turns this process's share of a batch (numpy) into global arrays over ``mesh``.

    A batch whose size does not split evenly over the local devices (the last,
    short batch of an evaluation, say) is replicated instead of sharded; over
    several processes' devices, where a global array needs equal shares, that
    is an error.
    """
    local_devices = max(1, len(mesh.local_devices))
    sizes = {np.shape(x)[leading_dims] for x in jax.tree.leaves(tree) if np.ndim(x) > leading_dims}
    even = all(s % local_devices == 0 for s in sizes)
    if _is_local(mesh):
        sharding = batch_sharding(mesh, leading_dims) if even else replicated(mesh)
        return jax.device_put(tree, sharding)
    if not even:
        raise ShardingError(
            f"per-process batch sizes {sorted(sizes)} do not split over {local_devices} local devices; "
            "use a per-process batch size divisible by the local device count (and drop_remainder=True)."
        )
    sharding = batch_sharding(mesh, leading_dims)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def agreed(flag: bool) -> bool:
    """Process 0's ``flag`` on every process: a collective every process must call (a no-op alone).

    For decisions that must be the same everywhere (a checkpoint is written by all
    processes together) but depend on a process's own clock.
    """
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.int32(bool(flag))))


def gather_ints(value: int) -> list[int]:
    """Every process's ``value``, by process index: a collective every process must call (a no-op alone)."""
    if jax.process_count() == 1:
        return [int(value)]
    from jax.experimental import multihost_utils

    return [int(v) for v in np.asarray(multihost_utils.process_allgather(np.int32(value))).reshape(-1)]


def allgather_bytes(payload: bytes) -> list[bytes]:
    """Every process's ``payload``, by process index: a collective every process must call.

    The lengths, then the bytes (padded to a power of two, so few shapes compile)
    are all-gathered as uint8 arrays with ``multihost_utils.process_allgather``.
    """
    if jax.process_count() == 1:
        return [bytes(payload)]
    from jax.experimental import multihost_utils

    lengths = np.asarray(multihost_utils.process_allgather(np.array([len(payload)], np.int32))).reshape(-1)
    padded = np.zeros(max(256, 1 << int(lengths.max() - 1).bit_length()), np.uint8)
    padded[:len(payload)] = np.frombuffer(payload, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [gathered[i, :n].tobytes() for i, n in enumerate(lengths)]


class InputContext:
    """What an ``input_fn`` needs to read its own share in multi-process training.

    Attributes:
      num_input_pipelines: how many processes read input (one pipeline each).
      input_pipeline_id: this process's pipeline index.
      num_replicas_in_sync: devices the global batch is split over.
    """

    def __init__(self, num_input_pipelines: int = 1, input_pipeline_id: int = 0, num_replicas_in_sync: int = 1):
        self.num_input_pipelines = num_input_pipelines
        self.input_pipeline_id = input_pipeline_id
        self.num_replicas_in_sync = num_replicas_in_sync

    @classmethod
    def current(cls) -> InputContext:
        """The context of this process in the running JAX job."""
        return cls(jax.process_count(), jax.process_index(), jax.device_count())

    def get_per_replica_batch_size(self, global_batch_size: int) -> int:
        """Global batch divided over the replicas; raises if it does not divide."""
        if global_batch_size % self.num_replicas_in_sync:
            raise ShardingError(
                f"global batch size {global_batch_size} is not divisible by {self.num_replicas_in_sync} replicas."
            )
        return global_batch_size // self.num_replicas_in_sync

    def get_per_process_batch_size(self, global_batch_size: int) -> int:
        """Global batch divided over the input pipelines (processes)."""
        if global_batch_size % self.num_input_pipelines:
            raise ShardingError(
                f"global batch size {global_batch_size} is not divisible by {self.num_input_pipelines} processes."
            )
        return global_batch_size // self.num_input_pipelines


# ---------------------------------------------------------------------- multi-process start-up

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
ENV_CLUSTER_DETECTION = "ESTIMATOR_CLUSTER_DETECTION"
EVALUATOR = "evaluator"

_started: ClusterSpec | None = None


class DistributedInitError(RuntimeError):
    """The multi-process settings are incomplete or contradictory, or JAX could not start with them."""


class ClusterSpec(NamedTuple):
    """Where this process sits in a job.

    Attributes:
      role: "chief", "worker", "evaluator" (runs the continuous evaluator, not
        part of the training job) or "single" (one process, nothing to start).
      coordinator_address: ``host:port`` of process 0; None for single/evaluator
        or when JAX's cluster detection supplies it.
      num_processes / process_id: the training job's size and this process's id.
      source: where the settings came from ("run_config", "env", "TF_CONFIG",
        "cluster_detection", "none").
    """

    role: str
    coordinator_address: str | None
    num_processes: int
    process_id: int
    source: str

    @property
    def multi_process(self) -> bool:
        """True when this process is one of several training processes."""
        return self.role in ("chief", "worker") and (self.num_processes > 1 or self.source == "cluster_detection")


def _int_setting(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DistributedInitError(f"{name} must be an integer, got {value!r}.") from None


def _from_tf_config(raw: str) -> ClusterSpec:
    try:
        tf_config = json.loads(raw)
        cluster = dict(tf_config.get("cluster") or {})
        task = dict(tf_config.get("task") or {})
    except (ValueError, AttributeError, TypeError) as error:
        raise DistributedInitError(f"TF_CONFIG is not a JSON object with 'cluster' and 'task': {error}.") from None
    task_type, index = task.get("type"), _int_setting(task.get("index", 0), "TF_CONFIG task.index")
    chiefs = list(cluster.get("chief") or cluster.get("master") or [])
    workers = list(cluster.get("worker") or [])
    if cluster.get("ps"):
        raise DistributedInitError("TF_CONFIG has 'ps' tasks: parameter servers are not used here; "
                                   "list the hosts as 'chief' and 'worker' only.")
    if len(chiefs) > 1:
        raise DistributedInitError(f"TF_CONFIG lists {len(chiefs)} chief tasks; there must be at most one.")
    hosts = chiefs + workers
    if task_type == EVALUATOR:
        return ClusterSpec(EVALUATOR, None, 1, 0, "TF_CONFIG")
    if task_type in ("chief", "master"):
        process_id = 0
    elif task_type == "worker":
        process_id = len(chiefs) + index
    else:
        raise DistributedInitError(
            f"TF_CONFIG task.type is {task_type!r}; expected 'chief', 'worker' or 'evaluator'.")
    if not hosts or process_id >= len(hosts):
        raise DistributedInitError(
            f"TF_CONFIG task {task_type}:{index} is not in the cluster spec {cluster}.")
    role = "chief" if process_id == 0 else "worker"
    return ClusterSpec(role, str(hosts[0]), len(hosts), process_id, "TF_CONFIG")


def _cluster_env_present(environ: Mapping[str, str]) -> bool:
    """A multi-process launcher JAX knows (SLURM, Open MPI, Cloud TPU) set this environment."""
    if environ.get(ENV_CLUSTER_DETECTION, "").lower() in ("1", "true", "yes"):
        return True
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(k in environ for k in slurm) and (_int_setting(environ["SLURM_NTASKS"], "SLURM_NTASKS") or 1) > 1:
        return True
    if "OMPI_MCA_orte_hnp_uri" in environ and (_int_setting(environ.get("OMPI_COMM_WORLD_SIZE"), "OMPI_COMM_WORLD_SIZE") or 1) > 1:
        return True
    tpu_hosts = environ.get("TPU_PROCESS_ADDRESSES") or environ.get("TPU_WORKER_HOSTNAMES") or ""
    return "," in tpu_hosts


def resolve_cluster(config: Any = None, environ: Mapping[str, str] | None = None) -> ClusterSpec:
    """Works out this process's place in the job without starting anything.

    Sources, first match wins: the ``RunConfig`` fields ``coordinator_address``
    / ``num_processes`` / ``process_id`` (missing ones filled from the
    environment), the ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
    ``JAX_PROCESS_ID`` environment variables, a ``TF_CONFIG`` cluster spec
    (chief = process 0, worker i = process i + 1; the ``evaluator`` task gets
    role "evaluator"), then JAX's own detection when a SLURM, Open MPI or
    multi-host Cloud TPU environment is present (or ``ESTIMATOR_CLUSTER_DETECTION=1``).
    """
    environ = os.environ if environ is None else environ
    given = {
        "coordinator_address": getattr(config, "coordinator_address", None),
        "num_processes": getattr(config, "num_processes", None),
        "process_id": getattr(config, "process_id", None),
    }
    env = {
        "coordinator_address": environ.get(ENV_COORDINATOR) or None,
        "num_processes": _int_setting(environ.get(ENV_NUM_PROCESSES), ENV_NUM_PROCESSES),
        "process_id": _int_setting(environ.get(ENV_PROCESS_ID), ENV_PROCESS_ID),
    }
    source = "run_config" if any(v is not None for v in given.values()) else (
        "env" if any(v is not None for v in env.values()) else None)
    if source is None and environ.get("TF_CONFIG"):
        return _from_tf_config(environ["TF_CONFIG"])
    if source is None:
        if _cluster_env_present(environ):
            return ClusterSpec("chief", None, 0, 0, "cluster_detection")
        return ClusterSpec("single", None, 1, 0, "none")
    merged = {k: given[k] if given[k] is not None else env[k] for k in given}
    num, pid, address = merged["num_processes"], merged["process_id"], merged["coordinator_address"]
    where = "RunConfig" if source == "run_config" else "the environment"
    if num is not None and num == 1 and (pid or 0) == 0:
        return ClusterSpec("single", address, 1, 0, source)
    missing = [k for k, v in merged.items() if v is None]
    if missing:
        names = {"coordinator_address": ENV_COORDINATOR, "num_processes": ENV_NUM_PROCESSES,
                 "process_id": ENV_PROCESS_ID}
        raise DistributedInitError(
            f"multi-process settings from {where} are incomplete: missing {missing}; set them in RunConfig "
            f"or as {[names[k] for k in missing]}.")
    if num < 1 or not 0 <= pid < num:
        raise DistributedInitError(
            f"process_id={pid} is not in [0, num_processes={num}) (settings from {where}).")
    if ":" not in address:
        raise DistributedInitError(f"coordinator_address {address!r} must be 'host:port' (settings from {where}).")
    return ClusterSpec("chief" if pid == 0 else "worker", address, num, pid, source)


def is_evaluator(config: Any = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when TF_CONFIG makes this process the ``evaluator`` task (run the continuous evaluator)."""
    return resolve_cluster(config, environ).role == EVALUATOR


def initialize(config: Any = None, timeout_secs: int = 300) -> bool:
    """Starts ``jax.distributed`` when ``config`` or the environment asks for several processes.

    Idempotent: later calls return what the first one did. Returns True when
    this process is part of a multi-process job. A single process, or the
    TF_CONFIG ``evaluator`` task, starts nothing and returns False (check
    ``is_evaluator()`` to run the continuous evaluator). On CPU the collectives
    use gloo, so several processes on one machine work.
    """
    global _started
    if _started is not None:
        return _started.multi_process
    if jax.distributed.is_initialized():
        _started = ClusterSpec("chief" if jax.process_index() == 0 else "worker", None, jax.process_count(),
                               jax.process_index(), "external")
        return True
    spec = resolve_cluster(config)
    if not spec.multi_process:
        _started = spec
        return False
    if "jax_cpu_collectives_implementation" in jax.config.values:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if spec.source == "cluster_detection":
        kwargs: dict[str, Any] = {}
    else:
        kwargs = {"coordinator_address": spec.coordinator_address, "num_processes": spec.num_processes,
                  "process_id": spec.process_id}
    log.info("Starting jax.distributed (%s): %s", spec.source,
             kwargs or "settings from the cluster environment")
    try:
        jax.distributed.initialize(**kwargs, initialization_timeout=timeout_secs)
    except RuntimeError as error:
        raise DistributedInitError(
            f"jax.distributed could not start with {kwargs or 'cluster detection'} ({spec.source}): {error}. "
            "It must run before any JAX computation: create the Estimator (or call "
            "estimator.distribute.initialize()) first, and check that every process uses the same "
            "coordinator address and process count."
        ) from error
    _started = spec._replace(num_processes=jax.process_count(), process_id=jax.process_index())
    _exit_on_uncaught_error()
    from input_pipelines._seeds import job_seed

    job_seed()  # agreed now, in lockstep: input pipelines with seed=None shuffle files alike everywhere
    return True


def _exit_on_uncaught_error() -> None:
    """Makes an uncaught error end this process at once (exit code 1) after printing it.

    Otherwise JAX's shutdown at exit waits for the other processes, which wait in
    their next collective for this one: the whole job would hang instead of failing.
    """
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    sys.excepthook = hook
