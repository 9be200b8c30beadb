"""The report as a reader sees it: Debian's Chromium renders the page headless to a PNG.

The picture is decoded (Pillow, which matplotlib, a dev dependency, brings) and checked for what a
blank or broken page would lack: enough ink, enough distinct colours, the timeline's line colour,
and every heatmap cell's exact fill. A page whose SVG was removed must fail the same check, so the
check is known to be able to fail.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Final

import numpy as np
import pytest
from PIL import Image

from ajan.report import r_colour, render
from ajan.simulate import stack

from .plans import CORRELATIONS, plan, policy, series

WINDOW: Final = (1200, 2000)
LINE_RGB: Final = "#1f4e9c"  # the charts' line colour (report._CSS)
#: A heatmap cell is 74 x 42 CSS pixels; a cell drawn at all has most of them in its exact fill.
CELL_PIXELS: Final = 74 * 42 // 2


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, installed by hack/debian-install.sh when missing."""
    return stack.debian_binary("chromium")


def screenshot(chromium: str, page: Path, png: Path, profile: Path) -> Image.Image:
    """``page`` rendered by headless Chromium at `WINDOW`, decoded."""
    done = subprocess.run(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",  # root in a container: Chromium's sandbox cannot start
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",  # never the user's profile, nor one shared between tests
            f"--screenshot={png}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and png.exists(), done.stderr.decode(errors="replace")[-3000:]
    return Image.open(png).convert("RGB")


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def picture_problems(image: Image.Image, fills: list[str]) -> list[str]:
    """What is wrong with the screenshot of a report, as sentences; empty when it looks right."""
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    problems = []
    if image.size != WINDOW:
        problems.append(f"size {image.size}, not {WINDOW}")
    ink = float((np.abs(pixels - background).max(axis=1) > 8).mean())
    if ink < 0.05:
        problems.append(f"only {ink:.1%} of the pixels differ from the background")
    if len(colours) < 300:
        problems.append(f"only {len(colours)} distinct colours")

    def near(hex_colour: str) -> int:
        return int((np.abs(pixels - _rgb(hex_colour)).max(axis=1) <= 2).sum())

    if near(LINE_RGB) < 500:
        problems.append(f"the charts' line colour {LINE_RGB} covers {near(LINE_RGB)} pixels")
    for fill in fills:
        if near(fill) < CELL_PIXELS:
            problems.append(f"heatmap fill {fill} covers {near(fill)} pixels, fewer than {CELL_PIXELS}")
    return problems


def test_chromium_renders_the_timeline_and_the_heatmap(chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(plan(), policy(), series()), encoding="utf-8")
    image = screenshot(chromium, page, tmp_path / "report.png", tmp_path / "profile")
    assert picture_problems(image, [r_colour(c["r"]) for c in CORRELATIONS]) == []


def test_the_picture_check_fails_without_the_svg(chromium: str, tmp_path: Path) -> None:
    text = render(plan(), policy(), series())
    stripped = re.sub(r"<svg\b.*?</svg>", "", text, flags=re.DOTALL)
    assert stripped != text
    page = tmp_path / "no-svg.html"
    page.write_text(stripped, encoding="utf-8")
    image = screenshot(chromium, page, tmp_path / "no-svg.png", tmp_path / "profile")
    problems = picture_problems(image, [r_colour(c["r"]) for c in CORRELATIONS])
    assert any("heatmap fill" in p for p in problems), problems
    assert any("line colour" in p for p in problems), problems
