"""The feedback HTTP API: verdicts on RemediationPlans from people and outside systems.

`make_app` builds the aiohttp application from its dependencies, `serve` starts it in the running
event loop (the operator's, from its startup handler); `auth` verifies bearer JWTs against a JWKS,
`authz` asks the API server whether the caller may judge the plan, `ratelimit` keeps per-client
token buckets.
"""

from __future__ import annotations

from ajan.api.app import FeedbackRequest, Submit, feedback_submitter, make_app, serve
from ajan.api.auth import AuthError, JwksSource, JwksVerifier, KeysUnavailableError, TokenVerifier
from ajan.api.authz import Authorizer, Identity, IdentityMapping, SubjectAccessReviewer
from ajan.api.ratelimit import RateLimiter

__all__ = [
    "AuthError",
    "Authorizer",
    "FeedbackRequest",
    "Identity",
    "IdentityMapping",
    "JwksSource",
    "JwksVerifier",
    "KeysUnavailableError",
    "RateLimiter",
    "SubjectAccessReviewer",
    "Submit",
    "TokenVerifier",
    "feedback_submitter",
    "make_app",
    "serve",
]
