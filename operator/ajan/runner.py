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
from collections.abc import Sequence
from typing import Any, Final

#: Loopback: run on a laptop, ajan exposes nothing; the Deployment sets AJAN_LIVENESS for its probe.
DEFAULT_LIVENESS: Final = "http://127.0.0.1:8080/healthz"
_URL: Final = re.compile(r"^https?://\S+$")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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


def add_run_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``run`` subcommand to ajan's command line."""
    run = subparsers.add_parser(
        "run",
        help="run the operator",
        description=(
            "Run the operator: evaluate every CorrelationPolicy against Prometheus and write "
            "RemediationPlans. Each flag defaults to the environment variable named in its help."
        ),
    )
    namespaces = _env("AJAN_NAMESPACES")
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        default=None,
        help="namespace to watch; repeat for several (env AJAN_NAMESPACES, comma-separated; "
        "default: all namespaces)",
    )
    run.set_defaults(env_namespaces=[n.strip() for n in (namespaces or "").split(",") if n.strip()])
    run.add_argument(
        "--prometheus-url",
        type=_url,
        default=_env("AJAN_PROMETHEUS_URL"),
        help="Prometheus for policies that name none (env AJAN_PROMETHEUS_URL)",
    )
    run.add_argument(
        "--redis-url",
        type=_redis_url,
        default=_env("AJAN_REDIS_URL"),
        help="Redis for operator feedback (env AJAN_REDIS_URL); evaluations run without it",
    )
    run.add_argument(
        "--feedback-ttl",
        type=_positive_int,
        default=_env("AJAN_FEEDBACK_TTL", str(7 * 86400)),
        help="seconds an operator's verdict counts (env AJAN_FEEDBACK_TTL; default 604800, 7 days)",
    )
    run.add_argument(
        "--feedback-listen",
        type=_listen,
        default=_env("AJAN_FEEDBACK_LISTEN", "off"),
        help="host:port of the feedback API and /metrics, e.g. 0.0.0.0:8081 (env AJAN_FEEDBACK_LISTEN; "
        "default off); the API needs --redis-url",
    )
    run.add_argument(
        "--feedback-audience",
        default=_env("AJAN_FEEDBACK_AUDIENCE", "ajan-feedback"),
        help="the aud a feedback API bearer token must carry (env AJAN_FEEDBACK_AUDIENCE; "
        "default ajan-feedback)",
    )
    run.add_argument(
        "--feedback-issuer",
        default=_env("AJAN_FEEDBACK_ISSUER"),
        help="the iss a feedback API bearer token must carry (env AJAN_FEEDBACK_ISSUER; default: any "
        "issuer whose keys the JWKS publishes)",
    )
    run.add_argument(
        "--feedback-jwks-url",
        type=_url,
        default=_env("AJAN_FEEDBACK_JWKS_URL"),
        help="JWKS of an external identity provider (env AJAN_FEEDBACK_JWKS_URL; default: the "
        "cluster's service-account issuer, /openid/v1/jwks)",
    )
    for flag, env, default, what in (
        ("--feedback-username-claim", "AJAN_FEEDBACK_USERNAME_CLAIM", "sub", "the claim naming the user"),
        ("--feedback-username-prefix", "AJAN_FEEDBACK_USERNAME_PREFIX", "", "prefixed to the user name"),
        ("--feedback-groups-claim", "AJAN_FEEDBACK_GROUPS_CLAIM", "groups", "the claim listing the groups"),
        ("--feedback-groups-prefix", "AJAN_FEEDBACK_GROUPS_PREFIX", "", "prefixed to each group"),
    ):
        run.add_argument(
            flag,
            default=_env(env, default),
            help=f"with --feedback-jwks-url: {what}, as kube-apiserver's --oidc-{flag[11:]} "
            f"(env {env}; default {default!r}); a verdict needs the right to patch the plan",
        )
    run.add_argument(
        "--concurrency",
        type=_positive_int,
        # A string default goes through type=, so a bad variable is a usage error, not a traceback.
        default=_env("AJAN_CONCURRENCY", "8"),
        help="queries in flight per Prometheus, and analyses at once (env AJAN_CONCURRENCY; default 8)",
    )
    run.add_argument(
        "--query-timeout",
        type=_positive_float,
        default=_env("AJAN_QUERY_TIMEOUT", "10"),
        help="seconds before a Prometheus query counts as failed (env AJAN_QUERY_TIMEOUT; default 10)",
    )
    run.add_argument(
        "--max-actions-per-hour",
        type=_positive_int,
        default=_env("AJAN_MAX_ACTIONS_PER_HOUR", "20"),
        help="actions on Rollouts the whole operator takes per hour at most, annotations not counted "
        "(env AJAN_MAX_ACTIONS_PER_HOUR; default 20)",
    )
    run.add_argument(
        "--liveness",
        default=_env("AJAN_LIVENESS", DEFAULT_LIVENESS),
        help=f"kopf's liveness endpoint (env AJAN_LIVENESS; default {DEFAULT_LIVENESS}; 'off' for none)",
    )
    run.add_argument(
        "--peering",
        default=_env("AJAN_PEERING"),
        help="kopf peering object, so that of several replicas one is active (env AJAN_PEERING; "
        "default: standalone); a replica's name in it is env POD_ID (the Deployment sets the pod's)",
    )
    run.add_argument(
        "--peering-priority",
        type=_positive_int,
        default=_env("AJAN_PEERING_PRIORITY"),
        help="this replica's peering priority: the live replica with the highest one is active "
        "(env AJAN_PEERING_PRIORITY; default: random, so that replicas of one Deployment differ)",
    )
    run.add_argument(
        "--metrics-listen",
        type=_listen,
        default=_env("AJAN_METRICS_LISTEN", "off"),
        help="host:port of a server of /metrics and /readyz alone, e.g. 0.0.0.0:8082 "
        "(env AJAN_METRICS_LISTEN; default off)",
    )
    run.add_argument(
        "--log-format",
        type=_log_format,
        metavar="{text,json}",
        default=_env("AJAN_LOG_FORMAT", "text"),
        help="text (kopf's) or json: one object per line with time, level, logger, message and the "
        "namespace, policy, plan and trace it is about (env AJAN_LOG_FORMAT; default text)",
    )
    run.add_argument(
        "--otlp-endpoint",
        type=_url,
        default=_env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        help="OpenTelemetry collector's OTLP/HTTP base URL, e.g. http://collector:4318; traces go to "
        "its /v1/traces (env OTEL_EXPORTER_OTLP_ENDPOINT; default: no tracing)",
    )
    run.add_argument(
        "--trace-sample-ratio",
        type=_ratio,
        default=_env("AJAN_TRACE_SAMPLE_RATIO", "0.1"),
        help="share of evaluations traced, in [0, 1]; a sampled parent is always followed "
        "(env AJAN_TRACE_SAMPLE_RATIO; default 0.1)",
    )
    run.add_argument("--verbose", action="store_true", help="log kopf's debug messages")


def run(args: argparse.Namespace) -> int:
    """Run the operator until SIGTERM or SIGINT; returns the exit status."""
    # Imported here: `ajan detect` should not pay for kopf and the Kubernetes client.
    import kopf

    import ajan.handlers  # noqa: F401  (registers the handlers with kopf)
    from ajan import logs, tracing
    from ajan.services.reconcile import OperatorConfig

    namespaces: Sequence[str] = args.namespaces or args.env_namespaces
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
