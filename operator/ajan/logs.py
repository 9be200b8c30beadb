"""ajan's log lines: kopf's text format, or one JSON object per line (``--log-format json``).

In JSON every line, kopf's and ajan's alike, has ``time`` (RFC 3339, UTC), ``level``, ``logger``
and ``message``; ``namespace``, ``policy`` and ``plan`` when the line is about them (from `bind`,
which the evaluator sets around a policy's evaluation and around the work on a plan, or from the
object kopf's per-object loggers name); ``trace_id`` and ``span_id`` while a span is recording; and
``exception`` with the traceback when there is one.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

from opentelemetry import trace

FORMATS: Final = ("text", "json")
#: The fields `bind` may set.
CONTEXT_FIELDS: Final = ("namespace", "policy", "plan")
#: kopf's per-object loggers name their object in ``record.k8s_ref``; these kinds map to fields.
_KINDS: Final = {"CorrelationPolicy": "policy", "RemediationPlan": "plan"}

# Immutable, so that a task cannot change what the task it was copied from sees.
#: A native library's own level prefix (TensorFlow Lite's "INFO: ..."), mapped to logging's.
_NATIVE_LEVEL: Final = re.compile(r"^(INFO|WARNING|ERROR|FATAL|DEBUG|VERBOSE): ?")

_json_lines = False  # set by `configure`
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "ajan_log_context", default=()
)


@contextlib.contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Add ``namespace``, ``policy`` and/or ``plan`` to every line logged inside the block.

    Per asyncio task (a context variable): each policy's daemon and each task it starts see their own.
    """
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"not a log context field: {sorted(unknown)}")
    merged = {**dict(_context.get()), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)


def context() -> dict[str, str]:
    """The fields `bind` set for the current task (a copy)."""
    return dict(_context.get())


def _rfc3339(created: float) -> str:
    stamp = datetime.fromtimestamp(created, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            if ref.get("namespace"):
                line["namespace"] = ref["namespace"]
            field = _KINDS.get(str(ref.get("kind")))
            if field is not None and ref.get("name"):
                line[field] = ref["name"]
        line.update(_context.get())
        span = trace.get_current_span().get_span_context()
        if span.is_valid and trace.get_current_span().is_recording():
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class RetryIsNotAnError(logging.Filter):
    """kopf logs a request it is about to retry at ERROR ("Request attempt 1 failed; will retry"):
    an API server still starting answers 429 for a moment, and a person reads two errors that were
    not. A retry is a WARNING; the last attempt, which kopf gives up on ("escalating"), stays ERROR.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Lower a retry's level; let every record through."""
        if record.levelno == logging.ERROR and "; will retry:" in record.getMessage():
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(log_format: str, *, verbose: bool = False) -> None:
    """Set up the root logger for ``log_format`` (`FORMATS`): kopf's own handler, with its formatter
    (text, unchanged) or with `JsonFormatter` (json), so that kopf's lines and ajan's look alike.
    kopf's retries are logged as warnings (`RetryIsNotAnError`)."""
    import kopf

    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {log_format!r}")
    kopf.configure(verbose=verbose, log_prefix=log_format == "text")
    # On the handlers: kopf logs a request's retries on whichever logger its caller passed.
    for handler in logging.getLogger().handlers:
        handler.addFilter(RetryIsNotAnError())
    if log_format == "json":
        formatter = JsonFormatter()
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)
        # Python's warnings would otherwise go to stderr as plain text, breaking one-object-per-line.
        logging.captureWarnings(True)
    global _json_lines
    _json_lines = log_format == "json"


@contextlib.contextmanager
def native_output(logger: logging.Logger) -> Iterator[None]:
    """In JSON format, turn what native code writes straight to file descriptor 2 inside the block
    (TensorFlow Lite's "INFO: Created ... delegate") into log records of ``logger``.

    For short, synchronous blocks only (loading a native library): everything written to stderr
    meanwhile is held back until the block ends; lines that are already JSON pass through as they are.
    In text format the block runs untouched.
    """
    if not _json_lines:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if not line.strip():
                    continue
                if line.startswith("{"):
                    sys.stderr.write(line + "\n")
                    continue
                prefix = _NATIVE_LEVEL.match(line)
                level = (prefix.group(1) if prefix else "INFO").replace("FATAL", "CRITICAL")
                level = {"VERBOSE": "DEBUG"}.get(level, level)
                logger.log(logging.getLevelName(level), "%s", line[prefix.end() :] if prefix else line)
