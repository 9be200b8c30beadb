"""Benchmark: how far ahead of the SLO breach, and of Argo Rollouts' own analysis, ajan acts.

Run: ``.venv/bin/python hack/bench_leadtime.py [--seeds 2] [--first-seed 11] [--scenarios a,b]
[--alone] [--out F]``

Each scenario x seed is one run of ``tests/argo/bench_leadtime.py`` (its docstring says what a run
is) on the real stack, through README's test command (``hack/test.sh``: it sets the machine up and
builds what is missing first). The runs' records go to ``--out`` (JSON lines, appended); the table
printed at the end is computed from that file, so a second invocation with another seed range adds
to it. Times are in the benchmark's compressed clock (every duration twelvefold shorter than at a
real service: a 3-minute window, Argo's interval 5 s); multiply by 12 for real time. Nothing is
asserted. Each scenario starts the generator's simulated day at a pinned time (midnight, unless the
scenario is about the load), so a run does not depend on the wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
BENCH: Final = "tests/argo/bench_leadtime.py"
SCALE: Final = 12


def median(values: Iterable[float]) -> str:
    got = list(values)
    return f"{statistics.median(got):.0f}" if got else "-"


def table(records: Sequence[dict[str, Any]]) -> str:
    """One row per scenario: what each guard did, in seconds of the compressed clock."""
    lines = [
        "| scenario | runs | SLO breached | ajan acted | ajan before breach | lead before breach (median s) "
        "| Argo failed | ajan no later than Argo | ajan ahead of Argo (median s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario in dict.fromkeys(r["scenario"] for r in records):
        runs = [r for r in records if r["scenario"] == scenario]
        breached = [r for r in runs if r["breach_s"] is not None]
        acted = [r for r in runs if r["ajan_s"] is not None]
        before = [r for r in breached if r["ajan_s"] is not None and r["ajan_s"] < r["breach_s"]]
        failed = [r for r in runs if r["argo_failed_s"] is not None]
        both = [r for r in failed if r["ajan_s"] is not None]
        no_later = [r for r in both if r["ajan_s"] <= r["argo_failed_s"]]
        lines.append(
            f"| {scenario} | {len(runs)} | {len(breached)} | {len(acted)} | {len(before)}/{len(breached)} "
            f"| {median(r['breach_s'] - r['ajan_s'] for r in breached if r['ajan_s'] is not None)} "
            f"| {len(failed)} | {len(no_later)}/{len(failed)} "
            f"| {median(r['argo_failed_s'] - r['ajan_s'] for r in both)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds per scenario")
    parser.add_argument("--first-seed", type=int, default=11, help="the generator's first seed")
    parser.add_argument("--scenarios", default="", help="comma-separated; default: all")
    parser.add_argument("--alone", action="store_true", help="judge the canary alone, not against stable")
    parser.add_argument("--out", type=Path, default=Path("leadtime.jsonl"), help="records, appended")
    parser.add_argument("--table-only", action="store_true", help="print the table of --out, run nothing")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if not args.table_only:
        env = {
            **os.environ,
            "AJAN_BENCH_SEEDS": str(args.seeds),
            "AJAN_BENCH_FIRST_SEED": str(args.first_seed),
            "AJAN_BENCH_OUT": str(out),
        }
        if args.scenarios:
            env["AJAN_BENCH_SCENARIOS"] = args.scenarios
        if args.alone:
            env["AJAN_BENCH_ALONE"] = "1"
        command = ["bash", str(ROOT / "hack/test.sh"), BENCH, "-q", "-s", "-p", "no:cacheprovider"]
        code = subprocess.call(command, cwd=ROOT, env=env)
        if code != 0:
            print(
                f"bench_leadtime: some runs failed (pytest exit {code}); the table has the others",
                file=sys.stderr,
            )
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(f"\n{len(records)} runs from {out} (seconds of the compressed clock; x{SCALE} for real time)\n")
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
