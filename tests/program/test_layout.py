"""The layout's rules: components/ holds Pulumi components only, one token scheme, none childless;
rendering/ and settings/ are pure (no Pulumi resource class).

The SDKs are imported inside the tests: collecting this layer loads nothing heavy, so a worker
that runs no evaluation never loads them."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re

import pytest

from tests.support import ROOT

COMPONENT_MODULES = sorted(p.stem for p in (ROOT / "components").glob("*.py") if p.stem not in ("__init__", "base"))
PURE_MODULES = sorted(f"{d}.{p.stem}" for d in ("rendering", "settings") for p in (ROOT / d).glob("*.py")
                      if p.stem != "__init__")
# What a pure module may use of the Pulumi SDKs: the providers' typed argument classes (plain
# data), and, in settings/stack.py alone, the engine's config (the keys it holds, and which it holds
# encrypted: pulumi.runtime) and stack name.
CONFIG_READER = {"settings.stack": {"Config", "get_stack", "runtime"}}


@pytest.mark.parametrize("module", COMPONENT_MODULES)
def test_a_components_module_holds_components_and_their_arguments_only(module):
    from components.base import Component

    loaded = importlib.import_module(f"components.{module}")
    public = {name: value for name, value in vars(loaded).items()
              if not name.startswith("_") and getattr(value, "__module__", None) == loaded.__name__}
    components = [v for v in public.values() if inspect.isclass(v) and issubclass(v, Component)]
    assert components, f"components/{module}.py defines no component"
    others = {name for name, value in public.items() if value not in components
              and not (inspect.isclass(value) and name.endswith("Args") and dataclasses.is_dataclass(value))}
    assert others == set(), f"components/{module}.py: not a component nor its Args: {sorted(others)}"


def test_every_component_has_one_token_scheme_and_children(stack_eval):
    from components.base import Component, type_token

    classes = {type_token(c): c for m in COMPONENT_MODULES
               for c in vars(importlib.import_module(f"components.{m}")).values()
               if inspect.isclass(c) and issubclass(c, Component) and c is not Component}
    components = [r for r in stack_eval.resources if not r.custom and r.type != "pulumi:pulumi:Stack"]
    assert components
    for resource in components:
        assert re.fullmatch(r"observability-lab:[a-z][A-Za-z]*:[A-Z]\w*", resource.type), resource.type
        assert resource.type in classes, f"{resource.type} is not components/<module>.py's <Class>"
        assert stack_eval.children_of(resource), f"{resource.type} {resource.name} has no child"


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_use_no_pulumi_resource(module):
    source = (ROOT / module.replace(".", "/")).with_suffix(".py").read_text()
    tree = ast.parse(source)
    sdk_names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names if alias.name.split(".")[0].startswith("pulumi")}
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("pulumi")], "import the SDK module, then its Args classes"
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id in sdk_names}
    assert {name for name in used if not name.endswith("Args")} <= CONFIG_READER.get(module, set())
    import components  # noqa: F401  (the SDKs load as the program loads them)
    import pulumi

    loaded = importlib.import_module(module)
    assert not [name for name, value in vars(loaded).items()
                if inspect.isclass(value) and issubclass(value, pulumi.Resource)]


def test_pyright_checks_every_package_of_the_program():
    # A package left out of pyrightconfig.json's include is never type-checked (rendering/ and
    # settings/ were, for a while; pyright only follows their types from the included modules).
    import json

    include = set(json.loads((ROOT / "pyrightconfig.json").read_text())["include"])
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages | {"__main__.py", "policy"} <= include, sorted(packages - include)


def test_no_test_module_declares_again_what_another_one_declares():
    # Shared constants and helpers of the tests live once, in tests/support (or conftest.py); a
    # second copy drifts from the first. Same name and same value (or body) in two modules fails.
    declared: dict[tuple[str, str], list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id.isupper()):
                key = (node.targets[0].id, ast.unparse(node.value))
            elif isinstance(node, ast.FunctionDef) and not node.name.startswith("test_"):
                key = (node.name, ast.unparse(node))
            else:
                continue
            declared.setdefault(key, []).append(path.relative_to(ROOT).as_posix())
    again = {name: paths for (name, _), paths in declared.items() if len(paths) > 1}
    assert again == {}
