"""Parameter scope: ``transform(fn)`` gives pure ``init`` / ``apply``; names, variables, RNG.

The frame of one ``init``/``apply`` call, the names it hands out (:func:`scope`,
:class:`Module`), the variables it creates (:func:`get_parameter`,
:func:`get_state`, :func:`set_state`), its keys (:func:`next_rng_key`) and the
compute dtype (:func:`mixed_precision`). The layers built on it live in
``estimator.nn.layers``; the package docstring shows how they fit together.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import difflib
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Initializer = Callable[[Array, tuple[int, ...], Any], Array]

__all__ = [
    "InvalidNameError", "MissingParameterError", "Module", "NNError", "ParameterShapeError",
    "RngError", "ScopeError", "Transformed", "compute_dtype", "flatten_names", "get_parameter",
    "get_state", "mixed_precision", "next_rng_key", "scope", "set_state", "transform",
    "unflatten_names",
]


class NNError(Exception):
    """Base class of the errors raised by ``estimator.nn``."""


class ScopeError(NNError, RuntimeError):
    """An ``nn`` function that needs a transform frame was called outside ``transform``."""


class InvalidNameError(NNError, ValueError):
    """A scope, module, parameter or state name is empty, not a string, or contains '/'."""


class ParameterShapeError(NNError, ValueError):
    """A parameter or state exists with another shape than the one requested."""


class MissingParameterError(NNError, LookupError):
    """``apply`` needs a parameter or state that the given ``params``/``state`` lack."""


class RngError(NNError, RuntimeError):
    """``next_rng_key`` was called but no PRNG key was given to ``init``/``apply``."""


_GLOROT_UNIFORM: Initializer = jax.nn.initializers.glorot_uniform()
_ZEROS: Initializer = jax.nn.initializers.zeros


def _default_init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
    """Keras ``add_weight``'s default: glorot-uniform, with keras's fans for shapes below 2-D
    (``fan_in = fan_out = n`` for ``(n,)``, 1 for a scalar), where jax's version refuses."""
    if len(shape) >= 2:
        return _GLOROT_UNIFORM(key, shape, dtype)
    limit = (3.0 / (shape[0] if shape else 1)) ** 0.5  # sqrt(6 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, minval=-limit, maxval=limit)


# ----------------------------------------------------------------------------- names


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name:
        raise InvalidNameError(
            f"invalid {what} name {name!r}: use a non-empty string without '/' "
            "(nest names with nn.scope instead)")
    return name


def flatten_names(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Flattens a nested dict into ``{"a/b/c": leaf}``; empty sub-dicts disappear."""
    flat: dict[str, Any] = {}

    def visit(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}/{_check_name(key, 'tree key')}" if prefix else _check_name(key, "tree key")
            if isinstance(value, Mapping):
                visit(value, path)
            else:
                flat[path] = value

    visit(tree, "")
    return flat


def unflatten_names(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_names`: ``{"a/b": x}`` -> ``{"a": {"b": x}}``."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        parts = [_check_name(part, f"path {path!r} component") for part in str(path).split("/")]
        node = tree
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidNameError(
                    f"{path!r} lies under {'/'.join(parts[:i + 1])!r}, which is a leaf")
        if parts[-1] in node:
            raise InvalidNameError(f"{path!r} is both a leaf and a scope holding other names")
        node[parts[-1]] = value
    return tree


# ----------------------------------------------------------------------------- frames


@dataclasses.dataclass
class _Frame:
    """The mutable bookkeeping of one ``init`` or ``apply`` call (never outlives it)."""

    initializing: bool
    params: dict[str, Array]
    state: dict[str, Array]
    init_rng: Array | None
    rng: Array | None
    rng_count: int = 0
    scopes: list[tuple[str, ...]] = dataclasses.field(default_factory=lambda: [()])
    used_names: dict[tuple[str, ...], set[str]] = dataclasses.field(default_factory=dict)
    modules: dict[int, tuple[Module, tuple[str, ...]]] = dataclasses.field(default_factory=dict)

    def claim(self, name: str) -> str:
        """Records ``name`` as used in the current scope and returns it."""
        self.used_names.setdefault(self.scopes[-1], set()).add(name)
        return name

    def unique(self, base: str) -> str:
        """Keras-style unique name in the current scope: base, base_1, base_2, ..."""
        used = self.used_names.setdefault(self.scopes[-1], set())
        name, i = base, 0
        while name in used:
            i += 1
            name = f"{base}_{i}"
        return self.claim(name)

    def module_path(self, module: Module) -> tuple[str, ...]:
        """The scope path of ``module``, resolved at its first sight in this frame."""
        entry = self.modules.get(id(module))
        if entry is None:
            name = module._name
            name = self.unique(module.default_name) if name is None else self.claim(name)
            entry = self.modules[id(module)] = (module, self.scopes[-1] + (name,))
        return entry[1]


_FRAMES: contextvars.ContextVar[tuple[_Frame, ...]] = contextvars.ContextVar(
    "estimator_nn_frames", default=())
_COMPUTE_DTYPE: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "estimator_nn_compute_dtype", default=None)


def _frame(what: str) -> _Frame:
    frames = _FRAMES.get()
    if not frames:
        raise ScopeError(
            f"nn.{what} was called outside nn.transform: call it from inside the function "
            "given to nn.transform(fn), through the returned init/apply")
    return frames[-1]


def _run(frame: _Frame, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    token = _FRAMES.set(_FRAMES.get() + (frame,))
    try:
        return fn(*args, **kwargs)
    finally:
        _FRAMES.reset(token)


def _as_key(rng: Any) -> Array:
    return jax.random.PRNGKey(rng) if isinstance(rng, int) else rng


class Transformed(NamedTuple):
    """A pair of pure functions made by :func:`transform`.

    Attributes:
      init: ``init(rng, *args, **kwargs) -> (params, state)``.
      apply: ``apply(params, state, rng, *args, **kwargs) -> (out, new_state)``;
        ``rng`` may be None when the function draws no random keys.
    """

    init: Callable[..., tuple[dict[str, Any], dict[str, Any]]]
    apply: Callable[..., tuple[Any, dict[str, Any]]]


def transform(fn: Callable[..., Any]) -> Transformed:
    """Turns ``fn``, which creates parameters through ``nn``, into pure ``init``/``apply``.

    ``init`` runs ``fn`` once and returns the nested ``params`` and ``state`` it
    created (states at their initial values: ``set_state`` during init does not
    update a state that already exists, as building a keras layer does not move
    its statistics). ``apply`` runs ``fn`` with the given values and returns its
    output and the new state (states not set keep their value). Both are pure,
    so they can be wrapped in ``jax.jit`` / ``jax.grad``.
    """

    def init(rng: Array | int, *args: Any, **kwargs: Any) -> tuple[dict, dict]:
        if rng is None:
            raise RngError("init needs a PRNG key to draw initial values, e.g. jax.random.key(0)")
        init_rng, rng = jax.random.split(_as_key(rng))
        frame = _Frame(True, {}, {}, init_rng, rng)
        _run(frame, fn, args, kwargs)
        return unflatten_names(frame.params), unflatten_names(frame.state)

    def apply(params: Mapping[str, Any], state: Mapping[str, Any] | None, rng: Array | int | None,
              *args: Any, **kwargs: Any) -> tuple[Any, dict]:
        frame = _Frame(False, flatten_names(params), flatten_names(state or {}), None,
                       None if rng is None else _as_key(rng))
        out = _run(frame, fn, args, kwargs)
        return out, unflatten_names(frame.state)

    return Transformed(init, apply)


@contextlib.contextmanager
def scope(name: str) -> Iterator[str]:
    """Nests the names created inside under ``name``; yields the scope's full path.

    Entering the same name twice reuses its parameters (``with scope("dnn")``).
    """
    frame = _frame("scope")
    path = frame.scopes[-1] + (frame.claim(_check_name(name, "scope")),)
    frame.scopes.append(path)
    try:
        yield "/".join(path)
    finally:
        frame.scopes.pop()


# ----------------------------------------------------------------------------- variables


def _get(kind: str, store: dict[str, Array], name: str, shape: Sequence[int], dtype: Any,
         init: Initializer) -> Array:
    frame = _frame(f"get_{kind}")
    path = "/".join(frame.scopes[-1] + (_check_name(name, kind),))
    shape = tuple(int(d) for d in shape)
    if path in store:
        have = tuple(store[path].shape)
        if have != shape:
            where = ("already exists with" if frame.initializing
                     else "was given to apply (from another model or config?) with")
            raise ParameterShapeError(
                f"{kind} {path!r} {where} shape {have}, but shape {shape} was requested; "
                "a reused name must ask for the same shape (give the layers different names)")
        return store[path]
    if not frame.initializing:
        close = difflib.get_close_matches(path, list(store), n=3)
        hint = f"; similar names: {close}" if close else ""
        raise MissingParameterError(
            f"{kind} {path!r} is missing from the {'params' if kind == 'parameter' else 'state'} "
            f"given to apply ({len(store)} entries){hint}; make them with init of the same "
            "transformed function, called the same way")
    value = jnp.asarray(init(jax.random.fold_in(frame.init_rng, zlib.crc32(path.encode())),
                             shape, dtype), dtype)
    if tuple(value.shape) != shape:
        raise ParameterShapeError(
            f"the initialiser of {kind} {path!r} returned shape {tuple(value.shape)}, not {shape}")
    store[path] = value
    return value


def get_parameter(name: str, shape: Sequence[int], dtype: Any = jnp.float32,
                  init: Initializer | None = None) -> Array:
    """The parameter ``name`` in the current scope, created by ``init(key, shape, dtype)``.

    ``init`` defaults to glorot-uniform (keras ``add_weight``'s default). A name
    already created returns the same parameter; asking it with another shape
    raises :class:`ParameterShapeError`.
    """
    frame = _frame("get_parameter")
    return _get("parameter", frame.params, name, shape, dtype, init or _default_init)


def get_state(name: str, shape: Sequence[int], dtype: Any = jnp.float32,
              init: Initializer = _ZEROS) -> Array:
    """The state ``name`` (e.g. running statistics) in the current scope; created by ``init``."""
    frame = _frame("get_state")
    return _get("state", frame.state, name, shape, dtype, init)


def set_state(name: str, value: Array) -> None:
    """Sets the state ``name`` in the current scope; ``apply`` returns it in ``new_state``.

    In ``init`` this creates a state not yet created (and leaves an existing one
    at its initial value). In ``apply`` the state must exist, and keeps its
    shape and dtype.
    """
    frame = _frame("set_state")
    path = "/".join(frame.scopes[-1] + (_check_name(name, "state"),))
    value = jnp.asarray(value)
    old = frame.state.get(path)
    if old is None:
        if not frame.initializing:
            raise MissingParameterError(
                f"state {path!r} is set in apply but missing from the state given to apply; "
                "make the state with init of the same transformed function")
        frame.state[path] = value
        return
    if tuple(old.shape) != tuple(value.shape):
        raise ParameterShapeError(
            f"state {path!r} has shape {tuple(old.shape)}, cannot set a value of shape "
            f"{tuple(value.shape)}")
    if not frame.initializing:
        frame.state[path] = value.astype(old.dtype)


def next_rng_key() -> Array:
    """A fresh PRNG key, derived from the key given to ``init``/``apply`` and a call counter."""
    frame = _frame("next_rng_key")
    if frame.rng is None:
        raise RngError(
            "nn.next_rng_key() needs a PRNG key, but apply was called with rng=None; pass a "
            "key (jax.random.key(0)) to apply, or call layers such as Dropout with training=False")
    key = jax.random.fold_in(frame.rng, frame.rng_count)
    frame.rng_count += 1
    return key


# ----------------------------------------------------------------------------- precision


@contextlib.contextmanager
def mixed_precision(dtype: Any) -> Iterator[None]:
    """Makes Dense/Conv2D/Embed compute in ``dtype`` (e.g. bfloat16); params stay float32.

    Layers return results in that dtype; LayerNorm/BatchNorm compute their
    statistics in float32 and return the input's dtype. ``None`` turns it off.
    It acts when the function is traced: a jitted function keeps the setting it
    was compiled with.
    """
    if dtype is not None:
        dtype = jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"mixed_precision needs a floating dtype, got {dtype}")
    token = _COMPUTE_DTYPE.set(dtype)
    try:
        yield
    finally:
        _COMPUTE_DTYPE.reset(token)


def compute_dtype(param_dtype: Any = jnp.float32) -> Any:
    """The dtype layers compute in: the :func:`mixed_precision` dtype, else ``param_dtype``."""
    dtype = _COMPUTE_DTYPE.get()
    return jnp.dtype(param_dtype) if dtype is None else dtype


# ----------------------------------------------------------------------------- modules


class Module:
    """Base class of layers: an optional explicit name, else a keras-style default.

    The name is resolved in the enclosing scope when the module is built inside
    a transform (or at its first call): ``default_name``, then ``_1``, ``_2``...
    Subclasses create their variables inside ``with self.name_scope():``.
    """

    default_name = "module"

    def __init__(self, name: str | None = None) -> None:
        self._name = None if name is None else _check_name(name, "module")
        frames = _FRAMES.get()
        if frames:
            frames[-1].module_path(self)

    @contextlib.contextmanager
    def name_scope(self) -> Iterator[str]:
        """Enters this module's scope; yields its full path (``dnn/hiddenlayer_0``)."""
        frame = _frame(f"{type(self).__name__}.__call__")
        path = frame.module_path(self)
        frame.scopes.append(path)
        try:
            yield "/".join(path)
        finally:
            frame.scopes.pop()

