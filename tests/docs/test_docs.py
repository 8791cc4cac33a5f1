"""The documentation: the configuration reference is the code's, the README is a front page, and no
link is dead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from settings import reference
from tests.support import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def prose(page: Path) -> str:
    """The page without its fenced code blocks (a link there is code, not a link)."""
    return re.sub(r"(?ms)^```.*?^```", "", page.read_text())


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped but `-` and `_`, spaces to `-`."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", prose(page), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_the_configuration_reference_is_generated_from_the_declarations():
    # `make docs` rewrites it; a setting added, changed or removed without it fails here.
    assert reference.current() == reference.render()


def test_the_readme_is_a_front_page_that_links_every_page_of_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make test" in readme and "make plan STACK=dev" in readme
    linked = {target.split("#")[0] for target in LINK.findall(prose(ROOT / "README.md"))}
    assert {f"docs/{page.name}" for page in PAGES[1:]} <= linked


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_link_is_dead(page):
    dead = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not fetched (no network here)
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            dead.append(target)
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            dead.append(target)
    assert dead == []
