"""Benchmark: program evaluation against its import floor, at 1, 10 and 50 hosts; suite time;
user-data and document sizes per host count.

    python -m bench.run [--runs 5] [--no-suite] [--no-booted]

Each figure is the median over fresh interpreters, measured alternately (floor, dev,
prod, the host counts, floor, ...) so machine noise hits all of them alike. Peak memory
is each child's own maximum resident set (os.wait4). The host counts are the dev stack
with `hostCount` set, read from a copy of Pulumi.dev.yaml (the plan's --stack-file).
The converge figures on the booted host come from bench/booted.py (root only).
This script reports; nothing asserts timings.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EC2_USER_DATA_LIMIT = 16_384
SSM_DOCUMENT_LIMIT = 65_536
HOST_COUNTS = (1, 10, 50)
# The target of issue 13: 50 hosts evaluate in at most 1.3 x the one-host time.
FLEET_TARGET = 1.3
STACK_FILES = Path(tempfile.mkdtemp(prefix="observability-lab-bench-"))
# What `make test` passes to pytest for the fast layer: the Makefile's FAST_LAYER and PYTEST_ARGS.
FAST_LAYER = ("-m", "not booted")
SUITE_ARGS = tuple(re.search(r"^PYTEST_ARGS \?= (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split())


def stack_file(hosts: int) -> Path:
    """Pulumi.dev.yaml with hostCount set, for the plan's --stack-file."""
    path = STACK_FILES / f"Pulumi.dev-{hosts}-hosts.yaml"
    if not path.exists():
        path.write_text((ROOT / "Pulumi.dev.yaml").read_text() + f"  observability-lab:hostCount: {hosts}\n")
    return path


def plan_code(*args: str) -> str:
    """A fresh interpreter's work: the offline plan path, output discarded."""
    return ("import os, sys; from offline.plan import main; sys.stdout = open(os.devnull, 'w'); "
            f"main({list(args)!r})")


CASES = {
    "floor: import pulumi, pulumi_aws, pulumi_datadog": "import pulumi, pulumi_aws, pulumi_datadog",
    # What components/__init__ does before anything else: the same SDK loads with the
    # garbage collector paused, then frozen. The fair floor for the program.
    "floor-gc: the SDK loads as components/__init__ does them":
        "import components",
    # pulumi_aws loads a service module on first attribute access (even `import
    # pulumi_aws.ec2` does not); touching one resource class each loads the ones we use.
    "floor+: also load pulumi_aws.ec2, .iam, .ssm":
        "import pulumi, pulumi_aws, pulumi_datadog; "
        "pulumi_aws.ec2.Instance, pulumi_aws.iam.Role, pulumi_aws.ssm.Parameter",
    "dev: evaluate the whole stack (offline plan path)": plan_code("dev", "--json"),
    "prod: evaluate the whole stack (offline plan path)": plan_code("prod", "--json"),
    **{f"hosts {n}: the dev stack with hostCount {n}": plan_code("dev", "--json", "--stack-file", str(stack_file(n)))
       for n in HOST_COUNTS},
    # Every setting declared, read and validated (docs/configuration.md weighs this against pydantic).
    "settings: the declarations imported and a stack's settings read (no SDK)":
        "from settings.declare import MappingSource; from settings.stack import read_settings; "
        "read_settings('dev', MappingSource({'aws:region': 'us-east-2', 'datadog:apiKey': 'x'}))",
    "python: an empty interpreter": "pass",
}


def run_once(code: str) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one fresh interpreter running `code`."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"benchmark case failed ({child.returncode}): {code}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def payload_sizes() -> list[str]:
    """From the offline plan of each stack and host count (a fresh interpreter, like the cases above)."""
    lines = []
    plans = [(stack, [stack]) for stack in ("dev", "prod")]
    plans += [(f"dev, hostCount {n}", ["dev", "--stack-file", str(stack_file(n))]) for n in HOST_COUNTS]
    for label, args in plans:
        result = subprocess.run([sys.executable, "-m", "offline.plan", *args, "--json"], cwd=ROOT,
                                capture_output=True, text=True, check=True)
        plan = json.loads(result.stdout)
        sizes = plan["userDataSizes"]
        for size in sorted(set(sizes.values())):
            hosts = sum(1 for s in sizes.values() if s == size)
            lines.append(f"  {label}: user-data {size} bytes on each of {hosts} host(s), "
                         f"{100 * size / EC2_USER_DATA_LIMIT:.1f} % of EC2's {EC2_USER_DATA_LIMIT}")
        for name, config in plan["hostConfiguration"].items():
            bundle = sum(f["bytes"] for f in config["files"])
            lines.append(f"  {label}: one SSM document ({name}) for all {len(sizes)} host(s): "
                         f"{config['documentBytes']} bytes, "
                         f"{100 * config['documentBytes'] / SSM_DOCUMENT_LIMIT:.1f} % of SSM's {SSM_DOCUMENT_LIMIT} "
                         f"(headroom {100 - 100 * config['documentBytes'] / SSM_DOCUMENT_LIMIT:.1f} %); "
                         f"bundle {len(config['files'])} files, {bundle} bytes before gzip")
    return lines


def bytecode_status() -> str:
    spec = importlib.util.find_spec("pulumi_datadog")  # located, not imported (5 s)
    assert spec is not None and spec.origin is not None, "pulumi_datadog is not installed"
    package = Path(spec.origin).parent
    compiled = any((package / "__pycache__").glob("_inputs.*.pyc"))
    return f"pulumi_datadog bytecode compiled at install: {'yes' if compiled else 'NO (first import pays ~13 s)'}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-suite", action="store_true", help="skip timing the test suite")
    parser.add_argument("--no-booted", action="store_true", help="skip the converge figures on the booted host")
    args = parser.parse_args()
    try:
        return report(args)
    finally:
        shutil.rmtree(STACK_FILES, ignore_errors=True)


def report(args: argparse.Namespace) -> int:
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, code in CASES.items():
            samples[name].append(run_once(code))

    print(f"Python {sys.version.split()[0]} on {os.cpu_count()} cores, {args.runs} runs each, medians")
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name, values in samples.items():
        wall[name] = statistics.median(v[0] for v in values)
        cpu[name] = statistics.median(v[1] for v in values)
        peak = max(v[2] for v in values)
        spread = f"{min(v[0] for v in values):.2f}-{max(v[0] for v in values):.2f}"
        print(f"  {name}: {wall[name]:.2f} s wall (range {spread}), {cpu[name]:.2f} s CPU, "
              f"peak RSS {peak:.0f} MiB")
    for label, figures in (("wall", wall), ("CPU", cpu)):
        floor, floor_gc, floor_plus, dev, prod, *fleet, settings, empty = figures.values()
        print(f"  {label}: dev/floor {dev / floor:.3f}, prod/floor {prod / floor:.3f}; "
              f"dev/floor-gc {dev / floor_gc:.3f}, prod/floor-gc {prod / floor_gc:.3f}; "
              f"program's own work {dev - floor_gc:+.2f} s (dev), {prod - floor_gc:+.2f} s (prod)")
        print(f"  {label}: AWS service modules cost {floor_plus - floor:+.2f} s with GC on; "
              f"pausing GC saves {floor_plus - floor_gc:.2f} s of the SDK loads")
        print(f"  {label}: settings {settings - empty:+.3f} s over an empty interpreter "
              f"({100 * (settings - empty) / floor_gc:.1f} % of floor-gc)")
        one = fleet[0]
        print(f"  {label}: hosts " + ", ".join(
            f"{n}: {value:.2f} s ({value / one:.3f} x one host, {value / floor_gc:.3f} x floor-gc, "
            f"{value / floor:.3f} x floor)" for n, value in zip(HOST_COUNTS, fleet)))
    fleet_cases = [name for name in CASES if name.startswith("hosts ")]
    ratio = wall[fleet_cases[-1]] / wall[fleet_cases[0]]
    print(f"  {HOST_COUNTS[-1]} hosts / 1 host (wall medians): {ratio:.3f} "
          f"(target <= {FLEET_TARGET}: {'met' if ratio <= FLEET_TARGET else 'NOT met'})")

    print("User-data and configuration document:")
    print("\n".join(payload_sizes()))
    print(bytecode_status())

    if not args.no_suite:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", *FAST_LAYER, *SUITE_ARGS], cwd=ROOT,
                                capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(f"Test suite, fast layer (pytest {' '.join(SUITE_ARGS)}, as `make test`): {elapsed:.1f} s wall; {summary}")
    if not args.no_booted:
        from bench import booted
        print("\n".join(booted.figures(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
