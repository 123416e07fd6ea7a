"""A small decoder-only transformer language model over bytes of Python stdlib source text.

The text is the source of a few standard-library modules (``inspect.getsource``:
always installed, no download), read as UTF-8 bytes, so the vocabulary is the
256 byte values. Training windows are drawn at seeded random offsets from the
first ``1 - eval_fraction`` of the text; evaluation reads the rest once in
consecutive windows. ``features = {"tokens": int32[batch, seq_len]}`` and
``labels = int32[batch, seq_len]`` (the next byte of each position).

The model is the GPT-2 layout (pre-LayerNorm blocks of causal multi-head
self-attention and a GELU MLP, learned positions) written with ``estimator.nn``
layers and ``jnp``; parameter names read ``block_0/attention/query/kernel``.
It exercises ``RunConfig(compute_dtype="bfloat16")`` (matmuls in bf16, softmax,
LayerNorm and the loss in float32) and ``gradient_accumulation_steps``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from estimator import Estimator, EstimatorSpec, InputContext, ModeKeys, RunConfig, metrics, nn
from estimator.config import bounded

VOCAB_SIZE = 256  # bytes


class TextSourceError(ValueError):
    """The configured text modules cannot be read, or give too little text for the windows."""


@dataclasses.dataclass
class ModelParams:
    """``model:`` section of a transformer_lm config.

    ``compute_dtype`` and ``gradient_accumulation_steps`` are applied to the
    RunConfig by :func:`build_estimator` (the run section has no such fields).
    ``attention`` is ``"xla"`` (plain jnp ops, any platform) or ``"cudnn"``
    (cuDNN's fused flash-attention kernel: NVIDIA GPUs, bfloat16/float16 compute).
    """

    name: str = "transformer_lm"
    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    mlp_ratio: int = 4
    learning_rate: float = bounded(3e-3, above=0)
    warmup_steps: int = 50
    weight_decay: float = 0.01
    compute_dtype: str | None = None
    gradient_accumulation_steps: int = 1
    attention: Literal["xla", "cudnn"] = "xla"


@dataclasses.dataclass
class DataParams:
    """``data:`` section: which stdlib modules give the text, window length and batch."""

    text_modules: list[str] = dataclasses.field(default_factory=lambda: ["difflib", "textwrap", "argparse"])
    seq_len: int = 64
    batch_size: int = bounded(32, minimum=1)
    eval_batch_size: int = bounded(32, minimum=1)
    eval_fraction: float = 0.1


# ----------------------------------------------------------------------------- data


def load_text(modules: list[str]) -> np.ndarray:
    """The source of ``modules`` as one uint8 array (bytes), modules separated by a blank line."""
    parts = []
    for name in modules:
        try:
            parts.append(inspect.getsource(importlib.import_module(name)))
        except (ImportError, OSError, TypeError) as error:
            raise TextSourceError(
                f"config key 'data.text_modules': cannot read the source of module {name!r} ({error}); "
                "name pure-Python standard-library modules such as 'difflib' or 'argparse'."
            ) from None
    return np.frombuffer("\n\n".join(parts).encode("utf-8"), dtype=np.uint8)


def split_text(text: np.ndarray, eval_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train, eval)`` parts: the first ``1 - eval_fraction`` of the bytes and the rest."""
    cut = int(round(len(text) * (1.0 - eval_fraction)))
    return text[:cut], text[cut:]


class WindowIterator:
    """Batches of ``({"tokens": x}, y)`` windows of ``seq_len + 1`` bytes; ``y`` is ``x`` shifted by one.

    Training (``random=True``): each batch's offsets are drawn from a generator
    seeded with ``(seed, pipeline_id, batch_index)``, forever; so a batch depends
    only on its index and the position is one integer (``state()``/``restore()``).
    Evaluation: consecutive windows from the start, one pass, the last short
    batch dropped.
    """

    def __init__(self, text: np.ndarray, seq_len: int, batch_size: int, random: bool, seed: int = 0,
                 pipeline_id: int = 0):
        if len(text) < seq_len + 2:
            raise TextSourceError(f"the text has {len(text)} bytes, fewer than seq_len + 2 = {seq_len + 2}; "
                                  "add data.text_modules or lower data.seq_len / data.eval_fraction.")
        self.text, self.seq_len, self.batch_size = text, seq_len, batch_size
        self.random, self.seed, self.pipeline_id = random, seed, pipeline_id
        self.index = 0

    def __iter__(self) -> WindowIterator:
        return self

    def _offsets(self) -> np.ndarray:
        if self.random:
            rng = np.random.default_rng([self.seed, self.pipeline_id, self.index])
            return rng.integers(0, len(self.text) - self.seq_len - 1, size=self.batch_size)
        start = self.index * self.batch_size * self.seq_len
        offsets = start + self.seq_len * np.arange(self.batch_size)
        if offsets[-1] + self.seq_len + 1 > len(self.text):
            raise StopIteration
        return offsets

    def __next__(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        offsets = self._offsets()
        windows = self.text[offsets[:, None] + np.arange(self.seq_len + 1)].astype(np.int32)
        self.index += 1
        return {"tokens": windows[:, :-1]}, windows[:, 1:]

    def state(self) -> dict[str, int]:
        """The position: batches delivered so far."""
        return {"index": self.index}

    def restore(self, state: dict[str, int]) -> None:
        """Continues after ``state()``'s batch."""
        self.index = int(state["index"])


def input_fn(data: DataParams, mode: str, seed: int = 0):
    """An input_fn: random training windows (per-process stream and batch) or one pass over the eval text."""
    training = mode == ModeKeys.TRAIN

    def fn(input_context: InputContext | None = None) -> WindowIterator:
        context = input_context or InputContext()
        train_text, eval_text = split_text(load_text(data.text_modules), data.eval_fraction)
        global_batch = data.batch_size if training else data.eval_batch_size
        batch = context.get_per_process_batch_size(global_batch)
        return WindowIterator(train_text if training else eval_text, data.seq_len, batch, training, seed,
                              context.input_pipeline_id)

    return fn


def serving_input(data: DataParams) -> dict[str, Any]:
    """Clients send ``tokens``: int32 byte values, ``seq_len`` per example."""
    return {"tokens": ("int32", [data.seq_len])}


# ----------------------------------------------------------------------------- model


def causal_self_attention(x: jax.Array, num_heads: int, name: str = "attention", implementation: str = "xla") -> jax.Array:
    """Multi-head causal self-attention over ``x[batch, time, d]``; scores and softmax in float32.

    ``implementation="cudnn"`` runs the same function as one fused cuDNN kernel.
    """
    batch, time, d = x.shape
    if d % num_heads:
        raise ValueError(f"d_model={d} is not divisible by num_heads={num_heads}")
    head = d // num_heads
    with nn.scope(name):
        def heads(layer: str) -> jax.Array:
            return nn.Dense(d, name=layer)(x).reshape(batch, time, num_heads, head)

        q, k, v = heads("query"), heads("key"), heads("value")
        if implementation == "cudnn":
            out = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
            return nn.Dense(d, name="output")(out.reshape(batch, time, d))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / np.sqrt(head)
        mask = np.tril(np.ones((time, time), dtype=bool))
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, time, d)
        return nn.Dense(d, name="output")(out)


def forward(tokens: jax.Array, p: ModelParams) -> jax.Array:
    """Logits ``float32[batch, time, 256]`` of the next byte at every position."""
    time = tokens.shape[1]
    x = nn.Embed(VOCAB_SIZE, p.d_model, name="token_embedding")(tokens)
    positions = nn.get_parameter("position_embedding", (time, p.d_model),
                                 init=jax.nn.initializers.normal(0.02))
    x = x + positions.astype(x.dtype)
    for i in range(p.num_layers):
        with nn.scope(f"block_{i}"):
            x = x + causal_self_attention(nn.LayerNorm(epsilon=1e-5, name="ln_1")(x), p.num_heads,
                                          implementation=p.attention)
            h = nn.LayerNorm(epsilon=1e-5, name="ln_2")(x)
            with nn.scope("mlp"):
                h = nn.Dense(p.mlp_ratio * p.d_model, activation="gelu", name="dense_in")(h)
                x = x + nn.Dense(p.d_model, name="dense_out")(h)
    x = nn.LayerNorm(epsilon=1e-5, name="final_ln")(x)
    return nn.Dense(VOCAB_SIZE, name="lm_head")(x).astype(jnp.float32)


def optimizer(p: ModelParams) -> optax.GradientTransformation:
    """AdamW with linear warm-up then constant rate, gradients clipped to norm 1."""
    schedule = optax.linear_schedule(0.0, p.learning_rate, max(1, p.warmup_steps))
    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.adamw(schedule, b1=0.9, b2=0.98, weight_decay=p.weight_decay))


def model_fn(features: dict[str, Any], labels: Any, mode: str, params: dict[str, Any]) -> EstimatorSpec:
    """Next-byte prediction; loss is the mean cross-entropy (nats) over all positions."""
    p = ModelParams(**params)
    logits = forward(features["tokens"], p)
    last = jax.nn.log_softmax(logits[:, -1, :])
    predictions = {"next_token": jnp.argmax(last, axis=-1).astype(jnp.int32), "next_token_log_probs": last}
    if mode == ModeKeys.PREDICT:
        return EstimatorSpec(mode, predictions=predictions)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    loss = jnp.mean(nll)
    eval_metrics = {
        "accuracy": metrics.Accuracy()(labels, jnp.argmax(logits, axis=-1)),
        "bits_per_byte": metrics.Mean()(nll / np.log(2.0)),
    }
    return EstimatorSpec(mode, predictions=predictions, loss=loss, optimizer=optimizer(p),
                         eval_metrics=eval_metrics)


def build_estimator(model: ModelParams, data: DataParams, run_config: RunConfig) -> Estimator:
    """The Estimator a config describes (``model.compute_dtype`` etc. go into the RunConfig)."""
    config = run_config.replace(compute_dtype=model.compute_dtype,
                                gradient_accumulation_steps=model.gradient_accumulation_steps)
    return Estimator(model_fn, config=config, params=dataclasses.asdict(model))


def count_parameters(params: Any, exclude_embeddings: bool = True) -> int:
    """Number of parameters; without the token/position tables (lookups, not matmuls) by default."""
    flat = nn.flatten_names(params)
    skip = ("token_embedding/embeddings", "position_embedding") if exclude_embeddings else ()
    return int(sum(np.size(v) for k, v in flat.items() if k not in skip))


def train_flops_per_token(params: Any, p: ModelParams, seq_len: int) -> float:
    """Training FLOPs per token: ``6 N`` (matmul params, forward + backward) plus attention's
    ``12 * layers * d_model * seq_len`` (PaLM's count, no causal discount)."""
    return 6.0 * count_parameters(params) + 12.0 * p.num_layers * p.d_model * seq_len
