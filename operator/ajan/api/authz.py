"""Who may judge a plan: the Kubernetes API server decides, by a LocalSubjectAccessReview.

A verdict on a plan is a write to its ``spec.feedback``, so the feedback API lets through exactly
those callers who could make that write themselves with ``kubectl patch``: the API server is asked
whether the token's user (with its groups) may ``patch`` the ``remediationplans`` object of that
name in that namespace (``kubectl auth can-i patch remediationplans.aiops.ajan.dev/NAME -n NS
--as USER --as-group GROUP``). Authenticating a token says who is asking; this says whether they
may. Without it any service account of any namespace could mark another team's plan a false
positive, and ajan would revert that plan's pause or abort.

Identities are mapped from a verified token the way the API server maps them itself:

* a service-account token from the cluster's own issuer (it carries the ``kubernetes.io`` claim) is
  the user ``system:serviceaccount:<namespace>:<name>`` in the groups ``system:serviceaccounts``,
  ``system:serviceaccounts:<namespace>`` and ``system:authenticated``;
* an identity provider's token is mapped like kube-apiserver's ``--oidc-username-claim``,
  ``--oidc-username-prefix``, ``--oidc-groups-claim`` and ``--oidc-groups-prefix`` map it, plus
  ``system:authenticated``. Names in the reserved ``system:`` namespace are refused from an identity
  provider: only the cluster speaks for its service accounts and built-in groups.

Every request is reviewed afresh (no cache): a RoleBinding removed takes effect at the next
request, and the per-subject rate limit in front bounds what this costs the API server.

A *local* review (``localsubjectaccessreviews``, created in the plan's namespace) rather than a
cluster-wide ``subjectaccessreviews``: it asks the same question about that one namespace, and a
RoleBinding can grant it, so ajan installed for named namespaces (``--namespace``, bound by
RoleBindings) authorizes verdicts too, and can ask about no other namespace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

from ajan.api.auth import AuthError, Claims
from ajan.clients.kubernetes import call_in
from ajan.models import GROUP

#: The verb and resource a verdict needs: what ``kubectl patch`` of ``spec.feedback`` needs.
FEEDBACK_VERB: Final = "patch"
FEEDBACK_RESOURCE: Final = "remediationplans"
#: Every authenticated identity is in this group (the API server adds it to every user).
AUTHENTICATED: Final = "system:authenticated"
#: Names only the cluster itself gives out.
RESERVED_PREFIX: Final = "system:"
SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"


@dataclass(frozen=True)
class Identity:
    """A caller as the API server would see it: user name, groups and (for a service account) uid."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str | None = None
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class ForbiddenError(Exception):
    """The caller may not give this verdict; ``detail`` says why, for the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AuthorizationUnavailableError(Exception):
    """The API server could not be asked: nothing is decided, the client may retry."""


def _service_account(claims: Claims) -> Identity | None:
    """The service account a cluster-issued token names, or None if it is not one."""
    kube = claims.get("kubernetes.io")
    subject = claims.get("sub")
    if not isinstance(kube, dict) or not isinstance(subject, str):
        return None
    namespace = kube.get("namespace")
    account = kube.get("serviceaccount")
    name = account.get("name") if isinstance(account, dict) else None
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    if subject != f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}":
        raise AuthError("invalid", "the token's sub does not name the service account it carries")
    uid = account.get("uid") if isinstance(account, dict) else None
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)
    # The pod a bound token was issued for, as the API server passes it on (authorizers may use it).
    extra: dict[str, tuple[str, ...]] = {}
    pod = kube.get("pod")
    if isinstance(pod, dict) and isinstance(pod.get("name"), str):
        extra["authentication.kubernetes.io/pod-name"] = (pod["name"],)
        if isinstance(pod.get("uid"), str):
            extra["authentication.kubernetes.io/pod-uid"] = (pod["uid"],)
    return Identity(subject, groups, uid if isinstance(uid, str) else None, extra)


@dataclass(frozen=True)
class IdentityMapping:
    """How a verified token becomes an `Identity` (see the module docstring).

    kubernetes_issuer: the tokens come from the cluster's own issuer, so they name service accounts
        (the ``kubernetes.io`` claim); no other kind of token is accepted from it.
    username_claim, username_prefix, groups_claim, groups_prefix: for an identity provider, as the
        API server's ``--oidc-*`` flags of the same names; set them to the cluster's values so
        that RoleBindings written for kubectl users apply here unchanged.
    """

    kubernetes_issuer: bool = True
    username_claim: str = "sub"
    username_prefix: str = ""
    groups_claim: str | None = "groups"
    groups_prefix: str = ""

    def identity(self, claims: Claims) -> Identity:
        """The identity of a verified token's claims; raises `AuthError` if it names none.

        Raises `ForbiddenError` for an identity provider's token that claims a reserved ``system:`` name.
        """
        if self.kubernetes_issuer:
            account = _service_account(claims)
            if account is None:
                raise AuthError("missing-claim", "not a service-account token (no kubernetes.io claim)")
            return account
        user = claims.get(self.username_claim)
        if not isinstance(user, str) or not user:
            raise AuthError("missing-claim", f"the token has no usable {self.username_claim!r} claim")
        user = self.username_prefix + user
        if user.startswith(RESERVED_PREFIX):
            raise ForbiddenError(
                f"user {user!r}: names starting with {RESERVED_PREFIX!r} are the cluster's own"
            )
        raw = claims.get(self.groups_claim) if self.groups_claim else None
        listed: Sequence[Any] = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        groups = [self.groups_prefix + g for g in listed if isinstance(g, str) and g]
        # A reserved group from an identity provider is dropped, never trusted (system:masters!).
        kept = tuple(dict.fromkeys(g for g in groups if not g.startswith(RESERVED_PREFIX)))
        return Identity(user, (*kept, AUTHENTICATED))


class Authorizer(Protocol):
    """Decides whether an identity may give a verdict on a plan."""

    async def check(self, identity: Identity, namespace: str, plan: str) -> None:
        """Return if allowed; raise `ForbiddenError` (with why) or `AuthorizationUnavailableError`."""
        ...


def review_body(identity: Identity, namespace: str, plan: str) -> dict[str, Any]:
    """The LocalSubjectAccessReview asking whether ``identity`` may patch the plan ``namespace/plan``."""
    spec: dict[str, Any] = {
        "user": identity.user,
        "groups": list(identity.groups),
        "resourceAttributes": {
            "namespace": namespace,
            "verb": FEEDBACK_VERB,
            "group": GROUP,
            "resource": FEEDBACK_RESOURCE,
            "name": plan,
        },
    }
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.extra:
        spec["extra"] = {k: list(v) for k, v in identity.extra.items()}
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "LocalSubjectAccessReview",
        "metadata": {"namespace": namespace},
        "spec": spec,
    }


def forbidden_detail(identity: Identity, namespace: str, plan: str, reason: str | None) -> str:
    """What a refused caller is told: who, what they lack, and the authorizer's reason if it gave one."""
    text = (
        f"{identity.user} may not {FEEDBACK_VERB} {FEEDBACK_RESOURCE}.{GROUP} {plan!r} in namespace "
        f"{namespace!r}, which a verdict on that plan needs"
    )
    return f"{text}: {reason}" if reason else text


class SubjectAccessReviewer:
    """`Authorizer` by LocalSubjectAccessReviews against the API server (needs ``create
    localsubjectaccessreviews.authorization.k8s.io`` in the plans' namespaces, which
    manifests/rbac.yaml grants).

    Parameters
    ----------
    api
        An authenticated ``kubernetes.client.ApiClient`` (the operator's own).
    max_workers
        Threads for the blocking client: reviews in flight at once.
    """

    def __init__(self, api: client.ApiClient, *, max_workers: int = 2) -> None:
        self._api = api
        self._authz = client.AuthorizationV1Api(api)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ajan-authz")

    async def check(self, identity: Identity, namespace: str, plan: str) -> None:
        """Ask the API server; raise `ForbiddenError` unless it says allowed."""
        body = review_body(identity, namespace, plan)
        try:
            review = await call_in(
                self._pool, self._authz.create_namespaced_local_subject_access_review, namespace, body
            )
        except ApiException as err:
            raise AuthorizationUnavailableError(
                f"LocalSubjectAccessReview refused: HTTP {err.status} {err.reason}"
            ) from err
        except Exception as err:  # the API server unreachable: urllib3's errors, timeouts
            raise AuthorizationUnavailableError(
                f"LocalSubjectAccessReview failed: {type(err).__name__}: {err}"
            ) from err
        status = review.status
        if status is not None and status.allowed and not status.denied:
            return
        reason = (status.reason or status.evaluation_error) if status is not None else None
        raise ForbiddenError(forbidden_detail(identity, namespace, plan, reason))

    def close(self) -> None:
        """Stop the thread pool and close the client's connections."""
        self._pool.shutdown(wait=True)
        self._api.close()
