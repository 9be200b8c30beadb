"""The operator's decisions, between the clients at the edges and the numeric core.

:mod:`~ajan.services.assessment` turns a policy's metric window into a scored, explained
recommendation (pure); :mod:`~ajan.services.incident` decides what that means for the policy's
incident and plans (pure); :mod:`~ajan.services.reconcile` carries a decision out against Prometheus
and the API server.
"""
