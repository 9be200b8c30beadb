"""ajan: predictive remediation of progressive deliveries."""

from __future__ import annotations

__version__ = "0.1.0"
