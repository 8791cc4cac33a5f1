"""The first-boot user-data, checked with the tool that consumes it on the host (cloud-init).

Rendered here from each stack's settings (rendering/first_boot.py); tests/program/test_user_data.py
checks that it is what the program registers on every instance.
"""

from __future__ import annotations

import subprocess

import pytest

from rendering.first_boot import user_data


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_user_data_passes_cloud_init_schema(stack, settings_of, tmp_path):
    path = tmp_path / "user-data.yaml"
    naming = settings_of(stack).naming
    path.write_text(user_data(naming.config_parameter, naming.config_documents))
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_catches_a_broken_document(tmp_path):
    # Guards the test above: the validator really rejects what EC2 would not run.
    path = tmp_path / "broken.yaml"
    path.write_text("#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 0644\n")
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0
