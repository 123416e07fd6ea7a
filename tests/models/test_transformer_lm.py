"""models/transformer_lm: input windows, causal attention, parameter count, and a tiny bf16 +
gradient-accumulation training run on CPU whose loss goes down."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from estimator import Hook, InputContext, ModeKeys, RunConfig, nn
from models import task
from models import transformer_lm as lm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = lm.ModelParams(num_layers=2, d_model=32, num_heads=4, learning_rate=1e-2, warmup_steps=5,
                      compute_dtype="bfloat16", gradient_accumulation_steps=2)
DATA = lm.DataParams(text_modules=["difflib"], seq_len=32, batch_size=8, eval_batch_size=8)


def _batches(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_training_windows_are_deterministic_shifted_and_resumable():
    fn = lm.input_fn(DATA, ModeKeys.TRAIN, seed=3)
    first, again = _batches(fn(), 4), _batches(fn(), 4)
    text = bytes(lm.load_text(["difflib"]))
    for (features, labels), (features2, labels2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(features["tokens"], features2["tokens"])
        np.testing.assert_array_equal(labels, labels2)
        assert features["tokens"].shape == labels.shape == (8, 32) and labels.dtype == np.int32
        np.testing.assert_array_equal(features["tokens"][:, 1:], labels[:, :-1])
        for row, target in zip(features["tokens"], labels, strict=True):  # a real window of the text
            assert bytes(np.append(row, target[-1]).astype(np.uint8)) in text
    resumed = fn()
    resumed.restore({"index": 2})
    np.testing.assert_array_equal(next(resumed)[0]["tokens"], first[2][0]["tokens"])
    other_seed = next(lm.input_fn(DATA, ModeKeys.TRAIN, seed=4)())[0]["tokens"]
    assert not np.array_equal(other_seed, first[0][0]["tokens"])


def test_each_process_reads_its_own_half_batch():
    fn = lm.input_fn(DATA, ModeKeys.TRAIN)
    a = next(fn(input_context=InputContext(2, 0, 2)))[0]["tokens"]
    b = next(fn(input_context=InputContext(2, 1, 2)))[0]["tokens"]
    assert a.shape == b.shape == (4, 32) and not np.array_equal(a, b)


def test_evaluation_reads_the_held_out_text_once():
    _, eval_text = lm.split_text(lm.load_text(["difflib"]), DATA.eval_fraction)
    batches = list(lm.input_fn(DATA, ModeKeys.EVAL)())
    assert len(batches) == (len(eval_text) - 1) // (8 * 32)  # every window needs its next byte
    tokens = np.concatenate([f["tokens"].reshape(-1) for f, _ in batches])
    np.testing.assert_array_equal(tokens, eval_text[:len(tokens)])


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN attention needs an NVIDIA GPU (run on a GPU machine)")
def test_cudnn_attention_computes_the_xla_attention():
    def attention(x, implementation):
        with nn.mixed_precision(np.dtype("bfloat16")):
            return lm.causal_self_attention(x, num_heads=4, implementation=implementation)

    x = np.random.default_rng(0).normal(size=(2, 128, 64)).astype(np.float32)
    xla, fused = (nn.transform(lambda x, impl=impl: attention(x, impl)) for impl in ("xla", "cudnn"))
    params, _ = xla.init(jax.random.PRNGKey(0), x)
    want = np.asarray(xla.apply(params, {}, None, x)[0], np.float32)
    got = np.asarray(fused.apply(params, {}, None, x)[0], np.float32)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 2e-2  # bf16 operands


def test_attention_is_causal_and_parameters_are_named_readably():
    model = nn.transform(lambda tokens: lm.forward(tokens, TINY))
    tokens = np.arange(2 * 16, dtype=np.int32).reshape(2, 16) % 256
    params, _ = model.init(jax.random.PRNGKey(0), tokens)
    changed = tokens.copy()
    changed[:, 10] = 7
    logits, _ = model.apply(params, {}, None, tokens)
    logits2, _ = model.apply(params, {}, None, changed)
    assert logits.shape == (2, 16, 256)
    np.testing.assert_array_equal(np.asarray(logits[:, :10]), np.asarray(logits2[:, :10]))
    assert not np.allclose(np.asarray(logits[:, 10:]), np.asarray(logits2[:, 10:]))
    names = nn.flatten_names(params)
    assert {"token_embedding/embeddings", "position_embedding", "block_1/attention/query/kernel",
            "block_0/mlp/dense_in/kernel", "final_ln/gamma", "lm_head/kernel"} <= set(names)
    d = 32
    per_block = 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * 2 * d
    assert lm.count_parameters(params) == 2 * per_block + 2 * d + (d * 256 + 256)
    assert lm.train_flops_per_token(params, TINY, 16) == 6 * lm.count_parameters(params) + 12 * 2 * d * 16


class _Losses(Hook):
    def __init__(self):
        self.losses = []

    def after_run(self, run_context, values):
        self.losses.append(float(values.loss))


def test_tiny_model_learns_with_bf16_and_gradient_accumulation(tmp_path):
    est = lm.build_estimator(TINY, DATA, RunConfig(model_dir=str(tmp_path), random_seed=0))
    assert est.config.compute_dtype == "bfloat16" and est.config.gradient_accumulation_steps == 2
    recorder = _Losses()
    est.train(lm.input_fn(DATA, ModeKeys.TRAIN), hooks=[recorder], max_steps=40)
    losses = recorder.losses
    assert len(losses) == 40 and np.all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 1.0, losses
    assert est.get_variable_value("block_0/attention/query/kernel").dtype == np.float32
    result = est.evaluate(lm.input_fn(DATA, ModeKeys.EVAL), steps=2)
    assert result["global_step"] == 40 and result["loss"] < np.log(256)
    assert 0.0 < result["accuracy"] < 1.0
    np.testing.assert_allclose(result["bits_per_byte"], result["loss"] / np.log(2), rtol=1e-5)


def test_the_config_builds_through_the_task_registry():
    config = task.load_task_config(os.path.join(ROOT, "configs", "transformer_lm.yaml"), ["model.num_layers=1"])
    assert isinstance(config.model, lm.ModelParams) and config.model.num_layers == 1
    est = task.build_estimator(config)
    assert est.config.compute_dtype == "bfloat16" and est.config.gradient_accumulation_steps == 2
    assert task.serving_input(config) == {"tokens": ("int32", [config.data.seq_len])}


@pytest.mark.parametrize("modules", [["no_such_module_xyz"], ["math"]])
def test_unreadable_text_modules_say_which_key(modules):
    with pytest.raises(lm.TextSourceError, match="data.text_modules"):
        lm.load_text(modules)
