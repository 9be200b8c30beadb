"""The severity model at the edge: a TFLite file run by LiteRT (or the older ``tflite_runtime``).

The model (``severity/severity.tflite`` in the package, trained by ``hack/train_severity.py``) maps a
batch of decision features, float32 shape (n, F), to logits shape (n, 3) in the class order of its
json (info, warning, critical). The json beside it names the features and classes, gives the
temperature that calibrates the logits, and the sha256 of the tflite: a file that does not match it
is refused, so a half-written or swapped model can never score a rollout.

Every way the model can be unusable is a :class:`ModelError` with a message saying what to do;
:func:`ajan.services.severity.load_classifier` turns it into the rule-based fallback.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: The model shipped in the package.
DEFAULT_MODEL: Final = Path(__file__).resolve().parents[1] / "severity" / "severity.tflite"
#: The interpreters tried, in order: LiteRT, then its frozen predecessor.
INTERPRETER_MODULES: Final = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
#: A TFLite flatbuffer's file identifier, at bytes 4..8.
TFLITE_IDENTIFIER: Final = b"TFL3"
N_CLASSES: Final = 3


class ModelError(Exception):
    """The severity model cannot be used: missing, corrupt, mismatched or no interpreter installed."""


def interpreter_class() -> Any:
    """The ``Interpreter`` class of the first importable TFLite runtime.

    Raises
    ------
    ModelError
        When neither ``ai-edge-litert`` nor ``tflite-runtime`` is installed.
    """
    for name in INTERPRETER_MODULES:
        try:
            return importlib.import_module(name).Interpreter
        except ImportError:
            continue
    raise ModelError("no TFLite interpreter is installed: pip install ai-edge-litert")


@dataclass(frozen=True)
class ModelInfo:
    """What the json says about the model.

    feature_names, class_names: the input and output orders; temperature: divides the logits;
    sha256: of the tflite file; raw: the whole json (training data, split, versions, weights).
    """

    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    temperature: float
    sha256: str
    raw: dict[str, Any] = field(repr=False)


def read_info(path: Path) -> ModelInfo:
    """Read and check the model's json.

    Raises
    ------
    ModelError
        When the file is missing, not JSON, or lacks a field or has a bad one.
    """
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ModelError(f"severity model metadata {path} not found") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"severity model metadata {path} is not readable JSON: {err}") from err
    try:
        info = ModelInfo(
            feature_names=tuple(str(n) for n in raw["feature_names"]),
            class_names=tuple(str(n) for n in raw["class_names"]),
            temperature=float(raw["temperature"]),
            sha256=str(raw["sha256"]),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"severity model metadata {path} lacks or has a bad {err}") from err
    if not (np.isfinite(info.temperature) and info.temperature > 0):
        raise ModelError(f"severity model metadata {path}: temperature {info.temperature} is not positive")
    if len(info.class_names) != N_CLASSES:
        raise ModelError(f"severity model metadata {path}: {len(info.class_names)} classes, expected 3")
    return info


class SeverityModel:
    """A loaded severity model: batched logits from the TFLite interpreter.

    Thread-safe: an interpreter is not, so each call holds a lock (a batch of a thousand decisions
    takes well under a millisecond, see ``hack/bench_severity.py``).
    """

    def __init__(self, interpreter: Any, info: ModelInfo, path: Path) -> None:
        """Wrap an interpreter whose tensors were checked by :func:`load_model`."""
        self.info = info
        self.path = path
        self._interpreter = interpreter
        self._lock = threading.Lock()
        self._input = int(interpreter.get_input_details()[0]["index"])
        self._output = int(interpreter.get_output_details()[0]["index"])
        self._batch = int(interpreter.get_input_details()[0]["shape"][0])

    @property
    def n_features(self) -> int:
        """F, the width of an input row."""
        return len(self.info.feature_names)

    def logits(self, features: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Logits of a batch, before temperature.

        Parameters
        ----------
        features : array_like, shape (n, F)
            In :attr:`ModelInfo.feature_names` order; converted to float32.

        Returns
        -------
        ndarray of float32, shape (n, 3)
        """
        x = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"features shaped {x.shape}, expected (n, {self.n_features})")
        if x.shape[0] == 0:
            return np.zeros((0, N_CLASSES), dtype=np.float32)
        with self._lock:
            if x.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input, list(x.shape), strict=False)
                self._interpreter.allocate_tensors()
                self._batch = x.shape[0]
            self._interpreter.set_tensor(self._input, x)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output), dtype=np.float32)


def load_model(path: Path | None = None, metadata: Path | None = None) -> SeverityModel:
    """Load and check the severity model.

    Parameters
    ----------
    path
        The tflite file; :data:`DEFAULT_MODEL` by default.
    metadata
        Its json; by default the same path with the suffix ``.json``.

    Raises
    ------
    ModelError
        When a file is missing, the tflite's sha256 differs from the json's, it is not a TFLite
        flatbuffer, the interpreter refuses it, its tensors are not (n, F) float32 in and (n, 3)
        out, or no interpreter is installed.
    """
    path = DEFAULT_MODEL if path is None else Path(path)
    info = read_info(path.with_suffix(".json") if metadata is None else Path(metadata))
    try:
        content = path.read_bytes()
    except FileNotFoundError as err:
        raise ModelError(f"severity model {path} not found") from err
    except OSError as err:
        raise ModelError(f"severity model {path} is not readable: {err}") from err
    digest = hashlib.sha256(content).hexdigest()
    if digest != info.sha256:
        raise ModelError(
            f"severity model {path} has sha256 {digest[:12]}…, its metadata expects {info.sha256[:12]}…: "
            "the file is corrupt or is not the model the json describes"
        )
    return _interpret(content, info, path)


def _interpret(content: bytes, info: ModelInfo, path: Path) -> SeverityModel:
    """Build and check the interpreter of a flatbuffer whose checksum is already verified."""
    if len(content) < 8 or content[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"severity model {path} is not a TFLite flatbuffer (no TFL3 identifier)")
    interpreter_type = interpreter_class()
    options: dict[str, Any] = {}
    resolver = getattr(importlib.import_module(interpreter_type.__module__), "OpResolverType", None)
    if resolver is not None:
        # A delegate buys nothing for a model this small on one thread, and XNNPACK's announces itself
        # on stderr at every load (noise in `ajan backtest`'s output).
        options["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = interpreter_type(model_content=content, num_threads=1, **options)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ModelError(f"severity model {path} is not a valid TFLite model: {err}") from err
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    f = len(info.feature_names)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            f"severity model {path} has {len(inputs)} inputs and {len(outputs)} outputs, expected 1 and 1"
        )
    in_shape, out_shape = tuple(inputs[0]["shape"].tolist()), tuple(outputs[0]["shape"].tolist())
    if len(in_shape) != 2 or in_shape[1] != f or inputs[0]["dtype"] is not np.float32:
        raise ModelError(
            f"severity model {path} takes {inputs[0]['dtype'].__name__}{in_shape}, expected float32(n, {f})"
        )
    if len(out_shape) != 2 or out_shape[1] != N_CLASSES or outputs[0]["dtype"] is not np.float32:
        raise ModelError(
            f"severity model {path} gives {outputs[0]['dtype'].__name__}{out_shape}, expected float32(n, 3)"
        )
    return SeverityModel(interpreter, info, path)
