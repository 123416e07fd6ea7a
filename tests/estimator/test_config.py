"""estimator/config.py and models/task.py: schema validation, overrides, data-file checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from estimator import config as config_lib
from estimator.config import ConfigError
from models import task


@dataclasses.dataclass
class _Inner:
    max_steps: int = 10
    rate: float = 0.1
    units: list[int] = dataclasses.field(default_factory=lambda: [4])
    name: str | None = None


@dataclasses.dataclass
class _Outer:
    train: _Inner = dataclasses.field(default_factory=_Inner)


def _write(tmp_path: Path, tree: dict, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def _task_yaml(tmp_path: Path, **sections) -> str:
    (tmp_path / "train.csv").write_text("1.0,-73.9,40.7,-73.9,40.7,1,k\n")
    tree = {"model": {"name": "taxi_fare"},
            "data": {"train_files": str(tmp_path / "train.csv"), "eval_files": str(tmp_path / "train.csv")}}
    for key, value in sections.items():
        tree.setdefault(key, {}).update(value)
    return _write(tmp_path, tree)


def test_build_unknown_key_names_it_and_closest():
    with pytest.raises(ConfigError, match=r"'train\.max_step'.*Did you mean 'train\.max_steps'"):
        config_lib.build(_Outer, {"train": {"max_step": 5}})


def test_build_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"'train\.max_steps' must be int"):
        config_lib.build(_Outer, {"train": {"max_steps": "many"}})
    with pytest.raises(ConfigError, match=r"'train\.units\[1\]' must be int"):
        config_lib.build(_Outer, {"train": {"units": [1, "x"]}})


def test_build_converts_int_to_float_and_accepts_optional():
    out = config_lib.build(_Outer, {"train": {"rate": 1, "name": None}})
    assert out.train.rate == 1.0 and isinstance(out.train.rate, float)
    assert out.train.name is None


def test_build_reads_numbers_in_strings_for_float_keys():
    assert yaml.safe_load("rate: 1e-3")["rate"] == "1e-3"  # YAML 1.1: no dot, so a string
    for text, want in [("1e-3", 1e-3), ("-2.5E+2", -250.0), (".5", 0.5), ("3", 3.0)]:
        out = config_lib.build(_Outer, {"train": {"rate": text}})
        assert out.train.rate == want and isinstance(out.train.rate, float)
    for bad in ["fast", "1e-3x", "1_000", "nan", ""]:
        with pytest.raises(ConfigError, match=rf"'train\.rate' must be float, got '{bad}', which is not a number"):
            config_lib.build(_Outer, {"train": {"rate": bad}})
    with pytest.raises(ConfigError, match=r"'train\.max_steps' must be int"):  # only float keys convert
        config_lib.build(_Outer, {"train": {"max_steps": "1e3"}})


def test_task_config_float_without_dot_in_file_and_override(tmp_path):
    path = _task_yaml(tmp_path)
    path_text = Path(path).read_text().replace("name: taxi_fare", "name: taxi_fare\n  learning_rate: 2e-3")
    Path(path).write_text(path_text)
    assert task.load_task_config(path).model.learning_rate == 2e-3
    config = task.load_task_config(path, ["model.learning_rate=1e-3", "model.dropout=1e-1"])
    assert (config.model.learning_rate, config.model.dropout) == (1e-3, 0.1)
    assert config.to_dict()["model"]["learning_rate"] == 1e-3  # the resolved config holds the float
    with pytest.raises(ConfigError, match=r"'model\.learning_rate' must be float, got 'fast'"):
        task.load_task_config(path, ["model.learning_rate=fast"])


def test_overrides_are_parsed_as_yaml(tmp_path):
    path = _write(tmp_path, {"train": {"max_steps": 1}})
    tree = config_lib.load_raw(path, ["train.max_steps=2000", "train.units=[64, 32]", "train.name=null",
                                      "train.rate=0.001"])
    assert tree["train"] == {"max_steps": 2000, "units": [64, 32], "name": None, "rate": 0.001}


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.path=value"):
        config_lib.apply_override({}, "train.max_steps")


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        config_lib.load_raw(str(tmp_path / "nope.yaml"))


def test_task_config_unknown_model_key(tmp_path):
    path = _task_yaml(tmp_path, model={"hiden_units": [8]})
    with pytest.raises(ConfigError, match=r"'model\.hiden_units'.*'model\.hidden_units'"):
        task.load_task_config(path)


def test_task_config_unknown_section(tmp_path):
    path = _task_yaml(tmp_path, trian={"max_steps": 3})
    with pytest.raises(ConfigError, match=r"'trian'.*'train'"):
        task.load_task_config(path)


def test_task_config_wrong_type(tmp_path):
    path = _task_yaml(tmp_path)
    with pytest.raises(ConfigError, match=r"'train\.max_steps' must be int"):
        task.load_task_config(path, ["train.max_steps=lots"])
    with pytest.raises(ConfigError, match=r"'model\.variant' must be one of 'wide_deep' \| 'dnn'"):
        task.load_task_config(path, ["model.variant=cnn"])


def test_task_config_overrides_and_resolved_dict(tmp_path):
    path = _task_yaml(tmp_path)
    config = task.load_task_config(path, ["train.max_steps=7", "model.hidden_units=[16,8]", "run.model_dir=m"])
    assert config.train.max_steps == 7
    assert config.model.hidden_units == [16, 8]
    resolved = config.to_dict()
    assert resolved["run"]["model_dir"] == "m"
    out = tmp_path / "resolved.yaml"
    config_lib.dump(resolved, str(out))
    assert yaml.safe_load(out.read_text())["model"]["hidden_units"] == [16, 8]


def test_task_config_missing_data_file_names_path(tmp_path):
    path = _task_yaml(tmp_path, data={"eval_files": str(tmp_path / "missing-*.csv")})
    with pytest.raises(ConfigError, match=r"data\.eval_files.*missing-\*\.csv"):
        task.load_task_config(path)
    assert task.load_task_config(path, check_files=False).data.eval_files.endswith("missing-*.csv")


def test_task_config_unknown_model_name(tmp_path):
    path = _task_yaml(tmp_path, model={"name": "taxi_far"})
    with pytest.raises(ConfigError, match=r"'model\.name'.*'taxi_fare'"):
        task.load_task_config(path)


@pytest.mark.parametrize("name", ["taxi_fare.yaml", "taxi_fare_course.yaml", "taxi_fare_feateng.yaml"])
def test_shipped_configs_validate(name):
    config = task.load_task_config(str(Path(__file__).parents[2] / "configs" / name), check_files=False)
    assert config.model.name == "taxi_fare"
