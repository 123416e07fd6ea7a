"""``python -m estimator.serving`` as a subprocess on a free 127.0.0.1 port, for the serving tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The model server in its own process; ``wait_for`` is the HTTP status that means "up"."""

    def __init__(self, base: str, name: str, *flags: str, wait_for: int = 200):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        env = {**os.environ, "PYTHONPATH": ROOT}
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "estimator.serving", "--model_name", name, "--model_base_path", base,
             "--port", str(self.port), "--host", "127.0.0.1", "--log_level", "warning", *flags],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.stderr()
            try:
                if httpx.get(f"{self.url}/v1/models/{name}", timeout=2).status_code == wait_for:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the model server did not come up within 120 s: {self.stderr()}")

    def stderr(self) -> str:
        """What the server logged so far."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def post(self, path: str, body) -> httpx.Response:
        """POSTs ``body`` (JSON-encoded unless bytes/str) to ``/v1/models/<name><path>``."""
        content = body if isinstance(body, bytes | str) else json.dumps(body)
        return httpx.post(f"{self.url}/v1/models/{self.name}{path}", content=content, timeout=60)

    def predict(self, body, version=None, name=None) -> httpx.Response:
        """POSTs to ``/v1/models/<name>[/versions/<v>]:predict``."""
        path = f"/v1/models/{name or self.name}" + (f"/versions/{version}" if version else "") + ":predict"
        content = body if isinstance(body, bytes | str) else json.dumps(body)
        return httpx.post(self.url + path, content=content, timeout=60)

    def status(self, suffix: str = "") -> httpx.Response:
        """GET ``/v1/models/<name><suffix>``."""
        return httpx.get(f"{self.url}/v1/models/{self.name}{suffix}", timeout=30)

    def stop(self) -> None:
        """Terminates the server (and its workers)."""
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Traffic:
    """One client posting {"instances": [1.0]} to ``server`` in a loop; records answers (hot-swap tests)."""

    def __init__(self, server):
        self.values, self.failures, self.stop = [], [], threading.Event()
        self.thread = threading.Thread(target=self._run, args=(server,), daemon=True)
        self.thread.start()

    def _run(self, server):
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not self.stop.is_set():
                r = http.post(f"/v1/models/{server.name}:predict", json={"instances": [1.0]})
                (self.values if r.status_code == 200 else self.failures).append(r.json())
                time.sleep(0.01)

    def wait_for(self, value, timeout=60.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.values and self.values[-1] == {"predictions": [value]}:
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.stop.set()
        self.thread.join(30)
