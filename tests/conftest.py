"""Fixtures shared by every test tier, registered as plugins so any directory can use them.

The real servers (kube-apiserver + etcd, Prometheus + the metrics generator) are session fixtures in
`support.kube` and `support.prometheus`; a session starts only those its tests request. The operator
itself, as a subprocess, is `support.operator`.
"""

pytest_plugins = ["support.kube", "support.prometheus", "support.operator", "support.rollouts"]
