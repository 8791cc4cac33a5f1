"""Converge figures on the booted host (tests/booted): what a host pays per run of the document.

    python -m bench.booted [--runs 5]

One fresh host boots from the cached image (its cold build time is the one recorded when this
machine built it), runs the dev stack's rendered document for the first time, then alternately
the same document again (no change) and one with checkIntervalSeconds changed (one setting: one
file, the Agent restarted), each `--runs` times; medians. Root only, like the layer. This
script reports; nothing asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time

from tests.booted.documents import render
from tests.booted.host import assert_succeeded
from tests.booted.image import CACHE, image_key, machine_mirrors
from tests.booted.lab import Lab, remove_run_dir, run_dirs_of


def figures(runs: int) -> list[str]:
    if os.geteuid() != 0:
        return ["Booted host: not measured (needs root, as `make test-booted`)"]
    dev, other = render("dev"), render("dev", checkIntervalSeconds=30)
    lines = []
    started = time.monotonic()
    lab = Lab(dev, log=lambda message: lines.append(f"  {message}"))
    try:
        built = json.loads((CACHE / "rootfs" / f"{image_key(machine_mirrors())}.json").read_text())
        lines.append(f"  image: cold build {built['build_seconds']:.0f} s when this machine built it "
                     f"(mmdebstrap, {len(built['packages'])} packages); session set-up "
                     f"{lab.timings['session set-up, image included']:.1f} s")
        host = lab.boot()
        lines.append(f"  boot to `running`: {host.boot_seconds:.1f} s")
        first = host.converge(dev)
        assert_succeeded(dev, first)
        same, one = [], []
        effects = set()
        for n in range(runs):
            changed = other if n % 2 == 0 else dev
            before = host.invocations()
            run = host.converge(changed)
            assert_succeeded(changed, run)
            one.append(run.seconds)
            after = host.invocations()
            effects.add((tuple(re.findall(r"^file (\S+): updated$", run.stdout, re.M)),
                         tuple(unit for unit in after if after[unit] != before[unit])))
            run = host.converge(changed)
            assert_succeeded(changed, run)
            same.append(run.seconds)
        lines.append(f"  first converge (apt, pip through the relays): {first.seconds:.1f} s")
        lines.append(f"  no-change converge: {statistics.median(same):.2f} s "
                     f"(range {min(same):.2f}-{max(same):.2f})")
        lines.append(f"  one-setting converge (checkIntervalSeconds): "
                     f"{statistics.median(one):.2f} s (range {min(one):.2f}-{max(one):.2f})")
        for files, restarted in sorted(effects):
            lines.append(f"    it updated {', '.join(files) or 'no file'}; restarted {', '.join(restarted) or 'no unit'}")
    finally:
        lab.close()
        for directory in run_dirs_of(os.getpid()):
            remove_run_dir(directory)
    return [f"Booted host ({runs} runs each, medians; {time.monotonic() - started:.0f} s in all):", *lines]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.booted", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    print("\n".join(figures(parser.parse_args().runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
