"""Sharding: every replica agrees, without talking, which policies are its own."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from ajan.runner import shard_from
from ajan.services.sharding import Shard, ordinal_of, shard_of

NAMES = [(f"team-{i % 7}", f"policy-{i}") for i in range(3000)]


def test_each_policy_has_exactly_one_owner_and_the_shares_are_even() -> None:
    for count in (2, 3, 5):
        shards = [Shard(i, count) for i in range(count)]
        owners = [sum(s.owns(ns, n) for s in shards) for ns, n in NAMES]
        assert set(owners) == {1}
        sizes = Counter(shard_of(ns, n, count) for ns, n in NAMES)
        # A fair hash: each shard within 10 % of an even share of 3,000 policies.
        assert all(abs(sizes[i] - len(NAMES) / count) < 0.1 * len(NAMES) / count for i in range(count)), sizes


def test_the_hash_is_the_same_in_every_process() -> None:
    """Python's own hash is salted per process: two replicas would disagree with it."""
    code = (
        "from ajan.services.sharding import shard_of; "
        "print([shard_of('shop', f'p{i}', 7) for i in range(50)])"
    )
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}  # fmt: skip
    assert runs == {f"{[shard_of('shop', f'p{i}', 7) for i in range(50)]}\n"}


def test_the_shard_comes_from_the_flag_or_the_statefulset_pod_name() -> None:
    assert shard_from(1, None, "ajan", None) == Shard()  # unsharded: peering as before
    assert shard_from(3, None, None, "ajan-2") == Shard(2, 3)
    assert shard_from(3, 1, None, "ajan-2") == Shard(1, 3)  # the flag wins
    assert ordinal_of("ajan-operator-10") == 10


@pytest.mark.parametrize(
    ("shards", "index", "peering", "pod", "message"),
    [
        (3, None, "ajan", "ajan-0", "--shards and --peering exclude each other"),
        (3, None, None, None, "--shards needs --shard"),
        (3, None, None, "ajan-7d9f8-x2k4p", "cannot tell the shard from the pod name"),
        (3, 3, None, None, "shard 3 of 3: need 0 <= shard < shards"),
    ],
)
def test_a_shard_that_cannot_be_told_is_a_clear_error(
    shards: int, index: int | None, peering: str | None, pod: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        shard_from(shards, index, peering, pod)
