"""Tokens/sec and model FLOP utilisation of the transformer LM: Estimator.train against a
hand-written jitted loop (same model_fn, initial parameters, optimizer and batches, same device).

    python scripts/benchmark_lm.py                      # defaults for the device found
    python scripts/benchmark_lm.py --d_model 32 --num_layers 2 --seq_len 32 --steps 40   # quick CPU run

FLOPs per token are ``6 N + 12 L d T`` (N: matmul parameters, i.e. without the
embedding tables; L layers, width d, context T; PaLM's count). MFU is achieved
FLOP/s over the peak: ``--peak_tflops``, else the card's dense peak for the
compute dtype (H100/H200: 989 bf16, 495 tf32), else (CPU or unknown) the
FLOP/s of a large jitted matmul in the compute dtype measured here. Times
exclude compilation and checkpoint writing: they run from the end of a warm-up
call to the end of the last call, waiting for the device at both ends. The
hand-written loop makes each batch and copies it to the device in the loop, as
a plain script does (the Estimator does that in a background thread). "last
loss" is the last call's loss: one step's, or with steps_per_loop=k the mean
of the last k steps (the same numbers in both loops for k=1: a correctness check).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax

from estimator import ModeKeys, RunConfig, nn
from models import transformer_lm as lm
from models.benchmarking import SpanTimer

# Dense peak TFLOP/s by device-kind substring and compute dtype (vendor datasheets, SXM parts).
PEAK_TFLOPS = {
    "H200": {"bfloat16": 989.0, "float32": 495.0},
    "H100": {"bfloat16": 989.0, "float32": 495.0},
    "A100": {"bfloat16": 312.0, "float32": 156.0},
}


def measured_matmul_tflops(dtype: str, n: int = 2048, repeats: int = 10) -> float:
    """Achieved TFLOP/s of an ``n x n`` jitted matmul in ``dtype`` on the default device."""
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        out = f(a)
    out.block_until_ready()
    return 2.0 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def peak_tflops(dtype: str, given: float | None) -> tuple[float, str]:
    """The peak used for MFU and where it came from."""
    if given:
        return given, "--peak_tflops"
    kind = jax.devices()[0].device_kind
    for name, peaks in PEAK_TFLOPS.items():
        if name in kind:
            return peaks["bfloat16" if dtype == "bfloat16" else "float32"], f"{kind} datasheet"
    return measured_matmul_tflops(dtype), f"measured {dtype} matmul on {kind}"


def estimator_run(model: lm.ModelParams, data: lm.DataParams, warm: int, steps: int,
                  steps_per_loop: int) -> tuple[float, float]:
    """(seconds for ``steps`` steps, last loss) of Estimator.train."""
    with tempfile.TemporaryDirectory() as folder:
        config = RunConfig(model_dir=folder, steps_per_loop=steps_per_loop, save_summary_steps=10**9,
                           log_step_count_steps=10**9, save_checkpoints_steps=10**9)
        est = lm.build_estimator(model, data, config)
        timer = SpanTimer(warm, warm + steps)
        est.train(lm.input_fn(data, ModeKeys.TRAIN), hooks=[timer], max_steps=warm + steps)
    return timer.seconds, timer.loss


def hand_written_run(model: lm.ModelParams, data: lm.DataParams, warm: int, steps: int) -> tuple[float, float, Any]:
    """(seconds for ``steps`` steps, last loss, initial params) of a plain jax.jit + optax loop."""
    params_dict = dataclasses.asdict(model)

    def loss_fn(features, labels):
        return lm.model_fn(features, labels, ModeKeys.TRAIN, params_dict).loss

    def traced(features, labels):
        with nn.mixed_precision(model.compute_dtype):
            return loss_fn(features, labels)

    transformed = nn.transform(traced)
    opt = lm.optimizer(model)
    if model.gradient_accumulation_steps > 1:
        opt = optax.MultiSteps(opt, every_k_schedule=model.gradient_accumulation_steps)
    batches = lm.input_fn(data, ModeKeys.TRAIN)()
    init_rng, _ = jax.random.split(jax.random.PRNGKey(0))  # as the Estimator does for random_seed=0
    features, labels = next(batches)
    params, _ = transformed.init(init_rng, features, labels)
    first_params = params
    opt_state = opt.init(params)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, features, labels):
        loss, grads = jax.value_and_grad(lambda p: transformed.apply(p, {}, None, features, labels)[0])(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    batches = lm.input_fn(data, ModeKeys.TRAIN)()  # the same batches the Estimator reads
    for _ in range(warm):
        params, opt_state, loss = step(params, opt_state, *jax.device_put(next(batches)))
    float(loss)
    start = time.perf_counter()
    for _ in range(steps):
        params, opt_state, loss = step(params, opt_state, *jax.device_put(next(batches)))
    loss = float(loss)
    return time.perf_counter() - start, loss, first_params


def main() -> None:
    """Parses the flags, runs both loops and prints the table."""
    accelerator = jax.default_backend() != "cpu"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_layers", type=int, default=12 if accelerator else 2)
    parser.add_argument("--d_model", type=int, default=768 if accelerator else 64)
    parser.add_argument("--num_heads", type=int, default=12 if accelerator else 4)
    parser.add_argument("--seq_len", type=int, default=1024 if accelerator else 64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100 if accelerator else 30)
    parser.add_argument("--compute_dtype", default="bfloat16" if accelerator else "float32")
    parser.add_argument("--grad_accum", type=int, default=1)
    parser.add_argument("--attention", choices=["xla", "cudnn"], default="xla",
                        help="attention kernel (cudnn: fused flash attention, NVIDIA GPUs with bf16)")
    parser.add_argument("--steps_per_loop", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--peak_tflops", type=float, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    dtype = None if args.compute_dtype in ("float32", "none", "None") else args.compute_dtype
    model = lm.ModelParams(num_layers=args.num_layers, d_model=args.d_model, num_heads=args.num_heads,
                           compute_dtype=dtype, gradient_accumulation_steps=args.grad_accum,
                           attention=args.attention)
    data = lm.DataParams(seq_len=args.seq_len, batch_size=args.batch_size,
                         text_modules=["difflib", "textwrap", "argparse", "inspect", "typing"])
    loops = max(args.steps_per_loop)
    steps = -(-args.steps // loops) * loops  # a multiple of every steps_per_loop tried (when they divide)
    warm = 2 * loops

    hand_secs, hand_loss, params = hand_written_run(model, data, warm, steps)
    flops_per_token = lm.train_flops_per_token(params, model, args.seq_len)
    peak, peak_source = peak_tflops(args.compute_dtype, args.peak_tflops)
    tokens = steps * args.batch_size * args.seq_len
    rows = [("hand-written jit loop", hand_secs, hand_loss)]
    for k in args.steps_per_loop:
        secs, loss = estimator_run(model, data, warm, steps, k)
        rows.append((f"Estimator.train steps_per_loop={k}", secs, loss))

    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}, {jax.device_count()} device(s))")
    print(f"model: {args.num_layers} layers, d_model {args.d_model}, {args.num_heads} heads, context {args.seq_len}; "
          f"{lm.count_parameters(params):,} matmul params ({lm.count_parameters(params, False):,} total); "
          f"compute {args.compute_dtype}, grad accumulation {args.grad_accum}, {args.attention} attention")
    print(f"batch {args.batch_size} x {args.seq_len} tokens, {steps} timed steps after {warm} warm-up; "
          f"{flops_per_token / 1e6:.2f} MFLOP/token; peak {peak:.2f} TFLOP/s ({peak_source})")
    print(f"{'loop':<36}{'tokens/sec':>14}{'ms/step':>10}{'TFLOP/s':>10}{'MFU':>9}{'vs hand':>9}{'last loss':>11}")
    for name, secs, loss in rows:
        rate = tokens / secs
        tflops = rate * flops_per_token / 1e12
        print(f"{name:<36}{rate:>14,.0f}{1e3 * secs / steps:>10.2f}{tflops:>10.3f}{tflops / peak:>9.1%}"
              f"{(hand_secs / secs):>9.2f}{loss:>11.4f}")


if __name__ == "__main__":
    main()
