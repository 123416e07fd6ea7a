"""Seeds of a running pipeline: the user's, or one drawn per iterator and kept in its state.

A stage given `seed=None` does not draw its own random seed: it derives one from the
iterator's *root seed* and the stage's structure, and shuffles epoch `e` with
`(stage seed, e)`. The root seed is drawn once per `iter(dataset)` and saved in the iterator
state, so a restored iterator reproduces every later epoch too, not only the current one.

In a multi-process JAX job (`jax.distributed` initialised, more than one process) every process
must shuffle the file list the same way before taking its share, or files are read twice or
never. There the root seed is a *job seed* that process 0 draws and broadcasts once
(`estimator.distribute.initialize()` does it at start-up, in lockstep; otherwise the first
`iter()` of each process does): all processes agree without further communication. (So in such
a job, iterators over the same pipeline all get the same order, not a new one each.)
"""

from __future__ import annotations

import hashlib
import sys
import threading

import numpy as np

_job_seed: int | None = None
_job_lock = threading.Lock()


def fresh_seed() -> int:
    """A random non-negative 63-bit seed."""
    return int(np.random.SeedSequence().entropy % (2**63))


def seed_int(seed: int) -> int:
    """A user seed as a non-negative int usable in a numpy seed sequence."""
    return int(seed) & (2**63 - 1)


def mix(seed: int, tag: str) -> int:
    """A 63-bit seed derived from `seed` and a text `tag` (stable across processes and runs)."""
    digest = hashlib.sha256(f"{int(seed)}:{tag}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def multi_process() -> bool:
    """True in a JAX job of several processes (a process that never imported jax is alone)."""
    if "jax" not in sys.modules:
        return False
    import jax

    return bool(jax.distributed.is_initialized()) and jax.process_count() > 1


def job_seed() -> int:
    """Process 0's random seed, the same on every process of the JAX job (cached).

    The first call is a collective (`multihost_utils.broadcast_one_to_all`): every process
    must make it. Alone, it is a fresh seed.
    """
    global _job_seed
    with _job_lock:
        if _job_seed is None:
            seed = fresh_seed()
            if multi_process():
                from jax.experimental import multihost_utils

                # two 32-bit halves: jax arrays are 32-bit unless x64 is enabled
                halves = np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32)
                lo, hi = (int(x) for x in multihost_utils.broadcast_one_to_all(halves))
                seed = lo | (hi << 32)
            _job_seed = seed
        return _job_seed


def root_seed() -> int:
    """The root seed of a new iterator: fresh, or in a multi-process job the job seed.

    Not mixed with the pipeline's structure: that differs between processes (`shard(n, i)`),
    while a stage's own tag (its upstream structure) is the same on all processes for the
    stages before the shard, the ones that must agree."""
    return job_seed() if multi_process() else fresh_seed()


class Seeds:
    """The root seed of one running pipeline, drawn on first use (only stages with `seed=None`
    use it, so a fully seeded pipeline never draws or communicates)."""

    def __init__(self, root: int | None = None) -> None:
        self._root = root
        self._lock = threading.Lock()

    @property
    def drawn(self) -> int | None:
        """The root seed if it was drawn (or restored), else None."""
        return self._root

    def for_stage(self, seed: int | None, tag: str) -> int:
        """A stage's seed: the user's `seed`, or one derived from the root seed and `tag`."""
        if seed is not None:
            return seed_int(seed)
        with self._lock:
            if self._root is None:
                self._root = root_seed()
            return mix(self._root, tag)
