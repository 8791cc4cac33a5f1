"""Scenario 1: the first boot through the real user-data converges a host.

Debian's cloud-init finds the NoCloud seed holding the dev stack's rendered #cloud-config,
writes the fetcher and runs it; the fetcher takes the instance profile's credentials from the
IMDSv2 stand-in, reads the parameter and the document from the SSM stand-in (moto, holding what
`pulumi up` publishes) and runs the document's script with sh, which converges the host.
"""

from tests.booted.standins import INSTANCE_ROLE


def test_cloud_init_runs_the_fetcher_which_converges_the_host(first_boot, dev_document):
    host, run = first_boot.host, first_boot.run
    assert "status: done" in first_boot.cloud_init, first_boot.cloud_init
    assert f"running configuration document {dev_document.name}" in first_boot.output, first_boot.output[-3000:]
    assert "(first-boot)" in run.stdout.splitlines()[0], run.stdout[:500]
    # The fetcher signed its SSM calls with the instance profile's credentials, from IMDSv2.
    assert f"GET /latest/meta-data/iam/security-credentials/{INSTANCE_ROLE}" in host.world.imds.requests
    host.assert_converged(dev_document, run)


def test_the_units_converge_wrote_pass_systemds_own_verification(first_boot):
    result = first_boot.host.machine.run(["systemd-analyze", "verify", "/etc/systemd/system/flask-app.service"])
    assert result.returncode == 0, result.stdout + result.stderr



def test_the_datadog_keyring_is_a_plain_openpgp_keyring(first_boot):
    # Not a gpg keybox: apt versions that verify without gpgv (sqv) ignore keyboxes ("unsupported
    # filetype"). Debian 12's apt would read either, so the format itself is what is checked.
    keyring = first_boot.host.machine.path("/usr/share/keyrings/datadog-archive-keyring.gpg").read_bytes()
    assert keyring[8:12] != b"KBXf" and keyring[0] & 0x80, keyring[:16]
