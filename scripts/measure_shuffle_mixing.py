"""How well `make_csv_dataset`'s default shuffle mixes files: mean distinct files per batch.

    python scripts/measure_shuffle_mixing.py [--files 20] [--rows 20000] [--batch 512]

Writes FILES CSV shards of ROWS rows (header, a `file` column holding the shard's number and
a few numeric columns, ~40 bytes a row), reads one epoch with the defaults (seed=None,
shuffle_buffer_size=10000) and prints the mean and minimum number of distinct files in a batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from input_pipelines import make_csv_dataset  # noqa: E402


def write_shards(folder: str, files: int, rows: int) -> str:
    """FILES CSV shards with a `file` column; returns their glob."""
    rng = np.random.default_rng(0)
    for k in range(files):
        x = rng.normal(size=(rows, 3)).round(5)
        with open(os.path.join(folder, f"part-{k:03d}.csv"), "w") as f:
            f.write("file,a,b,label\n")
            np.savetxt(f, np.column_stack([np.full(rows, k), x]), fmt=["%d", "%.5f", "%.5f", "%.5f"],
                       delimiter=",")
    return os.path.join(folder, "*.csv")


def distinct_files_per_batch(pattern: str, batch: int) -> list[int]:
    """The number of distinct files in each full batch of one default-shuffled epoch."""
    ds = make_csv_dataset(pattern, batch, label_name="label", column_defaults=[0, 0.0, 0.0, 0.0], num_epochs=1)
    return [len(np.unique(f["file"])) for f, _ in ds if len(f["file"]) == batch]


def main() -> None:
    """Writes the shards, reads one epoch, prints JSON with the mean and minimum."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        counts = distinct_files_per_batch(write_shards(folder, args.files, args.rows), args.batch)
    print(json.dumps({"files": args.files, "rows_per_file": args.rows, "batch": args.batch,
                      "batches": len(counts), "mean_distinct_files": round(float(np.mean(counts)), 2),
                      "min_distinct_files": int(np.min(counts))}))


if __name__ == "__main__":
    main()
