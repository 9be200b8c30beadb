"""Fixtures shared by every test tier, registered as plugins so any directory can use them.

The real servers (kube-apiserver + etcd, Prometheus + the metrics generator) are session fixtures in
`support.kube` and `support.prometheus`; a session starts only those its tests request. Redis, which
tests stop and kill, is one per test (`support.redis`). The operator itself, as a subprocess, is
`support.operator`.
"""

pytest_plugins = [
    "support.kube",
    "support.prometheus",
    "support.redis",
    "support.operator",
    "support.rollouts",
]
