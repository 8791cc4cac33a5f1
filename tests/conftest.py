"""Shared fixtures: evaluate a stack of the real program under Pulumi's mock engine."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import pytest

from tests.support import mariadb_server
from offline.engine import Evaluation, evaluate

STACKS = ("dev", "prod")


# Evaluations are read-only records, so one per distinct (stack, overrides) serves
# every test that asks for it: the suite evaluates each configuration once.
_EVALUATIONS: dict[tuple[str, str], Evaluation] = {}


def _evaluate_once(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> Evaluation:
    key = (stack, json.dumps(overrides or {}, sort_keys=True))
    if key not in _EVALUATIONS:
        _EVALUATIONS[key] = evaluate(stack, overrides)
    return _EVALUATIONS[key]


@pytest.fixture(scope="session")
def run_stack() -> Callable[..., Evaluation]:
    """`run_stack("dev", overrides={...})` -> Evaluation; fails the test on a program error."""

    def run(stack: str, overrides: Optional[Mapping[str, Any]] = None) -> Evaluation:
        evaluation = _evaluate_once(stack, overrides)
        if evaluation.error is not None:
            raise evaluation.error
        return evaluation

    return run


@pytest.fixture
def run_stack_allowing_errors() -> Callable[..., Evaluation]:
    """Like run_stack, but returns the Evaluation with `.error` set instead of raising."""
    return _evaluate_once


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


# The private MariaDB server starts in the background once collection shows a test
# needs it, so its start-up overlaps the tests that run before those.
_MARIADB: dict[str, mariadb_server.Launch] = {}


def _launch_mariadb() -> mariadb_server.Launch:
    if "launch" not in _MARIADB:
        _MARIADB["launch"] = mariadb_server.Launch(Path(tempfile.mkdtemp(prefix="observability-lab-mariadb-")))
    return _MARIADB["launch"]


def pytest_collection_modifyitems(session, config, items):
    if any("mariadb" in getattr(item, "fixturenames", ()) for item in items):
        _launch_mariadb()


@pytest.fixture(scope="session")
def mariadb():
    """A private MariaDB server on loopback (tests/mariadb_server.py), killed at the end."""
    yield _launch_mariadb().server()
    _MARIADB.pop("launch").stop()


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
