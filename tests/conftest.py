"""What every layer of the suite shares: the program evaluated per stack, the bundle it renders,
Datadog's stub aggregator, the private MariaDB server; and the layers' markers.

Layers are directories, each its own marker (`pytest -m checks`, or `pytest tests/checks`):
program (the program under Pulumi's mock engine), host (converge.sh, the first-boot fetcher,
the app, the MySQL grants), checks (the Agent checks), policy (the policy pack), workflows,
docs, and booted (a real booted host, tests/booted/).
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import pytest

from offline.stack_config import stack_settings
from rendering.bundle import bundle_args, render_bundle
from rendering.document import document_content, document_description, document_id
from settings.stack import Settings
from tests.support import ROOT, STACKS, mariadb_server, ram_directory

if TYPE_CHECKING:  # the engine loads the Pulumi SDK: only in the processes that evaluate (lazily)
    from offline.engine import Evaluation

LAYERS = ("program", "host", "checks", "policy", "workflows", "docs", "booted")
# The layers that evaluate the program: the SDKs load (seconds) in the process that runs them.
ENGINE_LAYERS = ("program", "policy")
TESTS = ROOT / "tests"
# Set in the processes pytest-xdist starts (`make test` runs the suite over both cores).
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")

# The session keeps every evaluation it makes (below): long-lived, never garbage. At the
# collector's default pace a full collection rescans them 36 times in the program and policy
# layers (4.7 s CPU); ten times rarer, 3 times (1.6 s); frozen once made (_kept), never. The
# young generations stay as they are.
gc.set_threshold(*gc.get_threshold()[:2], 100)


def _kept(evaluation: Evaluation) -> Evaluation:
    """An evaluation the session keeps, moved out of the collector's sight once made (gc.freeze):
    else each older-generation collection rescans every kept one, ~2 s of the engine layers' CPU.
    What cyclic garbage is not yet collected then stays too (~90 MB over the engine layers, where
    collecting it first would cost back half the saving)."""
    gc.freeze()
    return evaluation


def pytest_ignore_collect(collection_path, config):
    """`-m "not <layer>"` (make test's fast layer: `not booted`) deselects every test of that
    layer's directory, as each one carries its directory's marker: such a directory is not
    even imported (the booted layer's modules load moto's server and the SDK in every worker)."""
    expression = (config.getoption("markexpr") or "").split()
    if len(expression) == 2 and expression[0] == "not" and expression[1] in LAYERS:
        if collection_path == TESTS / expression[1]:
            return True
    return None


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        layer = Path(str(item.fspath)).resolve().relative_to(TESTS).parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))
    # One process alone: start the server now, so its start-up overlaps the tests before
    # its own. Over both cores, only the worker its tests are sent to starts it (on use).
    if XDIST_WORKER is None and any("mariadb" in getattr(item, "fixturenames", ()) for item in items):
        _launch_mariadb()


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: unknown when it is off (-p no:xdist)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` (make test), with the engine layers' files as one unit: one worker evaluates
    the program, and the other never loads the SDKs (seconds of CPU saved on a 2-core machine).
    (Not `--dist loadgroup` with marks: pytest-xdist 3.8 cannot regroup pytest 9.2's node ids,
    pytest-xdist#1386.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class EngineAsOneFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "engine" if nodeid.split("/")[1] in ENGINE_LAYERS else super()._split_scope(nodeid)

    return EngineAsOneFile(config, log)


# ------------------------------------------------------------------ the program, per stack
# Evaluations are read-only records, so one per distinct (stack, overrides) serves every
# test that asks for it: each configuration is evaluated once per process.
_EVALUATIONS: dict[tuple[str, str], Evaluation] = {}


def evaluate_once(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> Evaluation:
    from offline.engine import evaluate

    key = (stack, json.dumps(overrides or {}, sort_keys=True))
    if key not in _EVALUATIONS:
        _EVALUATIONS[key] = _kept(evaluate(stack, overrides))
    return _EVALUATIONS[key]


@pytest.fixture(scope="session")
def run_stack() -> Callable[..., Evaluation]:
    """`run_stack("dev", overrides={...})` -> Evaluation; fails the test on a program error."""

    def run(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> Evaluation:
        evaluation = evaluate_once(stack, overrides)
        if evaluation.error is not None:
            raise evaluation.error
        return evaluation

    return run


_AGAIN: dict[str, Evaluation] = {}


@pytest.fixture(scope="session")
def run_stack_again() -> Callable[[str], Evaluation]:
    """`run_stack_again("dev")`: the stack evaluated a second time, not the shared evaluation:
    for the tests that two runs of one program and settings render the same."""

    def again(stack: str) -> Evaluation:
        from offline.engine import evaluate

        if stack not in _AGAIN:
            _AGAIN[stack] = _kept(evaluate(stack))
        return _AGAIN[stack]

    return again


@pytest.fixture(scope="session")
def run_later() -> Callable[..., Evaluation]:
    """`run_later("dev", overrides, earlier)`: a later `pulumi up` of the stack whose state is the
    `earlier` evaluation (the engine keeps the inputs a resource ignores from it); `.error` is set
    instead of raising."""

    def later(stack: str, overrides: Optional[Mapping[str, Any]], earlier: Evaluation) -> Evaluation:
        from offline.engine import evaluate

        return evaluate(stack, overrides, prior=earlier)

    return later


@pytest.fixture
def run_stack_allowing_errors() -> Callable[..., Evaluation]:
    """Like run_stack, but returns the Evaluation with `.error` set instead of raising."""
    return evaluate_once


@pytest.fixture(params=STACKS)
def stack(request) -> str:
    return request.param


@pytest.fixture
def stack_eval(run_stack, stack) -> Evaluation:
    """The whole program evaluated for each committed stack (dev, prod)."""
    return run_stack(stack)


@pytest.fixture
def dev(run_stack) -> Evaluation:
    return run_stack("dev")


@pytest.fixture
def prod(run_stack) -> Evaluation:
    return run_stack("prod")


@pytest.fixture(scope="session")
def settings_of() -> Callable[..., Settings]:
    """`settings_of("dev", {...})` -> the stack's settings, read from its file without the engine."""
    return stack_settings


_BUNDLES: dict[tuple[str, str], dict[str, str]] = {}


@pytest.fixture(scope="session")
def rendered_bundle() -> Callable[..., dict[str, str]]:
    """`rendered_bundle("dev", {...})` -> the stack's bundle (path -> content) rendered from its settings,
    without the engine: what its document carries (tests/program/test_bundle.py checks they agree)."""

    def render(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> dict[str, str]:
        key = (stack, json.dumps(overrides or {}, sort_keys=True))
        if key not in _BUNDLES:
            _BUNDLES[key] = render_bundle(bundle_args(stack_settings(stack, overrides))).files
        return dict(_BUNDLES[key])

    return render


@dataclass(frozen=True)
class RenderedDocument:
    name: str       # the SSM document's name
    content: str    # its YAML content, as the program registers it
    parameter: str  # the SSM parameter naming the current document


@pytest.fixture(scope="session")
def rendered_document() -> Callable[..., RenderedDocument]:
    """`rendered_document("dev")` -> the stack's configuration document rendered from its settings, without
    the engine (tests/program/test_bundle.py checks it is what the program registers)."""

    def render(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> RenderedDocument:
        settings = stack_settings(stack, overrides)
        bundle = render_bundle(bundle_args(settings))
        naming = settings.naming
        return RenderedDocument(f"{naming.config_documents}-{document_id(bundle)}",
                                document_content(bundle, document_description(naming)), naming.config_parameter)

    return render


# ------------------------------------------------------------------ scratch hosts
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[FAILED] = True  # its scratch directory stays, for a look
    return report


@pytest.fixture(scope="session")
def scratch_hosts(request, tmp_path_factory) -> Iterator[Path]:
    """The directory of this session's scratch hosts: in RAM where there is room (tests/support's
    ram_directory; on ext4 a file creation costs about 0.45 ms of CPU, on tmpfs 0.04), removed once
    the session passed (a failed session's stays, with its failed tests' hosts only); else pytest's tmp."""
    base = ram_directory("obslab-hosts-")
    if base is None:
        yield tmp_path_factory.mktemp("hosts")
        return
    yield base
    if request.session.testsfailed == 0:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def session_scratch(scratch_hosts) -> Callable[[str], Path]:
    """`session_scratch("converged-")` -> a new directory in scratch_hosts, for a session's shared host."""
    return lambda prefix: Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_hosts))


@pytest.fixture
def scratch(request, scratch_hosts) -> Iterator[Path]:
    """A new directory of this test's own, in scratch_hosts, named after the test as pytest's tmp_path
    is (30 characters: gpg's socket under the host's HOME must stay within a socket path's 108)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:30]
    directory = Path(tempfile.mkdtemp(prefix=name, dir=scratch_hosts))
    yield directory
    if not request.node.stash.get(FAILED, False):  # RAM, when on /dev/shm: freed as the tests go
        shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------ the Agent checks
@pytest.fixture
def aggregator():
    """Datadog's stub aggregator (datadog_checks.base), empty when the test starts and ends."""
    from datadog_checks.base.stubs import aggregator as stub

    stub.reset()
    yield stub
    stub.reset()


# ------------------------------------------------------------------ MySQL
_MARIADB: dict[str, mariadb_server.Launch] = {}


def _launch_mariadb() -> mariadb_server.Launch:
    if "launch" not in _MARIADB:
        _MARIADB["launch"] = mariadb_server.Launch(Path(tempfile.mkdtemp(prefix="observability-lab-mariadb-")))
    return _MARIADB["launch"]


@pytest.fixture(scope="session")
def mariadb():
    """A private MariaDB server on loopback (tests/support/mariadb_server.py), killed at the end."""
    yield _launch_mariadb().server()
    _MARIADB.pop("launch").stop()


# ------------------------------------------------------------------ a quick exit
# The SDKs leave ~700k objects on the heap; tearing them down one by one at
# interpreter exit costs ~3 s after the last test. Once pytest has reported and
# unconfigured, nothing remains to run, so exit with its status right away.
_EXIT_STATUS: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["status"] = int(exitstatus)
    if "launch" in _MARIADB:  # launched but never used (e.g. an interrupted run)
        _MARIADB.pop("launch").stop()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "status" in _EXIT_STATUS and not hasattr(sys, "ps1"):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["status"])
