"""kopf handlers: importing this package registers them all (``kopf run -m ajan.handlers``).

Thin by design: each handler turns kopf's arguments into a call of :mod:`ajan.services` and posts
what came of it. One module per concern: `startup` (settings and shared clients), `policy` (a daemon
per policy), `plan` (an approval wakes its policy).
"""

from ajan.handlers import plan, policy, startup

__all__ = ["plan", "policy", "startup"]
