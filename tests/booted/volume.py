"""The host's EBS data volume, on a booted host: an image file on a loop device.

Imitates an EBS volume attached to a Nitro instance as Ubuntu's udev names it: the disk itself
(bound into the container at its own /dev/loopN), and the links udev would have made before
converge looks, in a directory bound at the container's /dev/disk: `by-id/nvme-Amazon_Elastic_
Block_Store_vol<hex>` (the NVMe serial is the volume id without its dash) and, once the disk has
a filesystem, `by-uuid/<uuid>` (what fstab's `UUID=` resolves through at boot). The container
runs no udev, so these links are the test's, made from blkid's answer on the machine.

Fails by: `attached=False` (no by-id link: a volume that never appears), and by its content
(blank, a filesystem of its own, another filesystem). A host "replaced" gets the same volume
(`attach` again on a fresh container); `copy` is a snapshot restored (the same filesystem, UUID
included), for hosts booted from the first-booted host's disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

BY_ID_PREFIX = "nvme-Amazon_Elastic_Block_Store_"
GIB = 1024 ** 3


class DataVolume:
    IMITATES = "an EBS data volume on a Nitro instance: an NVMe disk under udev's by-id (and by-uuid) links"

    def __init__(self, image: Path, volume_id: str, size_gib: int):
        self.image, self.volume_id, self.size_gib = image, volume_id, size_gib
        self.device: Optional[str] = None
        if not image.exists():  # blank: EBS hands out a new volume zeroed
            image.parent.mkdir(parents=True, exist_ok=True)
            with open(image, "wb") as handle:
                handle.truncate(size_gib * GIB)  # sparse

    def copy(self, image: Path) -> "DataVolume":
        """A volume restored from a snapshot of this one (detached): the same bytes, its own disk."""
        assert self.device is None, "copy a detached volume only"
        subprocess.run(["cp", "--sparse=always", str(self.image), str(image)], check=True)
        return DataVolume(image, self.volume_id, self.size_gib)

    def attach(self) -> str:
        """The loop device standing for the attached disk."""
        if self.device is None:
            self.device = subprocess.run(["losetup", "--find", "--show", str(self.image)], check=True,
                                         capture_output=True, text=True).stdout.strip()
        return self.device

    def detach(self) -> None:
        if self.device is not None:
            subprocess.run(["losetup", "-d", self.device], capture_output=True)
            self.device = None

    def device_numbers(self) -> tuple[int, int]:
        """(major, minor) of the loop device, for a device node made inside a running container."""
        rdev = os.stat(self.attach()).st_rdev
        return os.major(rdev), os.minor(rdev)

    def uuid(self) -> str:
        """The filesystem's UUID as blkid probes it on the machine ("" for a blank disk)."""
        probe = subprocess.run(["blkid", "-p", "-s", "UUID", "-o", "value", str(self.image)],
                               capture_output=True, text=True)
        return probe.stdout.strip()

    def write_links(self, directory: Path, attached: bool = True) -> None:
        """udev's links for the disk, in the directory bound at the container's /dev/disk (its
        contents replaced, never the directory: a running container sees the change)."""
        for sub in ("by-id", "by-uuid"):
            shutil.rmtree(directory / sub, ignore_errors=True)
            (directory / sub).mkdir(parents=True)
        if not attached:
            return
        device = self.attach()
        (directory / "by-id" / f"{BY_ID_PREFIX}{self.volume_id.replace('-', '')}").symlink_to(device)
        uuid = self.uuid()
        if uuid:
            (directory / "by-uuid" / uuid).symlink_to(device)
