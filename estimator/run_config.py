"""RunConfig: where and how an Estimator runs (checkpoints, summaries, devices)."""

from __future__ import annotations

import dataclasses
from typing import Any


class RunConfigError(ValueError):
    """A RunConfig field has a value that cannot work."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Run settings of an Estimator, with tf.estimator's names and defaults.

    Attributes:
      model_dir: where checkpoints, event files and exports go.
      random_seed: seeds parameter init and the train rng (same seed, same run).
      save_checkpoints_steps / save_checkpoints_secs: checkpoint cadence; at most
        one may be set. With neither, a checkpoint every 600 seconds (tf's default).
      keep_checkpoint_max: newest checkpoints kept (None keeps all).
      save_summary_steps: TensorBoard scalars every N steps.
      log_step_count_steps: ``loss = X, step = N`` log line every N steps.
      steps_per_loop: train steps fused in one device call (``lax.scan``).
      debug: run ``model_fn`` without ``jax.jit`` so print and pdb work.
      param_sharding: "replicated", or "fsdp": every parameter and optimizer-state
        array of at least 4 elements per device is split over the ``data`` axis
        along its largest dimension divisible by the device count (smaller ones
        stay replicated); XLA gathers them where they are used. Same results as
        replicated, less memory per device.
      compute_dtype: dtype the ``nn`` layers compute in (e.g. "bfloat16"), None
        for float32. Mixed precision: parameters, gradients and optimizer state
        stay float32 (so do checkpoints); Dense/Conv2D/Embed cast inputs and
        weights to this dtype; LayerNorm/BatchNorm statistics are float32. Cast
        logits to float32 before a softmax loss. Predictions come out in this
        dtype unless ``model_fn`` casts them.
      gradient_accumulation_steps: k > 1 wraps the optimizer in
        ``optax.MultiSteps``: each input batch is a micro-batch and one train
        ``step``; the parameters change every k steps, by the optimizer's update
        for the mean of the k micro-batch gradients. With equal micro-batch
        sizes and a mean loss this is the gradient of one k-times larger batch,
        so k micro-batches of B give the parameters of batches of k*B with the
        plain optimizer (up to float rounding). ``global_step``, ``max_steps``,
        ``save_*_steps`` and hooks count micro-batches: for N updates train
        ``max_steps = k * N``; the optimizer's own count (schedules) advances
        once per update. Not the same as a big batch: a short micro-batch gets
        the same weight as a full one; batch-norm statistics move every
        micro-batch; dropout draws fresh keys per micro-batch. A checkpoint
        taken inside a window holds the partial sum, so resuming is exact.
      coordinator_address / num_processes / process_id: multi-process setup;
        None means "from the environment or JAX's cluster detection".
      prefetch_batches: groups of batches staged on the devices ahead of the step.
      model_dir_lock_timeout_secs: training takes the lock ``model_dir/train.lock``
        (one trainer per model_dir); a lock of another host not refreshed for this
        long is stale and taken over (one of this host is stale when its process died).
      break_model_dir_lock: take the lock over whoever holds it.
    """

    model_dir: str | None = None
    random_seed: int = 0
    save_checkpoints_steps: int | None = None
    save_checkpoints_secs: float | None = None
    keep_checkpoint_max: int | None = 5
    save_summary_steps: int = 100
    log_step_count_steps: int = 100
    steps_per_loop: int = 1
    debug: bool = False
    param_sharding: str = "replicated"
    compute_dtype: str | None = None
    gradient_accumulation_steps: int = 1
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    prefetch_batches: int = 2
    model_dir_lock_timeout_secs: float = 3600.0
    break_model_dir_lock: bool = False

    def __post_init__(self) -> None:
        if self.save_checkpoints_steps is not None and self.save_checkpoints_secs is not None:
            raise RunConfigError(
                "RunConfig: set save_checkpoints_steps or save_checkpoints_secs, not both "
                f"(got {self.save_checkpoints_steps} steps and {self.save_checkpoints_secs} secs)."
            )
        for name in ("steps_per_loop", "save_summary_steps", "log_step_count_steps", "gradient_accumulation_steps", "prefetch_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "prefetch_batches" else 1):
                raise RunConfigError(f"RunConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("save_checkpoints_steps", "keep_checkpoint_max"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise RunConfigError(f"RunConfig.{name} must be a positive integer or None, got {value!r}.")
        if not isinstance(self.model_dir_lock_timeout_secs, int | float) or self.model_dir_lock_timeout_secs <= 0:
            raise RunConfigError("RunConfig.model_dir_lock_timeout_secs must be a positive number, "
                                 f"got {self.model_dir_lock_timeout_secs!r}.")
        if self.param_sharding not in ("replicated", "fsdp"):
            raise RunConfigError(
                f"RunConfig.param_sharding is {self.param_sharding!r}; expected 'replicated' or 'fsdp'."
            )

    @property
    def checkpoint_every_secs(self) -> float | None:
        """Seconds between checkpoints, applying tf.estimator's 600 s default."""
        if self.save_checkpoints_steps is None and self.save_checkpoints_secs is None:
            return 600.0
        return self.save_checkpoints_secs

    def replace(self, **changes: Any) -> RunConfig:
        """Returns a copy with the given fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise RunConfigError(f"RunConfig.replace got unknown field(s) {sorted(unknown)}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (saved beside the checkpoints)."""
        return dataclasses.asdict(self)
