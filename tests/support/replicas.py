"""Replicas of ``ajan run`` on a control plane of their own (tests/e2e/conftest.py sets it up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ajan.simulate.stack import ControlPlane, OperatorProcess, free_port

REPO: Final = Path(__file__).resolve().parents[2]
NAMESPACE: Final = "shop"
POLICY: Final = "checkout-guard"
EVALUATIONS_TIMEOUT_S: Final = 120.0


def manifest(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((REPO / "manifests" / name).read_text()) if doc]


class Replica:
    """One ``ajan run`` replica, cluster-wide as the restricted identity, with its own /metrics.

    ``name`` is its pod's name (env POD_ID, as the Deployment and the StatefulSet set it): its
    peering identity, and under ``--shards`` its shard.
    """

    def __init__(
        self, plane: ControlPlane, prometheus_url: str, workdir: Path, *flags: str, name: str = ""
    ) -> None:
        workdir.mkdir(exist_ok=True)
        self.port = free_port()
        self.name = name or f"ajan-{workdir.name}"
        self.process = OperatorProcess(
            plane.restricted_kubeconfig, None, prometheus_url, workdir,
            *flags, "--metrics-listen", f"127.0.0.1:{self.port}",
            env={"POD_ID": self.name},
        )  # fmt: skip

    def _families(self) -> list[Any]:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return list(text_string_to_metric_families(text))

    def evaluations(self) -> float:
        return sum(
            sample.value
            for family in self._families()
            if family.name == "aiops_evaluations"
            for sample in family.samples
            if sample.name == "aiops_evaluations_total"
        )

    def policies(self) -> set[str]:
        """The policies this replica evaluated (``aiops_policy_confidence`` has a series per policy)."""
        return {
            sample.labels["policy"]
            for family in self._families()
            if family.name == "aiops_policy_confidence"
            for sample in family.samples
        }
