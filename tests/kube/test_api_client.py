"""The one Kubernetes client factory: the operator's precedence (kopf's) and the CLI's (kubectl's).

A pod is faked by pointing the client's in-cluster loader at a token and a CA of our own; no server
is contacted, a client is only configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
import yaml
from kubernetes.config import ConfigException, incluster_config, kube_config

from ajan.clients import kubernetes as kube

POD_HOST = "10.0.0.1"


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose current context is in namespace ``mine`` on https://person.example:6443."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://person.example:6443"}}],
                "users": [{"name": "u", "user": {"token": "person-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "mine"}}],
                "current-context": "x",
            }
        )
    )
    return path


def set_kubeconfig_env(monkeypatch: pytest.MonkeyPatch, path: Path | None) -> None:
    """$KUBECONFIG as a process started with it has it: the client reads it once, at its import."""
    if path is None:
        monkeypatch.delenv("KUBECONFIG", raising=False)
    else:
        monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path or "~/.kube/config"))


@pytest.fixture
def in_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process looks like a pod: service host and port, a token, a CA and a namespace file."""
    secrets = tmp_path / "serviceaccount"
    secrets.mkdir()
    (secrets / "token").write_text("pod-token")
    (secrets / "ca.crt").write_text("not checked until a request is made")
    (secrets / "namespace").write_text("pods-namespace\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", POD_HOST)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(secrets / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(secrets / "ca.crt"))
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_NAMESPACE", secrets / "namespace")


def test_the_operator_takes_the_pods_service_account_before_a_kubeconfig(
    in_pod: None, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_kubeconfig_env(monkeypatch, kubeconfig)
    api, namespace = kube.api_client(first="in-cluster")
    assert api.configuration.host == f"https://{POD_HOST}:443" and namespace == "pods-namespace"


def test_a_person_in_a_pod_is_their_kubeconfig_not_the_pod(
    in_pod: None, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_kubeconfig_env(monkeypatch, kubeconfig)
    api, namespace = kube.api_client(first="kubeconfig")
    assert api.configuration.host == "https://person.example:6443" and namespace == "mine"
    set_kubeconfig_env(monkeypatch, None)
    api, namespace = kube.api_client(str(kubeconfig), first="kubeconfig")
    assert api.configuration.host == "https://person.example:6443" and namespace == "mine"


@pytest.mark.parametrize("first", ["in-cluster", "kubeconfig"])
def test_out_of_a_pod_both_take_the_kubeconfig(
    first: Literal["in-cluster", "kubeconfig"], kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    set_kubeconfig_env(monkeypatch, kubeconfig)
    api, namespace = kube.api_client(first=first)
    assert api.configuration.host == "https://person.example:6443" and namespace == "mine"


def test_neither_is_a_config_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    set_kubeconfig_env(monkeypatch, None)
    with pytest.raises(ConfigException):
        kube.api_client(first="kubeconfig")
