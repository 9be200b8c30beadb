"""Metric tables read from CSV: the input of ``ajan detect`` and ``ajan rank``."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

TIMESTAMP_COLUMN = "timestamp"


class InputError(ValueError):
    """A problem with user input, reported as one line without a traceback."""


@dataclass(frozen=True)
class MetricTable:
    """Metrics as rows of time: ``values`` has shape (T, N), ``names`` N entries.

    ``timestamps`` holds the original timestamp strings (None without a timestamp
    column) and ``epochs`` the same as epoch seconds, for lookups by time.
    """

    names: tuple[str, ...]
    values: NDArray[np.float64]
    timestamps: tuple[str, ...] | None
    epochs: NDArray[np.float64] | None


def parse_timestamp(text: str) -> float:
    """Epoch seconds from ISO 8601 (naive means UTC) or from epoch seconds."""
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"timestamp {s!r} is neither ISO 8601 nor epoch seconds") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _parse_value(text: str, path: Path, line: int, column: str) -> float:
    s = text.strip()
    if s == "" or s.lower() in {"nan", "na", "null"}:
        return math.nan
    try:
        v = float(s)
    except ValueError:
        raise InputError(f"{path}:{line}: column {column!r} has non-numeric value {s!r}") from None
    if math.isinf(v):
        raise InputError(f"{path}:{line}: column {column!r} has infinite value {s!r}")
    return v


def read_table(
    path: str | Path,
    *,
    columns: tuple[str, ...] | None = None,
    allow_extra: bool = False,
    optional: tuple[str, ...] = (),
) -> MetricTable:
    """Read a metric CSV with a header row; every column but ``timestamp`` is a metric.

    Empty cells and ``NaN`` are missing samples. With ``columns`` the file must
    have exactly those metric columns (in any order; they are returned in that order),
    or at least those with ``allow_extra`` (the others are ignored); of the ``optional``
    columns, those the file has follow them.

    Raises
    ------
    InputError
        Missing or empty file, no metric column, duplicate or unknown columns,
        ragged rows, non-numeric or infinite values, bad timestamps, or a metric
        column without a single value.
    """
    p = Path(path)
    try:
        # utf-8-sig: spreadsheet exports start with a byte-order mark, which would
        # otherwise become part of the first column's name ("\ufefftimestamp").
        handle = p.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror}") from None
    with handle:
        try:
            rows = list(csv.reader(handle))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"{p}: not a readable CSV file: {exc}") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{p}: empty file")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise InputError(f"{p}: duplicate column {dup[0]!r}")
    metric_idx = [i for i, h in enumerate(header) if h != TIMESTAMP_COLUMN]
    if not metric_idx:
        raise InputError(f"{p}: no metric column (only a timestamp)")
    if any(h == "" for h in header):
        raise InputError(f"{p}: a column has an empty name")
    body = rows[1:]
    if not body:
        raise InputError(f"{p}: no data rows")
    for n, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise InputError(f"{p}:{n}: {len(r)} fields, the header has {len(header)}")
    names = tuple(header[i] for i in metric_idx)
    if columns is not None:
        unknown = [c for c in names if c not in columns and c not in optional]
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(
                f"{p}: missing column {missing[0]!r}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        if unknown and not allow_extra:
            raise InputError(f"{p}: unknown column {unknown[0]!r} (not in the input file)")
        present = tuple(c for c in optional if c in header)
        metric_idx = [header.index(c) for c in (*columns, *present)]
        names = (*columns, *present)
    values = np.array(
        [[_parse_value(r[i], p, n, header[i]) for i in metric_idx] for n, r in enumerate(body, 2)],
        dtype=float,
    ).reshape(len(body), len(metric_idx))
    empty = [names[j] for j in range(values.shape[1]) if np.isnan(values[:, j]).all()]
    if empty:
        raise InputError(f"{p}: column {empty[0]!r} has no numeric value (all NaN)")
    timestamps: tuple[str, ...] | None = None
    epochs: NDArray[np.float64] | None = None
    if TIMESTAMP_COLUMN in header:
        ti = header.index(TIMESTAMP_COLUMN)
        timestamps = tuple(r[ti].strip() for r in body)
        try:
            epochs = np.array([parse_timestamp(t) for t in timestamps], dtype=float)
        except InputError as exc:
            raise InputError(f"{p}: {exc}") from None
    return MetricTable(names, values, timestamps, epochs)
