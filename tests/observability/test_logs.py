"""The JSON log format: the fields of a line, the context `bind` gives, the trace of the current span,
and native code's stderr lines turned into records."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from ajan import logs, tracing


def line_of(record: logging.LogRecord) -> dict[str, object]:
    parsed = json.loads(logs.JsonFormatter().format(record))
    assert isinstance(parsed, dict)
    return parsed


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("ajan.test", logging.WARNING, __file__, 1, message, args or ("world",), None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_line_has_time_level_logger_message_and_nothing_unknown() -> None:
    line = line_of(record())
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["level"] == "WARNING" and line["logger"] == "ajan.test" and line["message"] == "hello world"
    assert isinstance(line["time"], str) and line["time"].endswith("Z") and "T" in line["time"]


def test_bind_nests_per_task_and_kopf_object_references_name_the_object() -> None:
    with logs.bind(namespace="ns", policy="p"):
        with logs.bind(plan="p-1"):
            line = line_of(record())
            assert (line["namespace"], line["policy"], line["plan"]) == ("ns", "p", "p-1")
        assert "plan" not in line_of(record())
    assert "namespace" not in line_of(record())
    ref = {"kind": "RemediationPlan", "name": "p-2", "namespace": "other"}
    assert {k: line_of(record(k8s_ref=ref)).get(k) for k in ("namespace", "plan")} == {
        "namespace": "other",
        "plan": "p-2",
    }
    with pytest.raises(ValueError, match="not a log context field"), logs.bind(pod="x"):
        pass

    async def two_tasks() -> list[str | None]:
        async def one(name: str) -> str | None:
            with logs.bind(policy=name):
                await asyncio.sleep(0)
                return logs.context().get("policy")

        return list(await asyncio.gather(one("a"), one("b")))

    assert asyncio.run(two_tasks()) == ["a", "b"]


def test_trace_ids_only_while_a_span_records() -> None:
    try:
        tracing.install(TracerProvider(sampler=ALWAYS_ON))
        with tracing.span("ajan.evaluate") as span:
            line = line_of(record())
            assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
            assert line["span_id"] == format(span.get_span_context().span_id, "016x")
        assert "trace_id" not in line_of(record())
        tracing.install(TracerProvider(sampler=ALWAYS_OFF))
        with tracing.span("ajan.evaluate"):
            assert "trace_id" not in line_of(record())
    finally:
        tracing.install(None)


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        made = record(exc_info=sys.exc_info())
    text = logs.JsonFormatter().format(made)
    assert "\n" not in text
    assert "RuntimeError: boom" in json.loads(text)["exception"]


def test_native_stderr_becomes_records_in_json_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("ajan.native-test")
    with caplog.at_level(logging.DEBUG, logger="ajan.native-test"):
        with logs.native_output(logger):
            os.write(2, b"INFO: text format: left alone\n")
        assert "text format: left alone" in capfd.readouterr().err
        assert not caplog.records
        monkeypatch.setattr(logs, "_json_lines", True)
        with logs.native_output(logger):
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: bad\n")
            os.write(2, b'{"already": "json"}\n')
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "Created TensorFlow Lite XNNPACK delegate for CPU."),
        ("ERROR", "bad"),
    ]
    assert capfd.readouterr().err == '{"already": "json"}\n'


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ("Request attempt 1 failed; will retry: GET /apis -> APITooManyRequestsError(429)", "WARNING"),
        ("Request attempt 9 failed; escalating: GET /apis -> APITooManyRequestsError(429)", "ERROR"),
        ("something else went wrong", "ERROR"),
    ],
)
def test_a_request_kopf_retries_is_a_warning_and_one_it_gives_up_on_an_error(
    message: str, level: str
) -> None:
    """An API server that is still starting answers 429 for a moment: kopf retries, and said so at
    ERROR. What reaches the handlers says WARNING for a retry and ERROR only when kopf gives up."""
    made = logging.LogRecord("kopf._cogs.clients.watching", logging.ERROR, __file__, 1, message, (), None)
    assert logs.RetryIsNotAnError().filter(made)
    assert made.levelname == level and logging.getLevelName(made.levelno) == level
    assert line_of(made)["level"] == level
