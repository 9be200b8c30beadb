"""The shipped severity model: the TFLite file agrees with its weights and golden vectors, and every way
it can be broken is a clear `ModelError` that `load_classifier` turns into the rule fallback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ajan.clients import severity_model
from ajan.clients.severity_model import DEFAULT_MODEL, ModelError, SeverityModel, load_model
from ajan.services.features import FEATURE_NAMES, Z_FEATURES
from ajan.services.severity import ModelSeverityClassifier, RuleSeverityClassifier, load_classifier, softmax

GOLDEN = Path(__file__).with_name("golden.npz")


def numpy_logits(model: SeverityModel, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The model's arithmetic from the weights in its json, in float64."""
    w = {k: np.asarray(v, dtype=np.float64) for k, v in model.info.raw["weights"].items()}
    hidden = np.maximum((x - w["mean"]) / w["scale"] @ w["w1"] + w["b1"], 0.0)
    return np.asarray(hidden @ w["w2"] + w["b2"], dtype=np.float64)


def bounded_features(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    high = np.array([10.0 if n in Z_FEATURES else 1.0 for n in FEATURE_NAMES])
    return (rng.random((n, len(FEATURE_NAMES))) * high).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> SeverityModel:
    return load_model()


def copy_model(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped model and json, copied where a test may break them."""
    path = tmp_path / "severity.tflite"
    shutil.copy(DEFAULT_MODEL, path)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), path.with_suffix(".json"))
    return path, path.with_suffix(".json")


def rewrite(path: Path, content: bytes, *, update_checksum: bool) -> None:
    """Replace the model's bytes, optionally recording their sha256 in the json (to get past the checksum)."""
    path.write_bytes(content)
    if update_checksum:
        meta = path.with_suffix(".json")
        raw = json.loads(meta.read_text())
        raw["sha256"] = hashlib.sha256(content).hexdigest()
        meta.write_text(json.dumps(raw))


def test_model_is_small_and_its_checksum_is_recorded(model: SeverityModel) -> None:
    content = DEFAULT_MODEL.read_bytes()
    assert len(content) < 100_000
    assert hashlib.sha256(content).hexdigest() == model.info.sha256
    assert model.info.feature_names == FEATURE_NAMES
    assert model.info.class_names == ("info", "warning", "critical")
    assert 0.05 < model.info.temperature < 20


def test_interpreter_matches_numpy_reimplementation(model: SeverityModel) -> None:
    x = bounded_features(500)
    # float32 kernels against a float64 reference, logits up to about 30: a few float32 ulps apart.
    np.testing.assert_allclose(model.logits(x), numpy_logits(model, x), rtol=1e-5, atol=5e-5)


def test_interpreter_and_json_weights_match_the_golden_logits(model: SeverityModel) -> None:
    with np.load(GOLDEN) as golden:
        x, expected = golden["features"], golden["logits"]
    assert x.shape == (expected.shape[0], len(FEATURE_NAMES)) and expected.shape[1] == 3
    assert x.shape[0] >= 200
    np.testing.assert_allclose(model.logits(x), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(numpy_logits(model, x), expected, rtol=1e-5, atol=1e-5)


def test_batches_of_any_size_give_the_same_rows(model: SeverityModel) -> None:
    x = bounded_features(1000, seed=1)
    whole = model.logits(x)
    assert whole.shape == (1000, 3) and whole.dtype == np.float32
    for n in (1, 7, 1000, 1):
        np.testing.assert_allclose(model.logits(x[:n]), whole[:n], rtol=1e-6, atol=1e-6)
    assert model.logits(x[:0]).shape == (0, 3)
    with pytest.raises(ValueError, match="expected"):
        model.logits(x[:, :-1])


def test_calibrated_probabilities_sum_to_one(model: SeverityModel) -> None:
    classifier = ModelSeverityClassifier(model)
    x = bounded_features(300, seed=2)
    verdicts = classifier.classify(x)
    expected = softmax(model.logits(x), model.info.temperature)
    for v, p in zip(verdicts, expected, strict=True):
        assert v.source == "model"
        assert sum(v.probabilities) == pytest.approx(1.0, abs=1e-9)
        assert v.incident_probability == pytest.approx(v.probabilities[1] + v.probabilities[2])
        np.testing.assert_allclose(v.probabilities, p, atol=1e-12)
        assert v.severity.value == ("info", "warning", "critical")[int(np.argmax(p))]


def test_missing_file(tmp_path: Path) -> None:
    path, _ = copy_model(tmp_path)
    path.unlink()
    with pytest.raises(ModelError, match=r"severity model .*severity.tflite not found"):
        load_model(path)
    classifier, reason = load_classifier(path)
    assert isinstance(classifier, RuleSeverityClassifier) and reason is not None and "not found" in reason


def test_missing_metadata(tmp_path: Path) -> None:
    path, meta = copy_model(tmp_path)
    meta.unlink()
    with pytest.raises(ModelError, match=r"metadata .* not found"):
        load_model(path)


def test_truncated_file(tmp_path: Path) -> None:
    path, _ = copy_model(tmp_path)
    content = path.read_bytes()
    rewrite(path, content[: len(content) // 2], update_checksum=False)
    with pytest.raises(ModelError, match="sha256"):
        load_model(path)
    # Past the checksum (a json rewritten with the truncated file's), the interpreter must refuse it.
    rewrite(path, content[: len(content) // 2], update_checksum=True)
    with pytest.raises(ModelError, match="not a valid TFLite model"):
        load_model(path)
    classifier, reason = load_classifier(path)
    assert classifier.source == "rules" and reason is not None and "not a valid TFLite model" in reason


def test_random_bytes(tmp_path: Path) -> None:
    path, _ = copy_model(tmp_path)
    noise = np.random.default_rng(0).bytes(4096)
    rewrite(path, noise, update_checksum=True)
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        load_model(path)
    # Random bytes behind a valid identifier get as far as the interpreter, which refuses them.
    rewrite(path, noise[:4] + b"TFL3" + noise[8:], update_checksum=True)
    with pytest.raises(ModelError, match="not a valid TFLite model"):
        load_model(path)
    classifier, reason = load_classifier(path)
    assert classifier.source == "rules" and reason is not None and "not a valid TFLite model" in reason


def test_checksum_mismatch(tmp_path: Path) -> None:
    path, _ = copy_model(tmp_path)
    content = bytearray(path.read_bytes())
    content[-100] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(content))
    with pytest.raises(ModelError, match=r"has sha256 .* its metadata expects .*corrupt"):
        load_model(path)
    classifier, reason = load_classifier(path)
    assert classifier.source == "rules" and reason is not None and "sha256" in reason


def test_wrong_tensor_shapes(tmp_path: Path) -> None:
    path, meta = copy_model(tmp_path)
    raw = json.loads(meta.read_text())
    raw["feature_names"] = raw["feature_names"][:-1]
    meta.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match=r"takes float32\(1, 16\), expected float32\(n, 15\)"):
        load_model(path)


def test_features_other_than_ours_are_refused(tmp_path: Path) -> None:
    path, meta = copy_model(tmp_path)
    raw = json.loads(meta.read_text())
    raw["feature_names"] = [*raw["feature_names"][1:], "renamed"]
    meta.write_text(json.dumps(raw))
    classifier, reason = load_classifier(path)
    assert classifier.source == "rules" and reason is not None and "trained on features" in reason


def test_no_interpreter_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(severity_model, "INTERPRETER_MODULES", ("ajan_no_such_module.interpreter",))
    with pytest.raises(ModelError, match="no TFLite interpreter is installed"):
        load_model()
    classifier, reason = load_classifier()
    assert classifier.source == "rules" and reason is not None and "pip install ai-edge-litert" in reason


def test_shipped_model_loads_as_the_model() -> None:
    classifier, reason = load_classifier()
    assert reason is None and classifier.source == "model"
