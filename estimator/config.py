"""YAML run configs validated against typed dataclass schemas, with dotted overrides.

``load_config("configs/taxi_fare.yaml", ["train.max_steps=2000"], schema)``
reads the file with ``yaml.safe_load``, applies the overrides (values parsed
as YAML, so ``model.hidden_units=[64,32]`` is a list), and builds the schema's
dataclasses. An unknown key names the closest valid key; a wrong type names
the key and the type expected. A float key also takes an int or a number in a
string: PyYAML reads ``1e-3`` (no dot, YAML 1.1) as the string ``"1e-3"``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal, Union

import yaml

from input_pipelines import fs


class ConfigError(ValueError):
    """A config file or override does not fit the schema; the message names the key."""


def bounded(default: Any, minimum: float | None = None, above: float | None = None) -> Any:
    """A schema field with a lower bound: ``batch_size: int = bounded(512, minimum=1)``.

    ``minimum`` is inclusive, ``above`` exclusive (``learning_rate: float = bounded(1e-3, above=0)``);
    None values (optional keys) are not checked. A value out of range is a ConfigError naming the key.
    """
    return dataclasses.field(default=default, metadata={"minimum": minimum, "above": above})


def _check_bounds(field: dataclasses.Field, value: Any, key: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    minimum, above = field.metadata.get("minimum"), field.metadata.get("above")
    if minimum is not None and value < minimum:
        raise ConfigError(f"config key {key!r} must be at least {minimum}, got {value!r}.")
    if above is not None and value <= above:
        raise ConfigError(f"config key {key!r} must be greater than {above}, got {value!r}.")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(item)}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


# A YAML 1.2 float. PyYAML follows YAML 1.1, which needs a dot, so ``1e-3`` arrives as a string.
_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _float_from_str(value: str, key: str) -> float:
    if _FLOAT_RE.fullmatch(value.strip()):
        return float(value)
    raise ConfigError(f"config key {key!r} must be float, got {value!r}, which is not a number; "
                      "write it like 0.001 or 1e-3.")


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping (section), got {type(value).__name__}.")
        return _build(tp, value, key)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r} must be {_type_name(tp)}, got {value!r}.")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key {key!r} must be one of {_type_name(tp)}, got {value!r}.")
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"config key {key!r} must be a {_type_name(tp)}, got {value!r}.")
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}.")
        return dict(value)
    if tp is type(None):
        if value is None:
            return None
    elif tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif tp is float and isinstance(value, str):
        return _float_from_str(value, key)
    elif tp is bool and isinstance(value, bool):
        return value
    elif tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"config key {key!r} must be {_type_name(tp)}, got {value!r} ({type(value).__name__}).")


def _build(schema: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1, cutoff=0.5)
            hint = f" Did you mean {(prefix + '.' if prefix else '') + close[0]!r}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}.{hint} Valid keys here: {sorted(fields)}.")
        kwargs[name] = _convert(value, hints[name], key)
        _check_bounds(fields[name], kwargs[name], key)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"config section {prefix or '<top>'!r} is missing required key(s) {missing}.")
    return schema(**kwargs)


def apply_override(tree: dict[str, Any], override: str) -> None:
    """Sets ``a.b.c=value`` in a nested dict; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.path=value, e.g. train.max_steps=2000.")
    path, raw = override.split("=", 1)
    keys = path.strip().split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {k!r} is not a section.")
        node = child
    node[keys[-1]] = yaml.safe_load(raw)


def load_raw(path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """The YAML file as a dict with the overrides applied (no validation)."""
    try:
        tree = yaml.safe_load(fs.read_text(path)) or {}
    except FileNotFoundError as error:
        raise ConfigError(f"config file {path!r} does not exist.") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path!r} is not valid YAML: {error}") from error
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping at the top level.")
    for override in overrides or []:
        apply_override(tree, override)
    return tree


def build(schema: type, tree: dict[str, Any], prefix: str = "") -> Any:
    """Validates a dict against a dataclass schema and returns the dataclass.

    ``prefix`` is the dotted key of the section, used in error messages.
    """
    return _build(schema, tree, prefix)


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a plain dict (for saving the resolved config)."""
    return dataclasses.asdict(config)


def dump(config: Any, path: str) -> None:
    """Writes the resolved config (a config dataclass or a plain dict) as YAML."""
    data = config if isinstance(config, dict) else to_dict(config)
    fs.write_atomically(path, yaml.safe_dump(data, sort_keys=False))
