"""Scenario 1: the first boot through the real user-data converges a host.

Debian's cloud-init finds the NoCloud seed holding the dev stack's rendered #cloud-config,
writes the fetcher and runs it; the fetcher takes the instance profile's credentials from the
IMDSv2 stand-in, reads the parameter and the document from the SSM stand-in (moto, holding what
`pulumi up` publishes) and runs the document's script with sh, which converges the host.
The first boot is made once per run (Lab.first_boot): the layer's verdict is taken on the live
host and recorded, then the host's disk serves every later scenario.
"""

from tests.booted.standins import INSTANCE_ROLE


def test_cloud_init_runs_the_fetcher_which_converges_the_host(first_boot, dev_document):
    record = first_boot.record
    assert "status: done" in record["cloud_init"], record["cloud_init"]
    assert f"running configuration document {dev_document.name}" in record["output"], record["output"][-3000:]
    assert "(first-boot)" in record["report"].splitlines()[0], record["report"][:500]
    # The fetcher signed its SSM calls with the instance profile's credentials, from IMDSv2.
    assert f"GET /latest/meta-data/iam/security-credentials/{INSTANCE_ROLE}" in record["imds_requests"]
    assert record["verdict"] is None, record["verdict"]  # host.assert_converged on the live host


def test_the_units_converge_wrote_pass_systemds_own_verification(first_boot):
    returncode, output = first_boot.record["analyze"]
    assert returncode == 0, output


def test_the_datadog_keyring_is_a_plain_openpgp_keyring(first_boot):
    # Not a gpg keybox: apt versions that verify without gpgv (sqv) ignore keyboxes ("unsupported
    # filetype"). Debian 12's apt would read either, so the format itself is what is checked.
    keyring = (first_boot.layer / "usr/share/keyrings/datadog-archive-keyring.gpg").read_bytes()
    assert keyring[8:12] != b"KBXf" and keyring[0] & 0x80, keyring[:16]
