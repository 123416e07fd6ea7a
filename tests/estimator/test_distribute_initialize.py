"""distribute.initialize settings: RunConfig, JAX_* environment, TF_CONFIG, cluster detection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from estimator import RunConfig, distribute
from estimator.distribute import ClusterSpec, DistributedInitError, resolve_cluster


def _tf_config(task_type: str, index: int = 0, **cluster) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def test_plain_laptop_is_single_process():
    spec = resolve_cluster(None, {"HOME": "/root", "PATH": "/bin"})
    assert spec == ClusterSpec("single", None, 1, 0, "none")
    assert not spec.multi_process


def test_run_config_settings_win_over_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.9:1", "JAX_NUM_PROCESSES": "8", "JAX_PROCESS_ID": "7"}
    spec = resolve_cluster(RunConfig(coordinator_address="h:1234", num_processes=4, process_id=2), env)
    assert spec == ClusterSpec("worker", "h:1234", 4, 2, "run_config")
    assert spec.multi_process


def test_run_config_missing_fields_come_from_environment():
    spec = resolve_cluster(RunConfig(num_processes=2), {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "0"})
    assert spec == ClusterSpec("chief", "h:1", 2, 0, "run_config")


def test_environment_settings():
    env = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:5000", "JAX_NUM_PROCESSES": "3", "JAX_PROCESS_ID": "1"}
    assert resolve_cluster(None, env) == ClusterSpec("worker", "127.0.0.1:5000", 3, 1, "env")


def test_one_process_from_environment_starts_nothing():
    spec = resolve_cluster(None, {"JAX_NUM_PROCESSES": "1"})
    assert spec.role == "single" and not spec.multi_process


@pytest.mark.parametrize("env, words", [
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "process_id=2"),
    ({"JAX_COORDINATOR_ADDRESS": "h", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}, "host:port"),
    ({"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES must be an integer"),
])
def test_bad_settings_are_named(env, words):
    with pytest.raises(DistributedInitError, match=words):
        resolve_cluster(None, env)


def test_tf_config_chief_and_workers_map_to_process_ids():
    cluster = {"chief": ["c:2222"], "worker": ["w0:2222", "w1:2222"], "evaluator": ["e:2222"]}
    assert resolve_cluster(None, _tf_config("chief", **cluster)) == ClusterSpec("chief", "c:2222", 3, 0, "TF_CONFIG")
    assert resolve_cluster(None, _tf_config("worker", 0, **cluster)).process_id == 1
    spec = resolve_cluster(None, _tf_config("worker", 1, **cluster))
    assert spec == ClusterSpec("worker", "c:2222", 3, 2, "TF_CONFIG")


def test_tf_config_without_chief_uses_worker_zero_as_coordinator():
    spec = resolve_cluster(None, _tf_config("worker", 1, worker=["w0:1", "w1:1"]))
    assert spec == ClusterSpec("worker", "w0:1", 2, 1, "TF_CONFIG")


def test_tf_config_evaluator_is_marked_and_not_started():
    env = _tf_config("evaluator", chief=["c:1"], worker=["w:1"], evaluator=["e:1"])
    spec = resolve_cluster(None, env)
    assert spec.role == distribute.EVALUATOR and not spec.multi_process
    assert distribute.is_evaluator(None, env)


@pytest.mark.parametrize("env, words", [
    (_tf_config("ps", chief=["c:1"], ps=["p:1"]), "parameter servers"),
    (_tf_config("worker", 3, chief=["c:1"], worker=["w:1"]), "not in the cluster spec"),
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not a JSON object"),
])
def test_bad_tf_config_is_named(env, words):
    with pytest.raises(DistributedInitError, match=words):
        resolve_cluster(None, env)


def test_cluster_detection_only_with_a_known_multi_process_environment():
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    assert resolve_cluster(None, {**slurm, "SLURM_NTASKS": "1"}).role == "single"
    assert resolve_cluster(None, {"SLURM_JOB_ID": "7"}).role == "single"  # sbatch shell, no srun step
    spec = resolve_cluster(None, {**slurm, "SLURM_NTASKS": "2"})
    assert spec.source == "cluster_detection" and spec.multi_process
    assert resolve_cluster(None, {"TPU_WORKER_HOSTNAMES": "t0,t1"}).multi_process
    assert not resolve_cluster(None, {"TPU_WORKER_HOSTNAMES": "t0"}).multi_process
    assert resolve_cluster(None, {"ESTIMATOR_CLUSTER_DETECTION": "1"}).multi_process


def test_initialize_on_one_process_returns_false_and_is_idempotent():
    assert distribute.initialize(RunConfig()) is False
    assert distribute.initialize(RunConfig()) is False


@pytest.mark.slow
def test_an_error_in_one_process_fails_the_job_instead_of_hanging():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    job = textwrap.dedent("""
        import jax
        from jax.experimental import multihost_utils
        from estimator import distribute
        distribute.initialize()
        if jax.process_index() == 1:
            raise ValueError("boom in process 1")
        multihost_utils.sync_global_devices("never reached by process 1")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    result = subprocess.run([sys.executable, os.path.join(root, "scripts", "launch_local.py"), "--num_processes", "2",
                             "--grace_secs", "1", "--", sys.executable, "-c", job],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode != 0
    assert "ValueError: boom in process 1" in result.stdout + result.stderr
    assert time.monotonic() - start < 20  # without the exit hook JAX waits ~30 s at shutdown
