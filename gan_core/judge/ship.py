"""Rebuild the MNIST evaluator that ships in the package: `python -m gan_core.judge.ship`.

Retrains the classifier deterministically on the bundled split, writes its weights and record
(accuracy, SHA-256, torch version, machine, the calibration of every constructed set) into
`gan_core/data_files/evaluator/`. With `--calibrate` it keeps the weights and recomputes the record's
calibration (after a change to how quality is measured).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time

import torch

from ..data import bundled_mnist
from ..files import write_atomic
from .classifier import CLASSIFIER_VERSION
from .evaluator import Evaluator
from .weights import sha256, shipped_paths, train_weights


def main(argv: list[str] | None = None) -> None:
    """Rebuild the shipped MNIST evaluator (weights and record) in the source tree."""
    parser = argparse.ArgumentParser(prog="python -m gan_core.judge.ship", description=main.__doc__)
    parser.add_argument("--calibrate", action="store_true", help="keep the weights, recompute the calibration")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    weights, record_path = shipped_paths()
    ds = bundled_mnist()
    if args.calibrate:
        record = json.loads(record_path.read_text())
    else:
        clf, acc, seconds = train_weights(ds, torch.device("cpu"), print, weights)
        buf = io.BytesIO()
        torch.save(clf.state_dict(), buf)
        write_atomic(weights, buf.getvalue())
        record = {"dataset": "mnist (bundled 10k split: 8,000 to train, 2,000 held out)",
                  "fingerprint": ds.fingerprint(), "classifier_version": CLASSIFIER_VERSION, "accuracy": acc,
                  "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                  "train_seconds": round(seconds, 1), "trained_at": time.strftime("%Y-%m-%d")}
    record["sha256"] = sha256(weights)
    record["calibration"] = None
    write_atomic(record_path, json.dumps(record, indent=1).encode())  # verified weights, before calibrating
    record["calibration"] = Evaluator(ds).calibration  # computed there: the record had none
    write_atomic(record_path, json.dumps(record, indent=1).encode())
    print(f"wrote {weights} ({weights.stat().st_size} bytes, {100 * record['accuracy']:.2f}% held-out accuracy) "
          f"and {record_path}")


if __name__ == "__main__":
    main()

