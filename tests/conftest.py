"""Fixtures shared by every test tier, registered as plugins so any directory can use them.

The real servers (kube-apiserver + etcd, Prometheus + the metrics generator) are session fixtures in
`support.kube` and `support.prometheus`; a session starts only those its tests request.
"""

pytest_plugins = ["support.kube", "support.prometheus"]
