"""``python -m estimator.serving`` as a subprocess on a free 127.0.0.1 port, for the serving tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
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
