# ajan's image: `docker build -t ghcr.io/ajan-dev/ajan:0.1.0 .` (hack/kind-up.sh does), the image
# manifests/deployment.yaml runs. Two stages: the builder makes the wheel and installs it with its
# dependencies (all binary wheels: numpy, scipy, ai-edge-litert) into a venv; the final image is
# python:3.11-slim with only that venv, no pip cache, no compiler, no source tree, run as uid 65532
# (the Deployment's runAsUser) on a read-only root filesystem.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# pyproject.toml names README.md as the package's readme, so the wheel build needs it.
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/ajan \
 && /opt/ajan/bin/pip install /wheels/ajan-*.whl

FROM python:3.11-slim
LABEL org.opencontainers.image.title="ajan" \
      org.opencontainers.image.description="Predictive remediation of Argo Rollouts canaries" \
      org.opencontainers.image.source="https://github.com/ajan-dev/ajan" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 65532 ajan \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin ajan
# The same path as in the builder: the venv's scripts name their interpreter by absolute path.
COPY --from=builder /opt/ajan /opt/ajan
# Bytecode was compiled at install time; the root filesystem is read-only in the cluster, and /tmp
# (an emptyDir there) is the only writable place, HOME included.
ENV PATH=/opt/ajan/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
# kopf's liveness (/healthz), the feedback API, /metrics and /readyz.
EXPOSE 8080 8081 8082
ENTRYPOINT ["ajan"]
CMD ["run"]
