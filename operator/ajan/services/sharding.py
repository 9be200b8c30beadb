"""Policies shared out among replicas, the way Argo CD's application controller shares clusters.

A StatefulSet of N replicas runs ``ajan run --shards N``; each replica's ordinal (the number at the
end of its pod name, ``ajan-2``) is its shard. A policy belongs to the shard a stable hash of its
``namespace/name`` picks, so every replica knows, without talking to the others, which policies are
its own: no lease, no coordination, nothing new to run. The StatefulSet gives the rest: at most one
pod per ordinal, a dead one restarted under the same name (its policies wait for it, and are never
evaluated twice meanwhile), and a changed replica count rolls every pod with the new ``--shards``,
which rebalances. Peering (one active replica among several) is for small clusters and does not mix
with this: a shard has one pod.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_ORDINAL = re.compile(r"-(\d+)$")


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard that owns the policy ``namespace/name`` among ``shards``.

    SHA-256, not Python's ``hash``: that one is salted per process, and every replica must agree.

    >>> [shard_of("shop", p, 3) for p in ("checkout", "cart", "search")]
    [2, 2, 1]
    """
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def ordinal_of(pod_name: str) -> int:
    """The StatefulSet ordinal at the end of a pod's name.

    >>> ordinal_of("ajan-12")
    12

    Raises
    ------
    ValueError
        When the name does not end in ``-N`` (not a StatefulSet's pod).
    """
    found = _ORDINAL.search(pod_name)
    if found is None:
        raise ValueError(
            f"cannot tell the shard from the pod name {pod_name!r}: a StatefulSet names its pods "
            "NAME-0, NAME-1, ...; set --shard (AJAN_SHARD) explicitly"
        )
    return int(found.group(1))


@dataclass(frozen=True)
class Shard:
    """This replica's part: shard ``index`` of ``count`` (the whole, 0 of 1, without sharding)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: need 0 <= shard < shards")

    def owns(self, namespace: str, name: str) -> bool:
        """Whether this replica evaluates the policy ``namespace/name``."""
        return self.count == 1 or shard_of(namespace, name, self.count) == self.index
