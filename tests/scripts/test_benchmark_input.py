"""scripts/benchmark_input.py --data URL: shards copied to a bucket, read locally and from there."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from input_pipelines import fs

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "benchmark_input.py"


def test_bucket_run_copies_the_shards_and_compares_with_local(gcs_bucket, tmp_path):
    url = f"{gcs_bucket}/bench"
    out = subprocess.run([sys.executable, str(SCRIPT), "--data", url, "--rows", "3000", "--shards", "3",
                          "--repeats", "1", "--methods", "pipeline", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)  # the emulator settings are inherited
    assert out.returncode == 0, out.stderr
    rows = {m[1]: int(m[2]) for m in re.finditer(r"^pipeline +(local|gs) +(\d+) ", out.stdout, re.M)}
    assert rows == {"local": 3000, "gs": 3000}, out.stdout
    assert re.search(r"^pipeline +gs .* \d+\.\d\dx", out.stdout, re.M), out.stdout
    copied = fs.glob(f"{url}/*.csv")
    assert len(copied) == 6  # the shards and their copies with a header
    assert fs.read_bytes(copied[-1]) == (tmp_path / fs.basename(copied[-1])).read_bytes()


def test_local_run_reads_every_row_with_each_reading_method(tmp_path):
    """The pipeline, its hand-written floor and the parse-only baselines all count every row
    (10 shards of uneven length for a cycle of 8 files: windows cut inside files, files replaced)."""
    methods = ["pipeline", "hand_written", "pyarrow_blocks", "pyarrow_whole"]
    out = subprocess.run([sys.executable, str(SCRIPT), "--rows", "25001", "--shards", "10", "--repeats", "1",
                          "--methods", *methods, "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+) +(\d+) ", out.stdout, re.M)}
    assert rows == dict.fromkeys(methods, 25001), out.stdout
    assert re.search(r"pipeline CPU per row vs the hand-written floor +\d+\.\d\dx", out.stdout), out.stdout


def test_training_methods_go_round_fewer_batches_than_steps(tmp_path):
    """50 batches of 512 in the shards, 300 timed steps: the in-memory loops wrap round their
    batches and the CSV input repeats its epochs, each timing every step."""
    methods = ["train_in_memory_scan", "train_from_csv"]
    out = subprocess.run([sys.executable, str(SCRIPT), "--rows", str(50 * 512 + 7), "--shards", "2", "--repeats", "1",
                          "--train-steps", "300", "--methods", *methods, "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+) +(\d+) ", out.stdout, re.M)}
    assert rows == dict.fromkeys(methods, 300 * 512), out.stdout
    assert re.search(r"train_from_csv vs train_in_memory_scan: examples/s +\d+\.\d\dx", out.stdout), out.stdout
