"""The first-boot user-data, checked with the tool that consumes it on the host (cloud-init).

Rendered here from each stack's settings (rendering/first_boot.py); tests/program/test_user_data.py
checks that it is what the program registers on every instance.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import STACKS
from rendering.first_boot import user_data

BROKEN = "#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 0644\n"

# `cloud-init schema --config-file <file>` for each file, in one interpreter: the command's own
# script (its entry point, argv and exit status) run once per file, its output kept per file.
# Most of a run's ~0.5 CPU-s is cloud-init's import, paid here once for every document.
RUNNER = r"""
import contextlib, io, json, runpy, sys, traceback
command, files = sys.argv[1], sys.argv[2:]
results = {}
for path in files:
    sys.argv = ["cloud-init", "schema", "--config-file", path]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(command, run_name="__main__")
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        except BaseException:  # what the interpreter does with it: a traceback, status 1
            traceback.print_exc()
            code = 1
    results[path] = {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
sys.stdout = sys.__stdout__
print(json.dumps(results))
"""


@dataclass(frozen=True)
class SchemaRun:
    returncode: int
    stdout: str
    stderr: str


def cloud_init_schema(paths: list[Path]) -> dict[Path, SchemaRun]:
    """`cloud-init schema --config-file` of each path, under cloud-init's own interpreter."""
    command = shutil.which("cloud-init")
    assert command, "cloud-init is not on PATH (make system-deps installs it)"
    interpreter = Path(command).read_text().splitlines()[0].removeprefix("#!").split()
    result = subprocess.run([*interpreter, "-c", RUNNER, command, *map(str, paths)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return {Path(path): SchemaRun(**run) for path, run in json.loads(result.stdout).items()}


@pytest.fixture(scope="module")
def schema_runs(settings_of, tmp_path_factory) -> dict[str, SchemaRun]:
    """Each stack's user-data and a broken document, each validated by cloud-init."""
    work = tmp_path_factory.mktemp("user-data")
    documents = {stack: user_data(settings_of(stack).naming.config_parameter, settings_of(stack).naming.config_documents)
                 for stack in STACKS}
    documents["broken"] = BROKEN
    paths = {name: work / f"{name}.yaml" for name in documents}
    for name, path in paths.items():
        path.write_text(documents[name])
    runs = cloud_init_schema(list(paths.values()))
    return {name: runs[path] for name, path in paths.items()}


@pytest.mark.parametrize("stack", STACKS)
def test_user_data_passes_cloud_init_schema(stack, schema_runs):
    result = schema_runs[stack]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_catches_a_broken_document(schema_runs):
    # Guards the test above: the validator really rejects what EC2 would not run.
    result = schema_runs["broken"]
    assert result.returncode != 0
    assert "write_files.0.permissions" in result.stderr, result.stderr  # rejected by the schema
