"""Devices, meshes and shardings: one CPU, many local devices, or many processes.

The batch is split over a ``data`` mesh axis spanning every device of every
process; parameters are replicated (or, with ``param_sharding="fsdp"``, split
over the same axis). Each process contributes its own share of a global batch.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


class ShardingError(ValueError):
    """A batch or parameter cannot be laid out over the devices as asked."""


def data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over all (global) devices."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


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
    short batch of an evaluation, say) is replicated instead of sharded.
    """
    local_devices = max(1, len(mesh.local_devices))
    sizes = {np.shape(x)[leading_dims] for x in jax.tree.leaves(tree) if np.ndim(x) > leading_dims}
    even = all(s % local_devices == 0 for s in sizes)
    if jax.process_count() == 1:
        sharding = batch_sharding(mesh, leading_dims) if even else replicated(mesh)
        return jax.device_put(tree, sharding)
    if not even:
        raise ShardingError(
            f"per-process batch sizes {sorted(sizes)} do not split over {local_devices} local devices; "
            "use a per-process batch size divisible by the local device count (and drop_remainder=True)."
        )
    sharding = batch_sharding(mesh, leading_dims)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


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
