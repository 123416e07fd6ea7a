"""scripts/evaluate.py --continuous on a taxi model trained in the test (synthetic data: runs on a
fresh clone, no ../shared needed)."""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import evaluate  # noqa: E402

from estimator import ModeKeys  # noqa: E402
from models import task, taxi_data  # noqa: E402


def test_continuous_evaluates_the_final_step_and_exports(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    taxi_data.write_taxi_shards(str(tmp_path / "train"), rows=400, shards=2, seed=1)
    taxi_data.write_taxi_shards(str(tmp_path / "valid"), rows=100, shards=1, seed=2)
    overrides = [f"run.model_dir={tmp_path / 'model'}", "run.save_checkpoints_steps=2", "run.steps_per_loop=1",
                 f"data.train_files={tmp_path}/train/*.csv", f"data.eval_files={tmp_path}/valid/*.csv",
                 "data.batch_size=16", "train.max_steps=4", "eval.steps=2", "export.exporters=[final]"]
    config = task.load_task_config("configs/taxi_fare.yaml", overrides)
    task.build_estimator(config).train(task.input_fn(config, ModeKeys.TRAIN), max_steps=4)

    code = evaluate.main(["--config", "configs/taxi_fare.yaml", "--set", *overrides,
                          "--continuous", "--poll_secs", "0.1", "--timeout_secs", "60"])
    assert code == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{"):])
    assert result["metrics"]["global_step"] == 4
    [export] = result["exports"]
    assert export.startswith(str(tmp_path / "model" / "export" / "final"))
    assert os.listdir(export)
    with open(tmp_path / "model" / "eval" / "results.jsonl") as f:
        assert [json.loads(line)["global_step"] for line in f] == [4]
