"""Bearer tokens of the feedback API: JWTs verified against the keys an issuer publishes (a JWKS).

Two kinds of issuer, one verifier:

* the cluster itself: service-account tokens (``kubectl create token --audience ajan-feedback``),
  whose keys the API server publishes at ``/openid/v1/jwks`` (`JwksSource.from_kube_configuration`
  authenticates with the operator's own credentials and trusts the cluster's CA);
* an external identity provider, at its ``jwks_uri`` (`JwksSource.from_url`).

Only asymmetric algorithms are ever accepted (RS256 and ES256 unless configured otherwise), and a
token's algorithm must be the one its key was published for: neither ``alg: none`` nor an HMAC
token "signed" with a public key gets through. ``exp`` and ``aud`` are required; ``iss`` when
configured.

Key rotation: the verifier trusts exactly the keys of the last JWKS it fetched. A token whose
``kid`` is not among them triggers one refetch, at most once per ``refetch_interval_s`` whatever
the number of such tokens (a flood of made-up ``kid`` values cannot turn into a flood of requests
to the issuer). A key the issuer stops publishing is rejected from the next fetch on; fetches also
happen when the set is older than ``max_age_s``, so a withdrawn key does not live on for lack of an
unknown ``kid``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import httpx
import jwt
from jwt.exceptions import InvalidKeyError, PyJWKError

log = logging.getLogger(__name__)

#: The default allowlist: what Kubernetes (RS256) and most identity providers sign with.
DEFAULT_ALGORITHMS: Final = ("RS256", "ES256")
#: Every algorithm the verifier may be configured with: asymmetric signatures only. HMAC would let
#: anyone holding the (public) verification key mint tokens; ``none`` needs no key at all.
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
#: A token with an unknown key refetches the JWKS at most this often.
DEFAULT_REFETCH_INTERVAL_S: Final = 30.0
#: A JWKS older than this is refetched (so that withdrawn keys go away) on the next verification.
DEFAULT_MAX_AGE_S: Final = 300.0
#: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
DEFAULT_LEEWAY_S: Final = 30.0
FETCH_TIMEOUT_S: Final = 5.0
#: The path at which the API server publishes its service-account signing keys.
KUBE_JWKS_PATH: Final = "/openid/v1/jwks"
#: The issuer of service-account tokens in a default cluster (kube-apiserver --service-account-issuer).
KUBE_DEFAULT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"

Claims = dict[str, Any]


class AuthError(Exception):
    """A request that is not authenticated.

    reason: a short, bounded code for logs and metrics (``missing``, ``malformed``, ``algorithm``,
    ``unknown-key``, ``signature``, ``expired``, ``not-yet-valid``, ``audience``, ``issuer``,
    ``missing-claim``, ``invalid``).
    detail: what was wrong, for the client.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class KeysUnavailableError(Exception):
    """The issuer's keys could not be fetched (and none were fetched before): nothing can be verified."""


class TokenVerifier(Protocol):
    """What the API needs of a verifier: the claims of a valid token, or an `AuthError`."""

    async def verify(self, token: str) -> Claims:
        """The claims of ``token``; raises `AuthError` (or `KeysUnavailableError`)."""
        ...


@dataclass
class JwksSource:
    """Where the keys are published, and how to ask for them.

    authorization: called before every fetch, so that a rotated credential (an in-cluster
    service-account token is re-read from disk by the Kubernetes client) is always current.
    """

    url: str
    client: httpx.AsyncClient
    authorization: Callable[[], str | None] = field(default=lambda: None)
    owns_client: bool = False

    @classmethod
    def from_url(cls, url: str, *, verify: ssl.SSLContext | bool = True) -> JwksSource:
        """An external identity provider's ``jwks_uri`` (no credentials sent)."""
        return cls(url, httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, verify=verify), owns_client=True)

    @classmethod
    def from_kube_configuration(cls, configuration: Any) -> JwksSource:
        """The API server's own ``/openid/v1/jwks``, reached as the kube client reaches the API server.

        ``configuration`` is a ``kubernetes.client.Configuration`` (``api_client.configuration``):
        its host, CA, client certificate and bearer token (refreshed through its
        ``refresh_api_key_hook``) are used. The default RBAC lets every service account read it
        (ClusterRole ``system:service-account-issuer-discovery``).
        """
        verify: ssl.SSLContext | bool
        if configuration.verify_ssl:
            verify = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
            if configuration.cert_file:
                verify.load_cert_chain(configuration.cert_file, configuration.key_file)
        else:
            verify = False

        def authorization() -> str | None:
            value: str | None = configuration.get_api_key_with_prefix("authorization")
            return value

        client = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, verify=verify)
        url = configuration.host.rstrip("/") + KUBE_JWKS_PATH
        return cls(url, client, authorization, owns_client=True)

    async def fetch(self) -> list[dict[str, Any]]:
        """The published JWKs; raises `KeysUnavailableError` on any failure."""
        # The API server answers only to its registered type (406 for application/json alone).
        headers = {"Accept": "application/jwk-set+json, application/json"}
        credential = self.authorization()
        if credential:
            headers["Authorization"] = credential
        try:
            response = await self.client.get(self.url, headers=headers)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as err:
            raise KeysUnavailableError(f"cannot fetch the JWKS at {self.url}: {err}") from err
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise KeysUnavailableError(f"{self.url} is not a JWKS (no 'keys' list)")
        return [k for k in keys if isinstance(k, dict)]

    async def aclose(self) -> None:
        """Close the HTTP client, if this source made it."""
        if self.owns_client:
            await self.client.aclose()


def parse_keys(jwks: Sequence[Mapping[str, Any]], algorithms: frozenset[str]) -> dict[str | None, jwt.PyJWK]:
    """The usable signing keys of a JWKS, by ``kid``.

    A key is skipped (and logged) when it is not for signatures, its type is unknown, or the
    algorithm it is bound to (its ``alg``, else the default of its type) is not allowed.
    """
    keys: dict[str | None, jwt.PyJWK] = {}
    for data in jwks:
        kid = data.get("kid")
        if data.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(dict(data))
        except (PyJWKError, InvalidKeyError) as err:
            log.warning("skipping JWK %r: %s", kid, err)
            continue
        if key.algorithm_name not in algorithms:
            log.info("skipping JWK %r: algorithm %s is not allowed", kid, key.algorithm_name)
            continue
        keys[kid if isinstance(kid, str) else None] = key
    return keys


class JwksVerifier:
    """Verifies JWTs against the keys of one issuer (see the module docstring for rotation).

    Parameters
    ----------
    source
        Where the keys come from.
    audience
        The ``aud`` a token must carry (for service-account tokens: the ``--audience`` they were
        requested with).
    issuer
        The ``iss`` a token must carry; None accepts any (the keys alone then identify the issuer).
    algorithms
        The allowlist; asymmetric algorithms only.
    refetch_interval_s, max_age_s
        Seconds between two fetches at most / before a set is refetched regardless.
    clock
        Monotonic seconds, for the two intervals (token times use the wall clock, as PyJWT does).
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        audience: str,
        issuer: str | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        refetch_interval_s: float = DEFAULT_REFETCH_INTERVAL_S,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        leeway_s: float = DEFAULT_LEEWAY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        unsafe = set(algorithms) - ASYMMETRIC_ALGORITHMS
        if unsafe or not algorithms:
            raise ValueError(f"only asymmetric JWT algorithms may be allowed, not {sorted(unsafe) or 'none'}")
        if not audience:
            raise ValueError("an audience is required: a token for another service must not be accepted")
        self.source = source
        self.audience = audience
        self.issuer = issuer
        self.algorithms = frozenset(algorithms)
        self.refetch_interval_s = refetch_interval_s
        self.max_age_s = max_age_s
        self.leeway_s = leeway_s
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        #: Fetches attempted, successful or not (for tests and diagnostics).
        self.fetches = 0

    async def refresh(self, *, force: bool = False) -> bool:
        """Fetch the keys unless a fetch was attempted within ``refetch_interval_s``; True if fetched.

        Raises `KeysUnavailableError` when the fetch fails and no keys were fetched before; with an
        earlier set, a failed fetch is logged and the earlier set stays in use (an identity
        provider's blip must not lock everyone out).
        """
        now = self._clock()
        if (
            not force
            and self._attempted_at is not None
            and now - self._attempted_at < self.refetch_interval_s
        ):
            return False
        self._attempted_at = now
        self.fetches += 1
        try:
            keys = parse_keys(await self.source.fetch(), self.algorithms)
        except KeysUnavailableError:
            if self._fetched_at is None:
                raise
            log.warning(
                "JWKS refetch failed; keeping the %d keys fetched before", len(self._keys), exc_info=True
            )
            return False
        self._keys = keys
        self._fetched_at = now
        log.info("fetched %d signing keys from %s", len(keys), self.source.url)
        return True

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self.max_age_s

    async def _key(self, kid: str | None) -> jwt.PyJWK | None:
        if not self._stale() and (key := self._lookup(kid)) is not None:
            return key
        async with self._lock:  # concurrent requests with the same new kid: one fetch
            if self._stale():
                await self.refresh()
            if self._fetched_at is None:
                raise KeysUnavailableError(f"no signing keys fetched from {self.source.url} yet")
            key = self._lookup(kid)
            # Rate-limited inside: a refresh just done above (or by a request before) is not repeated.
            if key is None and await self.refresh():
                key = self._lookup(kid)
            return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            # Without a kid only an unambiguous set can tell which key to use.
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def verify(self, token: str) -> Claims:
        """The claims of a valid token; raises `AuthError` with the reason it is not.

        Raises `KeysUnavailableError` when no keys could ever be fetched.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as err:
            raise AuthError("malformed", f"not a JWT: {err}") from err
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError(
                "algorithm", f"algorithm {alg!r} is not accepted (allowed: {sorted(self.algorithms)})"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("malformed", "the kid header is not a string")
        key = await self._key(kid)
        if key is None:
            raise AuthError("unknown-key", f"no published signing key has kid {kid!r}")
        required = ["exp", "aud"] + (["iss"] if self.issuer is not None else [])
        try:
            claims: Claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as err:
            raise AuthError("expired", "the token has expired") from err
        except jwt.ImmatureSignatureError as err:
            raise AuthError("not-yet-valid", "the token is not valid yet") from err
        except jwt.InvalidAudienceError as err:
            raise AuthError("audience", f"the token is not for audience {self.audience!r}") from err
        except jwt.InvalidIssuerError as err:
            raise AuthError("issuer", f"the token was not issued by {self.issuer!r}") from err
        except jwt.MissingRequiredClaimError as err:
            raise AuthError("missing-claim", str(err)) from err
        except jwt.InvalidAlgorithmError as err:
            raise AuthError("algorithm", str(err)) from err
        except jwt.InvalidSignatureError as err:
            raise AuthError("signature", "the signature does not verify") from err
        except jwt.DecodeError as err:
            raise AuthError("malformed", str(err)) from err
        except jwt.InvalidTokenError as err:
            raise AuthError("invalid", str(err)) from err
        return claims

    async def aclose(self) -> None:
        """Close the source's HTTP client."""
        await self.source.aclose()
