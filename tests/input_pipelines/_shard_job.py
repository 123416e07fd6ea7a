"""Input job run by tests/input_pipelines/test_multiprocess.py under scripts/launch_local.py.

    python _shard_job.py OUT_DIR DATA_GLOB MODE [--epochs N] [--batch B] [--cut K]

Joins the JAX job (``estimator.distribute.initialize``), builds ``make_csv_dataset`` over
DATA_GLOB with the defaults (``seed=None``, shuffled) and writes the ``id`` column of every row
this process reads, batch by batch, to ``OUT_DIR/rows-<process>.json``. MODE ``train`` repeats
forever (``--steps`` batches are read); ``eval`` reads ``--epochs`` passes. With ``--cut K``
it saves the iterator state after K batches, restores it in a fresh iterator and records
what follows (the test compares it with the uninterrupted rows).
"""

from __future__ import annotations

import argparse
import json
import os

import jax

from estimator import distribute
from input_pipelines import make_csv_dataset


def main() -> None:
    """Reads this process's share and writes the row ids it saw."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("data_glob")
    parser.add_argument("mode", choices=["train", "eval"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cut", type=int, default=None)
    args = parser.parse_args()
    distribute.initialize()
    train = args.mode == "train"
    ds = make_csv_dataset(args.data_glob, args.batch, label_name="label",
                          num_epochs=None if train else args.epochs, shuffle_buffer_size=64)
    it = iter(ds)
    batches = []
    for i, (features, _) in enumerate(it):
        if train and i == args.steps:
            break
        batches.append(features["id"].tolist())
    resumed = None
    if args.cut is not None:
        it = iter(ds)
        for _ in range(args.cut):
            next(it)
        state = json.loads(json.dumps(it.state()))
        again = iter(ds)
        again.restore(state)
        resumed = [features["id"].tolist() for _, (features, _) in zip(range(len(batches) - args.cut), again,
                                                                        strict=False)]
    with open(os.path.join(args.out_dir, f"rows-{jax.process_index()}.json"), "w") as f:
        json.dump({"process": jax.process_index(), "count": jax.process_count(), "batches": batches,
                   "resumed": resumed}, f)
    print("done", flush=True)


if __name__ == "__main__":
    main()
