"""Which CPython runs a bench, and the pure pipeline's CPU per event under two of them (ADR 0041).

    python -m bench.interpreters --python /usr/bin/python3.11 \\
        --python ~/.pyenv/versions/3.11.7/bin/python3.11 [--pairs 10] [--events 30000]

Each ``--python`` is the interpreter of a venv holding the locked dependencies (`make venv
PYTHON=...` in a worktree, or ``python -m venv`` then ``pip install --require-hashes --no-deps -r
requirements.lock``); this checkout is put first on its ``PYTHONPATH``. The pairs run
``bench.profiles_cpu --in-process-only`` (``run_batch`` of the profiles lane on the in-memory
store, CPU from ``getrusage``) under each in turn, the order flipped every pair, and print each
interpreter's median CPU per event, the paired ratios and how many pairs the second was cheaper.
A noisy machine moves single runs by 20 % and more; the paired ratio is the figure to read.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import run_main

ROOT = Path(__file__).resolve().parent.parent


def facts(maps: Path = Path("/proc/self/maps")) -> dict[str, Any]:
    """This process's interpreter: version, executable, and whether libpython is a shared
    library (built without ``--enable-optimizations``, which adds ``-fno-semantic-interposition``,
    its calls to its own functions go through the PLT) or linked into the executable. Its
    optimization (PGO, LTO) leaves no reliable trace in ``sysconfig`` (Debian's build optimizes
    in its own rules, not configure's flags): compare builds with :func:`main`."""
    try:
        mapped = maps.read_text()
    except OSError:
        libpython = "unknown"
    else:
        found = re.search(r"\S*libpython3[^\s/]*\.so[^\s/]*$", mapped, re.MULTILINE)
        libpython = found.group(0) if found else "linked in"
    return {
        "version": platform.python_version(),
        "executable": os.path.realpath(sys.executable),
        "libpython": libpython,
    }


def cpu_per_event(stdout: str) -> float:
    """The in-process CPU per event from ``bench.profiles_cpu --in-process-only``'s standard
    output: the JSON document it emits (its progress goes to standard error)."""
    try:
        return float(json.loads(stdout)["in_process"]["cpu_us_per_event"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError("no cpu_us_per_event in bench.profiles_cpu's output") from exc


def run_once(python: str, events: int) -> float:
    path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    proc = subprocess.run(
        [python, "-m", "bench.profiles_cpu", "--in-process-only", "--events", str(events)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{python}: bench.profiles_cpu exited {proc.returncode}: {tail[0]}")
    return cpu_per_event(proc.stdout)


def summary(first: list[float], second: list[float]) -> dict[str, Any]:
    """Medians, the paired ratios second / first and how many pairs the second was cheaper."""
    if not first or len(first) != len(second):
        raise ValueError("pairs need as many runs of each interpreter, at least one")
    ratios = [b / a for a, b in zip(first, second, strict=True)]
    return {
        "median_us_per_event": [statistics.median(first), statistics.median(second)],
        "paired_ratio_median": round(statistics.median(ratios), 3),
        "paired_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "second_cheaper_in": sum(r < 1 for r in ratios),
        "pairs": len(ratios),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interpreters", description=__doc__)
    parser.add_argument("--python", action="append", required=True, help="give it twice")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--events", type=int, default=30_000)
    args = parser.parse_args(argv)
    if len(args.python) != 2:
        parser.error("--python: give exactly two interpreters")
    runs: list[list[float]] = [[], []]
    for pair in range(args.pairs):
        order = (0, 1) if pair % 2 == 0 else (1, 0)
        for which in order:
            runs[which].append(run_once(args.python[which], args.events))
        print(
            f"pair {pair + 1}/{args.pairs}: {runs[0][-1]:.1f} / {runs[1][-1]:.1f} µs per event",
            file=sys.stderr,
        )
    result = {"interpreters": args.python, "events": args.events, "runs": runs, **summary(*runs)}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
