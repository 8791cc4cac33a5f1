"""Datadog's apt repository and key server, as throwaway stand-ins: a signed repo served over TLS.

converge.sh builds its keyring from https://keys.datadoghq.com/DATADOG_APT_KEY_<id>.public (four
keys) and installs from `deb [signed-by=...] https://apt.datadoghq.com/ stable 7`. Here four
throwaway OpenPGP keys stand for those four, the first (CURRENT) signs the repository's
InRelease and Release.gpg, and the repository is laid out as Datadog's is (dists/stable/7/
binary-amd64/Packages, pool/). apt verifies every byte of it with the keyring converge.sh made,
so a keyring apt cannot read, or a repository signed by a key not in it, fails the install.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tempfile
from email.utils import formatdate
from pathlib import Path

KEY_IDS = ("CURRENT", "C0962C7D", "F14F620E", "382E94DE")  # the names converge.sh fetches
SUITE, COMPONENT, ARCH = "stable", "7", "amd64"


class SigningKeys:
    """Four throwaway keys in a private gpg home; `public[id]` is what the key server serves."""

    def __init__(self) -> None:
        # gpg-agent's socket path must stay short: a home under /tmp, not under pytest's tmp_path.
        self.home = Path(tempfile.mkdtemp(prefix="obslab-gpg-"))
        self.public: dict[str, bytes] = {}
        for key_id in KEY_IDS:
            uid = f"Datadog apt key {key_id} stand-in <tests@example.invalid>"
            self._gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
            self.public[key_id] = self._gpg("--armor", "--export", uid)
        self.signer = f"Datadog apt key {KEY_IDS[0]} stand-in"

    def _gpg(self, *args: str, input: bytes | None = None) -> bytes:
        return subprocess.run(["gpg", "--batch", "--homedir", str(self.home), "--pinentry-mode", "loopback",
                               "--passphrase", "", *args], input=input, check=True, capture_output=True).stdout

    def sign(self, release: bytes) -> tuple[bytes, bytes]:
        """(InRelease, Release.gpg) for a Release file."""
        return (self._gpg("--local-user", self.signer, "--clearsign", input=release),
                self._gpg("--local-user", self.signer, "--armor", "--detach-sign", input=release))

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


def _hashes(data: bytes) -> dict[str, str]:
    return {"MD5sum": hashlib.md5(data).hexdigest(), "SHA1": hashlib.sha1(data).hexdigest(),
            "SHA256": hashlib.sha256(data).hexdigest()}


def build_repository(root: Path, debs: list[Path], keys: SigningKeys) -> None:
    """(Re)writes the repository under root with these packages, signed by keys.signer."""
    shutil.rmtree(root, ignore_errors=True)
    stanzas = []
    for deb in debs:
        relative = f"pool/d/datadog-agent/{deb.name}"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(deb, root / relative)
        data = deb.read_bytes()
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True,
                                 text=True).stdout.rstrip("\n")
        fields = "".join(f"\n{name}: {value}" for name, value in _hashes(data).items())
        stanzas.append(f"{control}\nFilename: {relative}\nSize: {len(data)}{fields}\n")
    packages = "\n".join(stanzas).encode()
    index_dir = f"dists/{SUITE}/{COMPONENT}/binary-{ARCH}"
    indexes = {f"{COMPONENT}/binary-{ARCH}/Packages": packages,
               f"{COMPONENT}/binary-{ARCH}/Packages.gz": gzip.compress(packages, mtime=0)}
    (root / index_dir).mkdir(parents=True)
    for name, data in indexes.items():
        (root / "dists" / SUITE / name).write_bytes(data)
    release = [f"Origin: Datadog, Inc.", f"Label: Datadog stand-in", f"Suite: {SUITE}", f"Codename: {SUITE}",
               f"Date: {formatdate(usegmt=True)}", f"Architectures: {ARCH}", f"Components: {COMPONENT}"]
    for algorithm in ("MD5Sum", "SHA1", "SHA256"):
        release.append(f"{algorithm}:")
        key = {"MD5Sum": "MD5sum"}.get(algorithm, algorithm)
        release += [f" {_hashes(data)[key]} {len(data):>10} {name}" for name, data in indexes.items()]
    release_bytes = ("\n".join(release) + "\n").encode()
    in_release, detached = keys.sign(release_bytes)
    (root / "dists" / SUITE / "Release").write_bytes(release_bytes)
    (root / "dists" / SUITE / "InRelease").write_bytes(in_release)
    (root / "dists" / SUITE / "Release.gpg").write_bytes(detached)
