"""Run every benchmark and rewrite the results table in bench/README.md.

    python bench/run.py            # full size; rewrites bench/README.md
    python bench/run.py --smoke    # tiny sizes; prints, writes nothing
    python bench/run.py --only capture,lookup

Each bench/bench_*.py prints one JSON line per figure:
{"bench", "figure", "unit", "baseline", "baseline_name", "ratio", "target", "pass"}.
The table keeps the figure beside its baseline measured in the same run, with the
machine and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
REQUIRED = ("bench", "figure", "unit", "target", "pass")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}, {platform.system()}"


def run_one(script: Path, smoke: bool, timeout: float) -> tuple[list[dict], str | None]:
    args = [sys.executable, str(script)] + (["--smoke"] if smoke else [])
    started = time.monotonic()
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s"
    rows, error = [], None
    for line in done.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if all(key in row for key in REQUIRED):
            row.setdefault("seconds", round(time.monotonic() - started, 1))
            rows.append(row)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        error = f"exit {done.returncode}: {tail}"
    elif not rows:
        error = "printed no result line"
    return rows, error


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "—" if value is None else str(value)


def _met(passed: object) -> str:
    if passed is None:
        return "—"  # informational: no target
    return "yes" if passed else "**no**"


def table(rows: list[dict], failures: dict[str, str]) -> str:
    lines = [
        "| bench | figure | baseline (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        baseline = (
            f"{_fmt(row.get('baseline'))} {row.get('unit', '')} ({row.get('baseline_name', '')})"
            if row.get("baseline") is not None
            else "—"
        )
        lines.append(
            f"| {row['bench']} | {_fmt(row['figure'])} {row['unit']} | {baseline} | "
            f"{_fmt(row.get('ratio'))} | {_fmt(row['target'])} | {_met(row['pass'])} |"
        )
    for script, error in failures.items():
        lines.append(f"| {script} | did not finish: {error} | | | | **no** |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; do not rewrite README")
    parser.add_argument("--only", help="comma-separated names, e.g. capture,lookup")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    args = parser.parse_args()
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {f"bench_{name.strip()}.py" for name in args.only.split(",")}
        scripts = [s for s in scripts if s.name in wanted]
    all_rows: list[dict] = []
    failures: dict[str, str] = {}
    for script in scripts:
        print(f"running {script.name}{' (smoke)' if args.smoke else ''} …", file=sys.stderr, flush=True)
        rows, error = run_one(script, args.smoke, args.timeout)
        for row in rows:
            print(json.dumps(row), flush=True)
        all_rows.extend(rows)
        if error:
            failures[script.name] = error
            print(f"  {script.name}: {error}", file=sys.stderr)
    if not args.smoke and not args.only:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        block = f"{BEGIN}\nMeasured {stamp} on {machine()}.\n\n{table(all_rows, failures)}\n{END}"
        text = README.read_text() if README.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        README.write_text(head + block + tail)
        print(f"wrote {README}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
