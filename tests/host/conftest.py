"""What the host layer's converge tests share: the dev stack's bundle and a scratch host."""

from __future__ import annotations

import pytest

from tests.support.converge_harness import Host


@pytest.fixture(scope="session")
def dev_files(rendered_bundle) -> dict[str, str]:
    """The dev stack's bundle, path -> content, as the host unpacks it."""
    return rendered_bundle("dev")


@pytest.fixture
def host(tmp_path) -> Host:
    """A scratch root no converge has run in yet (tests/support/converge_harness.py)."""
    return Host(tmp_path)
