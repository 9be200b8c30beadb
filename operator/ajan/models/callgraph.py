"""A service call graph a user gives ``ajan rank --depends-on``: whose metrics are whose, who calls whom.

The file is YAML, one entry per service (node)::

    checkout:
      metrics: [checkout_p99, checkout_error_ratio]   # columns of the input CSV
      dependsOn: [payments, inventory]                  # the services it calls
    payments:
      metrics: [payments_p99]

A node may have no metrics (a managed service nobody exports) and may be named only in another
node's ``dependsOn``; it then scores 0 and can still be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, ValidationError

NodeName = Annotated[str, StringConstraints(min_length=1, max_length=253)]


class ServiceNode(BaseModel):
    """One service: the metric columns that are its own, and the services it calls."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    metrics: list[NodeName] = Field(default_factory=list)
    """Columns of the input CSV that measure this service."""
    depends_on: list[NodeName] = Field(default_factory=list, alias="dependsOn")
    """The services this one calls."""


class CallGraphFile(RootModel[dict[NodeName, ServiceNode]]):
    """The whole file: service name to :class:`ServiceNode`."""


def read_call_graph(path: str | Path, columns: tuple[str, ...]) -> dict[str, ServiceNode]:
    """Read and check a ``--depends-on`` file against the input's metric ``columns``.

    Raises
    ------
    ValueError
        One line naming the problem: not YAML, not a mapping of services, an unknown key, a
        metric that is not an input column or that two services claim, a ``dependsOn`` that
        names no service of the file.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    try:
        graph = CallGraphFile.model_validate(raw if raw is not None else {}).root
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise ValueError(f"{path}: {where}: {first['msg']}") from None
    if not graph:
        raise ValueError(f"{path}: no service in the file")
    known = set(columns)
    owner: dict[str, str] = {}
    for name, node in graph.items():
        for metric in node.metrics:
            if metric not in known:
                raise ValueError(f"{path}: {name}: metric {metric!r} is not a column of the input")
            if metric in owner and owner[metric] != name:
                raise ValueError(f"{path}: metric {metric!r} belongs to both {owner[metric]!r} and {name!r}")
            owner[metric] = name
        for callee in node.depends_on:
            if callee not in graph:
                raise ValueError(f"{path}: {name}: dependsOn {callee!r} is not a service of the file")
    return graph
