"""What several of the program layer's modules share."""

from __future__ import annotations

import pytest

from tests.support.document_delivery import Delivery, deliver


@pytest.fixture(scope="session")
def delivered(run_stack, session_scratch) -> Delivery:
    """dev's document run once on a fresh host: the tests read that first run, and each goes on
    from its own copy of the host, in its `scratch` (a first converge is most of such a test's CPU)."""
    return deliver(run_stack("dev"), session_scratch("delivered-"))
