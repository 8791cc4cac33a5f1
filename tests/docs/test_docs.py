"""The documentation: the configuration reference is the code's, and no link is dead."""

from __future__ import annotations

from settings import reference


def test_the_configuration_reference_is_generated_from_the_declarations():
    # `make docs` rewrites it; a setting added, changed or removed without it fails here.
    assert reference.current() == reference.render()
