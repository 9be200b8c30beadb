"""Tests of :func:`ajan.models.callgraph.read_call_graph`, the ``ajan rank --depends-on`` file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ajan.models.callgraph import read_call_graph

COLUMNS = ("web_p99", "cart_p99", "cart_errors")


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "graph.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_services_metrics_and_calls(tmp_path: Path) -> None:
    text = (
        "web:\n  metrics: [web_p99]\n  dependsOn: [cart, stripe]\n"
        "cart:\n  metrics: [cart_p99, cart_errors]\n"
        "stripe: {}\n"
    )
    graph = read_call_graph(_file(tmp_path, text), COLUMNS)
    assert list(graph) == ["web", "cart", "stripe"]
    assert graph["web"].depends_on == ["cart", "stripe"] and graph["cart"].metrics == [
        "cart_p99",
        "cart_errors",
    ]
    assert graph["stripe"].metrics == [] and graph["stripe"].depends_on == []  # a service nobody measures


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("web: [\n", "not YAML"),
        ("- web\n", "valid dictionary"),
        ("", "no service"),
        ("web:\n  metric: [web_p99]\n", "web.metric: Extra inputs are not permitted"),
        ("web:\n  metrics: [web_p50]\n", "web: metric 'web_p50' is not a column of the input"),
        (
            "web:\n  metrics: [web_p99]\ncart:\n  metrics: [web_p99]\n",
            "'web_p99' belongs to both 'web' and 'cart'",
        ),
        ("web:\n  dependsOn: [cart]\n", "web: dependsOn 'cart' is not a service of the file"),
        ("web:\n  metrics: web_p99\n", "web.metrics: Input should be a valid list"),
    ],
)
def test_bad_files_say_what_is_wrong_in_one_line(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        read_call_graph(_file(tmp_path, text), COLUMNS)
    message = str(info.value)
    assert needle in message and "\n" not in message, message
