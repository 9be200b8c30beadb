"""kopf handlers: importing this package registers them all (``kopf run -m ajan.handlers``).

Thin by design: each handler turns kopf's arguments into a call of :mod:`ajan.services` and posts
what came of it. One module per concern: `startup` (settings and shared clients), `policy`.
"""

from ajan.handlers import policy, startup

__all__ = ["policy", "startup"]
