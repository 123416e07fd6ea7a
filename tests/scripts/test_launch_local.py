"""scripts/launch_local.py: environment per process, prefixed output, no hang when a process fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(ROOT, "scripts", "launch_local.py")


def _launch(args: list[str], code: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run([sys.executable, LAUNCHER, *args, "--", sys.executable, "-c", textwrap.dedent(code)],
                            capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - start


def test_success_sets_environment_and_prefixes_lines():
    result, _ = _launch(["--num_processes", "3", "--devices_per_process", "2", "--port", "34567"], """
        import os
        print("id", os.environ["JAX_PROCESS_ID"], "of", os.environ["JAX_NUM_PROCESSES"],
              os.environ["JAX_COORDINATOR_ADDRESS"], os.environ["XLA_FLAGS"])
        print("second line")
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for i in range(3):
        assert (f"[p{i}] id {i} of 3 127.0.0.1:34567 --xla_force_host_platform_device_count=2") in lines
        assert f"[p{i}] second line" in lines
    assert len(lines) == 6


def test_failing_process_stops_the_others_quickly(tmp_path):
    result, seconds = _launch(["--num_processes", "2", "--grace_secs", "1"], f"""
        import os, signal, sys, time
        if os.environ["JAX_PROCESS_ID"] == "1":
            time.sleep(0.5)
            print("failing", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # must be SIGKILLed after the grace period
        open(os.path.join({str(tmp_path)!r}, "pid"), "w").write(str(os.getpid()))
        time.sleep(120)
    """, timeout=30)
    assert result.returncode == 3
    assert seconds < 15
    assert "[p1] failing" in result.stdout
    assert "process 1 exited with code 3" in result.stderr
    survivor = int((tmp_path / "pid").read_text())
    try:
        os.kill(survivor, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the sleeping process was left running"


def test_killed_process_makes_launcher_fail():
    result, seconds = _launch(["--num_processes", "2"], """
        import os, signal, time
        if os.environ["JAX_PROCESS_ID"] == "0":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(120)
    """, timeout=30)
    assert result.returncode == 128 + 9
    assert seconds < 15


def test_command_is_required():
    result = subprocess.run([sys.executable, LAUNCHER, "--num_processes", "2"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "after '--'" in result.stderr
