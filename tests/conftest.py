"""Session-wide test setup: storage clients are pointed at local emulators before import.

The fixtures `gcs_bucket` and `s3_bucket` give each test a new empty bucket on
fake-gcs-server / moto's S3 server (tests/object_storage.py); they skip with the reason
when the emulator or the client library is not installed.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import object_storage  # noqa: E402

object_storage.export_client_env()


def _new_bucket_or_skip(scheme: str) -> str:
    reason = (object_storage.gcs_missing if scheme == "gs" else object_storage.s3_missing)()
    if reason:
        pytest.skip(f"{'GCS' if scheme == 'gs' else 'S3'} emulator unavailable: {reason}")
    return object_storage.new_bucket(scheme)


@pytest.fixture
def gcs_bucket() -> str:
    """A new empty bucket on the GCS emulator, as 'gs://name'."""
    return _new_bucket_or_skip("gs")


@pytest.fixture
def s3_bucket() -> str:
    """A new empty bucket on the S3 emulator, as 's3://name'."""
    return _new_bucket_or_skip("s3")


@pytest.fixture(params=["gs", "s3"])
def bucket(request) -> str:
    """A new empty bucket on each emulator in turn."""
    return request.getfixturevalue("gcs_bucket" if request.param == "gs" else "s3_bucket")
