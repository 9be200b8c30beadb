"""``ajan run``: the operator, kopf underneath, configured by flags or environment variables.

The ``run`` subcommand of :mod:`ajan.cli`. Every flag has an environment variable (the Deployment
sets those); a flag wins over its variable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ajan.services.sharding import Shard, ordinal_of

#: Loopback: run on a laptop, ajan exposes nothing; the Deployment sets AJAN_LIVENESS for its probe.
DEFAULT_LIVENESS: Final = "http://127.0.0.1:8080/healthz"
_URL: Final = re.compile(r"^https?://\S+$")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _int_at_least(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


#: An argparse type: an integer of at least 1, or a one-line error.
positive_int = _int_at_least(1)
#: A StatefulSet ordinal: 0 is the first pod.
_shard_index = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _url(text: str) -> str:
    if not _URL.match(text):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text.rstrip("/")


def _redis_url(text: str) -> str:
    if not re.match(r"^(redis|rediss|unix)://\S+$", text):
        raise argparse.ArgumentTypeError(f"not a redis:// URL: {text!r}")
    return text


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _log_format(text: str) -> str:
    # Not choices=: argparse checks choices only on the command line, not on a default from the env.
    if text not in ("text", "json"):
        raise argparse.ArgumentTypeError(f"must be text or json, got {text!r}")
    return text


def _listen(text: str) -> tuple[str, int] | None:
    if text in ("", "off"):
        return None
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"not host:port: {text!r}")
    return host or "0.0.0.0", int(port)


@dataclass(frozen=True)
class Setting:
    """One setting of ``ajan run``: its flag, the environment variable that is its default, and its help.

    ``help`` may name ``{env}`` and ``{default}``, so that the variable and the default are written
    once, here, and the help cannot drift from what the parser does.
    """

    flag: str
    env: str
    help: str
    #: Parses the flag's and the variable's text alike; None keeps the text.
    parse: Callable[[str], object] | None = None
    #: As the variable would give it: a string default goes through ``parse`` too, so that a bad
    #: variable is a usage error, not a traceback.
    default: str | None = None
    metavar: str | None = None


def _oidc(claim: str, default: str, what: str) -> Setting:
    """A ``--feedback-<claim>`` setting: one of kube-apiserver's ``--oidc-<claim>`` mappings."""
    return Setting(
        f"--feedback-{claim}",
        f"AJAN_FEEDBACK_{claim.upper().replace('-', '_')}",
        f"with --feedback-jwks-url: {what}, as kube-apiserver's --oidc-{claim} "
        "(env {env}; default {default!r}); a verdict needs the right to patch the plan",
        default=default,
    )


#: Read by ``--namespace``, which alone is repeatable and so is not a `Setting`.
NAMESPACES_ENV: Final = "AJAN_NAMESPACES"

#: Every setting of ``ajan run`` but ``--namespace`` and ``--verbose``, in the order of ``--help``.
SETTINGS: Final[tuple[Setting, ...]] = (
    Setting(
        "--prometheus-url",
        "AJAN_PROMETHEUS_URL",
        "Prometheus for policies that name none (env {env})",
        _url,
    ),
    Setting(
        "--redis-url",
        "AJAN_REDIS_URL",
        "Redis for operator feedback (env {env}); evaluations run without it",
        _redis_url,
    ),
    Setting(
        "--feedback-ttl",
        "AJAN_FEEDBACK_TTL",
        "seconds an operator's verdict counts (env {env}; default {default}, 7 days)",
        positive_int,
        str(7 * 86400),
    ),
    Setting(
        "--feedback-listen",
        "AJAN_FEEDBACK_LISTEN",
        "host:port of the feedback API and /metrics, e.g. 0.0.0.0:8081 (env {env}; "
        "default {default}); the API needs --redis-url",
        _listen,
        "off",
    ),
    Setting(
        "--feedback-audience",
        "AJAN_FEEDBACK_AUDIENCE",
        "the aud a feedback API bearer token must carry (env {env}; default {default})",
        default="ajan-feedback",
    ),
    Setting(
        "--feedback-issuer",
        "AJAN_FEEDBACK_ISSUER",
        "the iss a feedback API bearer token must carry (env {env}; default: any "
        "issuer whose keys the JWKS publishes)",
    ),
    Setting(
        "--feedback-jwks-url",
        "AJAN_FEEDBACK_JWKS_URL",
        "JWKS of an external identity provider (env {env}; default: the "
        "cluster's service-account issuer, /openid/v1/jwks)",
        _url,
    ),
    _oidc("username-claim", "sub", "the claim naming the user"),
    _oidc("username-prefix", "", "prefixed to the user name"),
    _oidc("groups-claim", "groups", "the claim listing the groups"),
    _oidc("groups-prefix", "", "prefixed to each group"),
    Setting(
        "--concurrency",
        "AJAN_CONCURRENCY",
        "queries in flight per Prometheus, and analyses at once (env {env}; default {default})",
        positive_int,
        "8",
    ),
    Setting(
        "--query-timeout",
        "AJAN_QUERY_TIMEOUT",
        "seconds before a Prometheus query counts as failed (env {env}; default {default})",
        _positive_float,
        "10",
    ),
    Setting(
        "--max-actions-per-hour",
        "AJAN_MAX_ACTIONS_PER_HOUR",
        "actions on Rollouts the whole operator takes per hour at most, annotations not counted "
        "(env {env}; default {default})",
        positive_int,
        "20",
    ),
    Setting(
        "--liveness",
        "AJAN_LIVENESS",
        "kopf's liveness endpoint (env {env}; default {default}; 'off' for none)",
        default=DEFAULT_LIVENESS,
    ),
    Setting(
        "--peering",
        "AJAN_PEERING",
        "kopf peering object, so that of several replicas one is active (env {env}; "
        "default: standalone); a replica's name in it is env POD_ID (the Deployment sets the pod's)",
    ),
    Setting(
        "--peering-priority",
        "AJAN_PEERING_PRIORITY",
        "this replica's peering priority: the live replica with the highest one is active "
        "(env {env}; default: random, so that replicas of one Deployment differ)",
        positive_int,
    ),
    Setting(
        "--shards",
        "AJAN_SHARDS",
        "share the policies among this many replicas of a StatefulSet, each evaluating those a "
        "hash of namespace/name gives its shard (env {env}; default {default}: one replica owns all; "
        "not with --peering)",
        positive_int,
        "1",
    ),
    Setting(
        "--shard",
        "AJAN_SHARD",
        "this replica's shard, from 0 (env {env}; default: the ordinal at the end of env POD_ID, "
        "the StatefulSet's pod name)",
        _shard_index,
    ),
    Setting(
        "--metrics-listen",
        "AJAN_METRICS_LISTEN",
        "host:port of a server of /metrics and /readyz alone, e.g. 0.0.0.0:8082 "
        "(env {env}; default {default})",
        _listen,
        "off",
    ),
    Setting(
        "--log-format",
        "AJAN_LOG_FORMAT",
        "text (kopf's) or json: one object per line with time, level, logger, message and the "
        "namespace, policy, plan and trace it is about (env {env}; default {default})",
        _log_format,
        "text",
        metavar="{text,json}",
    ),
    Setting(
        "--otlp-endpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OpenTelemetry collector's OTLP/HTTP base URL, e.g. http://collector:4318; traces go to "
        "its /v1/traces (env {env}; default: no tracing)",
        _url,
    ),
    Setting(
        "--trace-sample-ratio",
        "AJAN_TRACE_SAMPLE_RATIO",
        "share of evaluations traced, in [0, 1]; a sampled parent is always followed "
        "(env {env}; default {default})",
        _ratio,
        "0.1",
    ),
)


def add_run_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``run`` subcommand to ajan's command line: ``--namespace``, the `SETTINGS`, ``--verbose``."""
    run = subparsers.add_parser(
        "run",
        help="run the operator",
        description=(
            "Run the operator: evaluate every CorrelationPolicy against Prometheus and write "
            "RemediationPlans. Each flag defaults to the environment variable named in its help."
        ),
    )
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        default=None,
        help=f"namespace to watch; repeat for several (env {NAMESPACES_ENV}, comma-separated; "
        "default: all namespaces)",
    )
    # Apart from the flags: a repeated flag appends to its default, and the flags replace the variable.
    namespaces = _env(NAMESPACES_ENV) or ""
    run.set_defaults(env_namespaces=[n.strip() for n in namespaces.split(",") if n.strip()])
    for setting in SETTINGS:
        run.add_argument(
            setting.flag,
            type=setting.parse,
            default=_env(setting.env, setting.default),
            metavar=setting.metavar,
            help=setting.help.format(env=setting.env, default=setting.default),
        )
    run.add_argument("--verbose", action="store_true", help="log kopf's debug messages")


def shard_from(shards: int, index: int | None, peering: str | None, pod_name: str | None) -> Shard:
    """This replica's `Shard` from ``--shards``, ``--shard`` and the pod's name (env POD_ID).

    Raises
    ------
    ValueError
        With the reason: peering and sharding together, no way to tell the shard, or one out of range.
    """
    if shards == 1:
        return Shard()
    if peering is not None:
        raise ValueError(
            "--shards and --peering exclude each other: a shard is one pod of a StatefulSet, and "
            "peering would leave all but one replica idle"
        )
    if index is None:
        if not pod_name:
            raise ValueError("--shards needs --shard (AJAN_SHARD) or the pod's name in env POD_ID")
        index = ordinal_of(pod_name)
    return Shard(index, shards)


def run(args: argparse.Namespace) -> int:
    """Run the operator until SIGTERM or SIGINT; returns the exit status."""
    # Imported here: `ajan detect` should not pay for kopf and the Kubernetes client.
    import kopf

    import ajan.handlers  # noqa: F401  (registers the handlers with kopf)
    from ajan import logs, tracing
    from ajan.services.runtime import OperatorConfig

    namespaces: Sequence[str] = args.namespaces or args.env_namespaces
    try:
        shard = shard_from(args.shards, args.shard, args.peering, _env("POD_ID"))
    except ValueError as err:
        print(f"ajan run: error: {err}", file=sys.stderr)
        return 2
    config = OperatorConfig(
        default_prometheus_url=args.prometheus_url,
        query_timeout_s=args.query_timeout,
        concurrency=args.concurrency,
        redis_url=args.redis_url,
        feedback_ttl_s=args.feedback_ttl,
        feedback_listen=args.feedback_listen,
        feedback_audience=args.feedback_audience,
        feedback_issuer=args.feedback_issuer,
        feedback_jwks_url=args.feedback_jwks_url,
        feedback_username_claim=args.feedback_username_claim,
        feedback_username_prefix=args.feedback_username_prefix,
        feedback_groups_claim=args.feedback_groups_claim,
        feedback_groups_prefix=args.feedback_groups_prefix,
        max_actions_per_hour=args.max_actions_per_hour,
        metrics_listen=args.metrics_listen,
        namespaced=bool(namespaces),
        shard=shard,
    )
    # Logging first: what follows (the tracer's own line included) is in the chosen format.
    logs.configure(args.log_format, verbose=args.verbose)
    logging.getLogger("ajan").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    # One line per Prometheus query at INFO would drown everything else.
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    liveness = None if args.liveness in (None, "", "off") else args.liveness
    tracing.configure(args.otlp_endpoint, args.trace_sample_ratio)
    try:
        asyncio.run(
            kopf.operator(
                clusterwide=not namespaces,
                namespaces=list(namespaces),
                standalone=args.peering is None,
                peering_name=args.peering,
                # kopf pauses *every* replica when two share a priority: equal defaults would leave
                # nobody active. A random one differs between replicas (a tie: 1 in 2**31), and a
                # rolling update still hands over, since the old replica leaves on SIGTERM.
                priority=args.peering_priority or secrets.randbelow(2**31 - 1) + 1,
                liveness_endpoint=liveness,
                memo=kopf.Memo(config=config),
            )
        )
    finally:
        # The cleanup handler flushed already, unless startup failed before it could run.
        tracing.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ajan.runner run ...``: the same as ``ajan run``."""
    parser = argparse.ArgumentParser(prog="ajan")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_run_parser(subparsers)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
