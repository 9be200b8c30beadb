"""Errors of the domain: what a decision refuses to go on without, whatever the backend.

A policy is judged only on data worth judging. Whether the data came from Prometheus (the
operator), a CSV (``ajan backtest --history``) or a generated history (the evaluation), too little
of it is the same condition, with the same reason on the policy's Degraded condition; so the error
lives here, beside neither the client that may raise it nor the core that may.
"""

from __future__ import annotations

from typing import ClassVar


class DataError(Exception):
    """No usable data for a decision; ``reason`` is the reason of the policy's Degraded condition
    (CamelCase, as Kubernetes condition reasons are), ``query`` the query concerned, if one is."""

    reason: ClassVar[str] = "DataError"

    def __init__(self, message: str, *, query: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.query = query


class InsufficientData(DataError):  # noqa: N818 (named as the condition reason it maps to)
    """No series, fewer finite points than asked for, or a window too sparse or too short to judge."""

    reason: ClassVar[str] = "InsufficientData"
