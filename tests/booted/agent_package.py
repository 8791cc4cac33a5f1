"""The `datadog-agent` .deb of the booted-host tests, built with dpkg-deb, one per version.

A real package through real apt and dpkg: preinst creates the dd-agent user and group,
postinst owns the Agent's directories to it, links /usr/bin/datadog-agent, enables the unit and
(re)starts it when datadog.yaml exists (as Datadog's own package does), prerm stops it on
removal. The program is agent_standin/agent.py; its Python packages are the ones the real
Agent embeds for checks (datadog_checks.base and what it imports), copied at the exact versions
requirements-dev.txt pins into the project's venv, so the project's checks run on the same base
package as in the fast tests. What a version does differently is data (`AgentVersion`).
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent / "agent_standin"
INSTALL_DIR = "opt/datadog-agent"
SITE_PACKAGES = f"{INSTALL_DIR}/embedded/lib/site-packages"
# datadog_checks.base declares its runtime needs only as extras: what the project's checks
# import through it, as requirements-dev.txt pins them.
EMBEDDED = ("datadog-checks-base", "lazy-loader", "cachetools", "binary", "pydantic", "pydantic-core",
            "typing-extensions", "typing-inspection", "annotated-types", "requests", "urllib3", "idna",
            "charset-normalizer", "certifi", "requests-unixsocket2", "wrapt", "PyYAML", "python-dateutil", "six")


@dataclass(frozen=True)
class AgentVersion:
    """One package version and how its Agent behaves (agent_standin/agent.py reads it)."""
    version: str                                   # e.g. "7.77.2": the package is 1:7.77.2-1
    failing_checks: tuple[str, ...] = ()           # `agent check NAME` fails for these ("*": all)
    answers: dict[str, str] = field(default_factory=dict)  # further subcommands' fixed output

    @property
    def package_version(self) -> str:
        return f"1:{self.version}-1"


def embedded_distributions() -> list[importlib.metadata.Distribution]:
    """EMBEDDED as installed in the project's venv (requirements-dev.txt pins each)."""
    return [importlib.metadata.distribution(name) for name in EMBEDDED]


def _copy_distribution(dist: importlib.metadata.Distribution, site: Path) -> None:
    base = Path(dist.locate_file("")).resolve()
    for relative in dist.files or []:
        source = Path(dist.locate_file(relative)).resolve()
        if not source.is_file() or base not in source.parents or "__pycache__" in source.parts:
            continue
        target = site / source.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def build_agent_deb(agent: AgentVersion, out_dir: Path, site_packages: Path) -> Path:
    """datadog-agent_<version>_amd64.deb in out_dir. site_packages: from embedded_site_packages()."""
    tree = out_dir / f"tree-{agent.version}"
    shutil.rmtree(tree, ignore_errors=True)
    control = tree / "DEBIAN"
    control.mkdir(parents=True)
    installed = sum(path.stat().st_size for path in site_packages.rglob("*") if path.is_file()) // 1024
    (control / "control").write_text(
        f"Package: datadog-agent\nVersion: {agent.package_version}\nArchitecture: amd64\n"
        "Maintainer: observability-lab tests <tests@example.invalid>\nDepends: python3 (>= 3.11)\n"
        f"Installed-Size: {installed + 64}\nSection: utils\nPriority: extra\n"
        "Description: Datadog Agent stand-in for observability-lab's booted-host tests\n"
        " Imitates the Agent's package, unit and CLI (status, configcheck, check).\n")
    for script in ("preinst", "postinst", "prerm"):
        shutil.copy(HERE / script, control / script)
        (control / script).chmod(0o755)
    program = tree / INSTALL_DIR / "bin/agent/agent"
    program.parent.mkdir(parents=True)
    shutil.copy(HERE / "agent.py", program)
    program.chmod(0o755)
    (tree / INSTALL_DIR / "stand-in.json").write_text(json.dumps(
        {"version": agent.version, "failing_checks": list(agent.failing_checks), "answers": agent.answers}))
    shutil.copytree(site_packages, tree / SITE_PACKAGES)
    unit = tree / "lib/systemd/system/datadog-agent.service"
    unit.parent.mkdir(parents=True)
    shutil.copy(HERE / "datadog-agent.service", unit)
    # Shipped example and default configurations, as the real package has them.
    for relative in ("conf.d/cpu.d/conf.yaml.default", "conf.d/process.d/conf.yaml.example",
                     "datadog.yaml.example"):
        path = tree / "etc/datadog-agent" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / Path(relative).name, path)
    deb = out_dir / f"datadog-agent_{agent.version}-1_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(tree), str(deb)],
                   check=True, capture_output=True)
    shutil.rmtree(tree)
    return deb


def embedded_site_packages(out_dir: Path) -> Path:
    """The embedded distributions, copied once per session."""
    site = out_dir / "site-packages"
    if not site.exists():
        for dist in embedded_distributions():
            _copy_distribution(dist, site)
    return site
