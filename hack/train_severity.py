"""Train the severity model (issue 5) and write operator/ajan/severity/severity.{tflite,json}.

Development only: TensorFlow is not a dependency of ajan (the operator runs the .tflite file with
LiteRT). Run it in a separate virtual environment, from the repository root:

    nice -n 10 .venv/bin/python -m ajan.evaluation.severity_data     # -> build/severity/severity-data.npz
    python3 -m venv /work/tf-venv && /work/tf-venv/bin/pip install tensorflow numpy
    nice -n 10 /work/tf-venv/bin/python hack/train_severity.py       # -> the model, json, golden vectors
    nice -n 10 .venv/bin/python -m ajan.evaluation.severity          # -> the figures in docs/severity.md

What it does, all of it reproducible (fixed seeds, deterministic ops, one thread):

1. Standardise the features with the train split's mean and standard deviation; the two are
   constants of the graph, so the model takes raw features.
2. Train a tiny MLP (F -> 16 ReLU -> 3 logits) on the train split with balanced class weights
   (``n / (3 n_c)``), so the rare warning and critical windows are learnt at all.
3. Undo the class weights' prior shift: a model trained with weights ``w_c`` estimates
   ``p(c|x) w_c`` up to normalisation, so ``log w_c`` is subtracted from the output bias. Without
   this, no temperature could calibrate it (a temperature rescales, it does not move, the logits).
4. Fit a temperature ``T`` on the calibration split (minimum NLL of ``softmax(logits / T)``). ``T``
   is not in the graph: the runtime divides by the ``temperature`` of the json, so the evaluation
   can show the model before and after scaling.
5. Convert to TFLite (float32, builtin ops only) and write the model, the json (feature and class
   names, temperature, sha256 of the tflite, the weights for a numpy check, the data and split,
   date, versions) and tests/severity/golden.npz (test-split rows and the logits TensorFlow gave).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Final

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import numpy as np
import tensorflow as tf

ROOT: Final = Path(__file__).resolve().parents[1]
DATA: Final = ROOT / "build" / "severity" / "severity-data.npz"
OUT_DIR: Final = ROOT / "operator" / "ajan" / "severity"
GOLDEN: Final = ROOT / "tests" / "severity" / "golden.npz"
SEED: Final = 20261123
HIDDEN: Final = 16
EPOCHS: Final = 80
BATCH: Final = 128
LEARNING_RATE: Final = 3e-3
L2: Final = 1e-4
GOLDEN_ROWS: Final = 300
#: A feature constant on the train split keeps a unit scale rather than a division by zero.
STD_FLOOR: Final = 1e-6


def load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata written by ``python -m ajan.evaluation.severity_data``."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"]))
    return arrays, meta


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)``."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(labels.size), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature of minimum NLL: golden-section search on log T in [-3, 3] (NLL is unimodal there)."""
    lo, hi = -3.0, 3.0
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(80):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(logits, labels, float(np.exp(a))) < nll(logits, labels, float(np.exp(b))):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2.0))


def train(x: np.ndarray, y: np.ndarray, class_weight: dict[int, float]) -> list[np.ndarray]:
    """Fit the MLP on standardised features; return [w1, b1, w2, b2] as numpy arrays."""
    tf.keras.utils.set_random_seed(SEED)
    model = tf.keras.Sequential(
        [
            tf.keras.Input(shape=(x.shape[1],)),
            tf.keras.layers.Dense(HIDDEN, activation="relu", kernel_regularizer=tf.keras.regularizers.l2(L2)),
            tf.keras.layers.Dense(3, kernel_regularizer=tf.keras.regularizers.l2(L2)),
        ]
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(LEARNING_RATE),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, class_weight=class_weight, shuffle=True, verbose=0)
    return [np.asarray(w, dtype=np.float32) for w in model.get_weights()]


def logits_function(
    mean: np.ndarray, scale: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray
) -> Any:
    """The whole model, standardisation included, as one tf.function of a (batch, F) float32 input."""
    consts = [tf.constant(a, dtype=tf.float32) for a in (mean, scale, w1, b1, w2, b2)]

    @tf.function(input_signature=[tf.TensorSpec([None, mean.size], tf.float32, name="features")])
    def logits(features: tf.Tensor) -> tf.Tensor:
        m, s, a1, c1, a2, c2 = consts
        hidden = tf.nn.relu(tf.matmul((features - m) / s, a1) + c1)
        return tf.identity(tf.matmul(hidden, a2) + c2, name="logits")

    return logits


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Train, calibrate, convert and write the artefacts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--golden", type=Path, default=GOLDEN)
    args = parser.parse_args(argv)

    tf.config.experimental.enable_op_determinism()
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)

    arrays, meta = load(args.data)
    x_all = arrays["features"].astype(np.float32)
    y_all = arrays["labels"].astype(np.int64)
    split = arrays["split"]
    train_mask, cal_mask, test_mask = (split == s for s in ("train", "calibration", "test"))
    x, y = x_all[train_mask], y_all[train_mask]

    mean = x.mean(axis=0).astype(np.float32)
    scale = np.maximum(x.std(axis=0), STD_FLOOR).astype(np.float32)
    counts = np.bincount(y, minlength=3).astype(np.float64)
    weights = y.size / (3.0 * np.maximum(counts, 1.0))
    w1, b1, w2, b2 = train((x - mean) / scale, y, {i: float(w) for i, w in enumerate(weights)})
    b2 = (b2 - np.log(weights)).astype(np.float32)  # undo the class weights' prior shift (step 3)

    logits = logits_function(mean, scale, w1, b1, w2, b2)
    cal_logits = logits(tf.constant(x_all[cal_mask])).numpy()
    temperature = fit_temperature(cal_logits, y_all[cal_mask])
    print(
        f"calibration NLL: T=1 {nll(cal_logits, y_all[cal_mask], 1.0):.4f}, "
        f"T={temperature:.3f} {nll(cal_logits, y_all[cal_mask], temperature):.4f}"
    )

    holder = tf.Module()
    holder.logits = logits
    converter = tf.lite.TFLiteConverter.from_concrete_functions([logits.get_concrete_function()], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = []
    flatbuffer = converter.convert()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.out_dir / "severity.tflite"
    model_path.write_bytes(flatbuffer)

    rng = np.random.default_rng(SEED)
    test_rows = np.flatnonzero(test_mask)
    chosen = np.sort(rng.choice(test_rows, size=min(GOLDEN_ROWS, test_rows.size), replace=False))
    golden_x = x_all[chosen]
    golden_logits = logits(tf.constant(golden_x)).numpy().astype(np.float32)
    args.golden.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.golden, features=golden_x, logits=golden_logits)

    description = {
        "feature_names": meta["feature_names"],
        "class_names": meta["class_names"],
        "temperature": temperature,
        "sha256": sha256(model_path),
        "input": {"name": "features", "shape": [-1, len(meta["feature_names"])], "dtype": "float32"},
        "output": {"name": "logits", "shape": [-1, 3], "dtype": "float32", "note": "before temperature"},
        "architecture": f"(x - mean) / scale -> Dense({HIDDEN}, relu) -> Dense(3) logits",
        "weights": {
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "w1": w1.tolist(),
            "b1": b1.tolist(),
            "w2": w2.tolist(),
            "b2": b2.tolist(),
        },
        "training": {
            "data": "python -m ajan.evaluation.severity_data: assess() over sliding windows of NAB, "
            "SMD (machines 1-2..1-8) and offline metrics-generator runs; labels by time to incident",
            "data_sha256": sha256(args.data),
            "window_rows": meta["window_rows"],
            "counts": meta["counts"],
            "split": "by group (NAB file, SMD machine, generator seed), 70/15/15 train/calibration/test, "
            "seeded shuffle of the sorted groups per dataset",
            "groups": meta["groups"],
            "smd_slo_dimensions": meta["smd_slo_dimensions"],
            "smd_signal_dimensions": meta["smd_signal_dimensions"],
            "class_weights": weights.tolist(),
            "prior_correction": "log(class weight) subtracted from the output bias",
            "epochs": EPOCHS,
            "batch_size": BATCH,
            "learning_rate": LEARNING_RATE,
            "l2": L2,
            "seed": SEED,
            "command": "/work/tf-venv/bin/python hack/train_severity.py",
        },
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "versions": {
            "tensorflow": tf.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    (args.out_dir / "severity.json").write_text(json.dumps(description, indent=1) + "\n")
    print(
        f"wrote {model_path} ({len(flatbuffer)} bytes), temperature {temperature:.4f}, golden {args.golden}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
