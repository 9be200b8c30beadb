"""Benchmark: the severity model on a batch of 1,000 decisions, TFLite against numpy in the same process.

    nice -n 10 .venv/bin/python hack/bench_severity.py [--batch 1000] [--repeats 200]

The numpy reimplementation runs the same weights (from severity.json), so the ratio says what the
interpreter costs over the arithmetic itself on this machine; the goal of issue 5 is <= 20 ms for
1,000 decisions. Prints the median and the 95th percentile of the repeats.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from ajan.clients.severity_model import DEFAULT_MODEL, load_model
from ajan.services.features import Z_FEATURES
from ajan.services.severity import softmax

GOAL_MS = 20.0


def numpy_logits(
    weights: dict[str, list[float]],
) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
    """The model's arithmetic in numpy, float32, from the json's weights."""
    mean, scale, w1, b1, w2, b2 = (
        np.asarray(weights[k], dtype=np.float32) for k in ("mean", "scale", "w1", "b1", "w2", "b2")
    )

    def logits(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        hidden = np.maximum((x - mean) / scale @ w1 + b1, 0.0)
        return np.asarray(hidden @ w2 + b2, dtype=np.float32)

    return logits


def timed(fn: Callable[[], object], repeats: int) -> npt.NDArray[np.float64]:
    """Wall times of ``repeats`` calls in milliseconds, after three warm-up calls."""
    for _ in range(3):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        began = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - began) * 1e3
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    reference = numpy_logits(model.info.raw["weights"])
    rng = np.random.default_rng(0)
    # Bounded like real features: shares and probabilities in [0, 1], z-like ones in [0, 10].
    high = np.array([10.0 if n in Z_FEATURES else 1.0 for n in model.info.feature_names])
    x = (rng.random((args.batch, model.n_features)) * high).astype(np.float32)
    t = model.info.temperature
    tflite = timed(lambda: softmax(model.logits(x), t), args.repeats)
    numpy_ = timed(lambda: softmax(reference(x), t), args.repeats)
    gap = float(np.max(np.abs(model.logits(x) - reference(x))))
    print(
        "command: nice -n 10 .venv/bin/python hack/bench_severity.py "
        f"--batch {args.batch} --repeats {args.repeats}"
    )
    print(f"tflite+softmax: median {np.median(tflite):.3f} ms, p95 {np.percentile(tflite, 95):.3f} ms")
    print(f"numpy+softmax:  median {np.median(numpy_):.3f} ms, p95 {np.percentile(numpy_, 95):.3f} ms")
    print(
        f"ratio tflite/numpy (medians): {np.median(tflite) / np.median(numpy_):.2f}; "
        f"max |logit gap| {gap:.2e}"
    )
    verdict = "met" if np.median(tflite) <= GOAL_MS else "NOT met"
    print(f"goal <= {GOAL_MS:g} ms for {args.batch} decisions: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
