"""The platform module: source lookup by id, device size, mount checks.

Linux lookups run against a real ``/dev/disk``-like tree of symlinks. macOS code
cannot run here, so it is fed recorded ``diskutil`` output (see the constants).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coldvault import platform
from coldvault.config.model import SourceRef
from coldvault.errors import CommandError, JobError
from coldvault.platform import linux, macos

# ---- Linux: /dev/disk/by-* ---------------------------------------------------------------


def _disk_tree(tmp_path: Path) -> Path:
    """``disk/by-uuid``, ``by-partuuid``, ``by-label`` with relative links like udev makes."""
    dev = tmp_path / "dev"
    (dev / "disk").mkdir(parents=True)
    for name in ("sda1", "sdb1", "sdc1"):
        (dev / name).write_bytes(b"")
    links = {
        "by-uuid": {"0f3e-12ab": "sda1", "5d9c1f0e-aaaa-4bbb-8ccc-0123456789ab": "sdb1"},
        "by-partuuid": {"a1b2c3d4-01": "sda1"},
        "by-label": {"root": "sdb1", "my\\x20disk": "sdc1"},
    }
    for folder, entries in links.items():
        (dev / "disk" / folder).mkdir()
        for link, target in entries.items():
            os.symlink(f"../../{target}", dev / "disk" / folder / link)
    return dev / "disk"


def test_linux_resolves_by_uuid_partuuid_and_label(tmp_path: Path) -> None:
    disk = _disk_tree(tmp_path)
    dev = disk.parent
    assert linux.resolve(SourceRef("uuid", "0F3E-12AB"), disk) == dev / "sda1"
    uuid = "5D9C1F0E-AAAA-4BBB-8CCC-0123456789AB"
    assert linux.resolve(SourceRef("uuid", uuid), disk) == dev / "sdb1"
    assert linux.resolve(SourceRef("partuuid", "a1b2c3d4-01"), disk) == dev / "sda1"
    assert linux.resolve(SourceRef("label", "root"), disk) == dev / "sdb1"
    assert linux.resolve(SourceRef("label", "my disk"), disk) == dev / "sdc1"  # udev-escaped


def test_linux_no_match_and_several_matches_are_clear_errors(tmp_path: Path) -> None:
    disk = _disk_tree(tmp_path)
    with pytest.raises(JobError, match="no device with uuid:dead-beef"):
        linux.resolve(SourceRef("uuid", "dead-beef"), disk)
    # a cloned filesystem: the same UUID in two case spellings pointing at two devices
    os.symlink("../../sdc1", disk / "by-uuid" / "0F3E-12AB")
    with pytest.raises(JobError, match="several devices match uuid:0f3e-12ab") as err:
        linux.resolve(SourceRef("uuid", "0f3e-12ab"), disk)
    assert "sda1" in str(err.value) and "sdc1" in str(err.value)
    with pytest.raises(JobError, match="no device"):
        linux.resolve(SourceRef("label", "x"), tmp_path / "nothing-here")


def test_size_of_regular_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 12345)
    fd = os.open(f, os.O_RDONLY)
    try:
        assert platform.size_of(fd) == 12345
    finally:
        os.close(fd)


def test_a_regular_file_is_never_mounted(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"")
    assert not platform.is_block_device(f)
    assert platform.mounted_read_write(f) == []


# ---- macOS: recorded diskutil output -------------------------------------------------------

# `diskutil info -plist disk11s2`: an external USB hard disk with a mounted HFS+
# volume. Real output as recorded in a public project's test suite (Crystal Web
# Archiver, tests of its SSD detection), unchanged apart from indentation.
DISKUTIL_INFO_HFS_USB = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Bootable</key>
	<true/>
	<key>BusProtocol</key>
	<string>USB</string>
	<key>CanBeMadeBootable</key>
	<false/>
	<key>CanBeMadeBootableRequiresDestroy</key>
	<false/>
	<key>Content</key>
	<string>Apple_HFS</string>
	<key>DeviceBlockSize</key>
	<integer>512</integer>
	<key>DeviceIdentifier</key>
	<string>disk11s2</string>
	<key>DeviceNode</key>
	<string>/dev/disk11s2</string>
	<key>DeviceTreePath</key>
	<string>IODeviceTree:/PCI0@0/XHC1@14</string>
	<key>DiskUUID</key>
	<string>4118AB4C-B7C9-462C-B849-BBAE385E0100</string>
	<key>Ejectable</key>
	<true/>
	<key>EjectableMediaAutomaticUnderSoftwareControl</key>
	<false/>
	<key>EjectableOnly</key>
	<false/>
	<key>FilesystemName</key>
	<string>Journaled HFS+</string>
	<key>FilesystemType</key>
	<string>hfs</string>
	<key>FilesystemUserVisibleName</key>
	<string>Mac OS Extended (Journaled)</string>
	<key>FreeSpace</key>
	<integer>1111923171328</integer>
	<key>GlobalPermissionsEnabled</key>
	<true/>
	<key>IOKitSize</key>
	<integer>5000603328512</integer>
	<key>IORegistryEntryName</key>
	<string>Untitled 2</string>
	<key>Internal</key>
	<false/>
	<key>JournalOffset</key>
	<integer>76324864</integer>
	<key>JournalSize</key>
	<integer>394264576</integer>
	<key>MediaName</key>
	<string></string>
	<key>MediaType</key>
	<string>Generic</string>
	<key>MountPoint</key>
	<string>/Volumes/HDD</string>
	<key>OSInternalMedia</key>
	<false/>
	<key>ParentWholeDisk</key>
	<string>disk11</string>
	<key>PartitionMapPartition</key>
	<true/>
	<key>PartitionMapPartitionOffset</key>
	<integer>209735680</integer>
	<key>RAIDMaster</key>
	<false/>
	<key>RAIDSlice</key>
	<false/>
	<key>Removable</key>
	<false/>
	<key>RemovableMedia</key>
	<false/>
	<key>RemovableMediaOrExternalDevice</key>
	<true/>
	<key>SMARTDeviceSpecificKeysMayVaryNotGuaranteed</key>
	<dict/>
	<key>SMARTStatus</key>
	<string>Not Supported</string>
	<key>Size</key>
	<integer>5000603328512</integer>
	<key>SupportsGlobalPermissionsDisable</key>
	<true/>
	<key>SystemImage</key>
	<false/>
	<key>TotalSize</key>
	<integer>5000603328512</integer>
	<key>VolumeAllocationBlockSize</key>
	<integer>8192</integer>
	<key>VolumeName</key>
	<string>HDD</string>
	<key>VolumeSize</key>
	<integer>5000603328512</integer>
	<key>VolumeUUID</key>
	<string>18A39FDB-D619-3299-8863-9A3A33608A7F</string>
	<key>WholeDisk</key>
	<false/>
	<key>Writable</key>
	<true/>
	<key>WritableMedia</key>
	<true/>
	<key>WritableVolume</key>
	<true/>
</dict>
</plist>
"""

# `diskutil list -plist` after `diskutil eraseDisk FAT32 OPENCORE GPT` on a 512 MB
# disk, as recorded in a public project's tests (an OpenCore installer tool).
DISKUTIL_LIST_OPENCORE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0"><dict><key>AllDisks'
    b"</key><array><string>disk6</string><string>disk6s1</string></array>\n"
    b"<key>AllDisksAndPartitions</key><array><dict><key>Content</key>"
    b"<string>GUID_partition_scheme</string><key>DeviceIdentifier</key><string>disk6"
    b"</string><key>OSInternal</key><false/>\n<key>Partitions</key><array><dict>"
    b"<key>Content</key><string>Microsoft Basic Data</string><key>DeviceIdentifier"
    b"</key><string>disk6s1</string>\n<key>DiskUUID</key>"
    b"<string>79491F6F-73A3-4B46-9471-5B98453C547B</string><key>MountPoint</key>"
    b"<string>/Volumes/OPENCORE</string>\n<key>Size</key><integer>534773760</integer>"
    b"<key>VolumeName</key><string>OPENCORE</string></dict></array>\n<key>Size</key>"
    b"<integer>536870912</integer></dict></array><key>WholeDisks</key><array>"
    b"<string>disk6</string></array></dict></plist>"
)


class RecordedDiskutil:
    """Answers ``diskutil`` argv with recorded output; unknown disks fail like diskutil does."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str]) -> bytes:
        self.calls.append(args)
        if args == ["list", "-plist"]:
            return DISKUTIL_LIST_OPENCORE
        if args[:2] == ["info", "-plist"] and args[2] in (
            "disk11s2",
            "18A39FDB-D619-3299-8863-9A3A33608A7F",
            "4118AB4C-B7C9-462C-B849-BBAE385E0100",
        ):
            return DISKUTIL_INFO_HFS_USB
        # diskutil prints "Could not find disk: X" and exits 1
        raise CommandError(["diskutil", *args], 1, [f"Could not find disk: {args[-1]}"])


def test_macos_resolves_uuid_and_partuuid_to_the_raw_node() -> None:
    du = RecordedDiskutil()
    volume = SourceRef("uuid", "18a39fdb-d619-3299-8863-9a3a33608a7f")
    assert macos.resolve(volume, du) == Path("/dev/rdisk11s2")
    part = SourceRef("partuuid", "4118AB4C-B7C9-462C-B849-BBAE385E0100")
    assert macos.resolve(part, du) == Path("/dev/rdisk11s2")
    # a volume UUID is not a partition UUID
    with pytest.raises(JobError, match="no device with partuuid:18A39FDB"):
        macos.resolve(SourceRef("partuuid", "18A39FDB-D619-3299-8863-9A3A33608A7F"), du)
    with pytest.raises(JobError, match="no device with uuid:0000"):
        macos.resolve(SourceRef("uuid", "0000"), du)


def test_macos_resolves_label_through_diskutil_list() -> None:
    du = RecordedDiskutil()
    assert macos.resolve(SourceRef("label", "OPENCORE"), du) == Path("/dev/rdisk6s1")
    with pytest.raises(JobError, match="no device with label:HDD"):
        macos.resolve(SourceRef("label", "HDD"), du)


def test_macos_several_labels_is_an_error() -> None:
    doubled = macos.parse_plist(DISKUTIL_LIST_OPENCORE)
    disk = doubled["AllDisksAndPartitions"][0]
    disk["Partitions"].append({**disk["Partitions"][0], "DeviceIdentifier": "disk6s2"})
    assert macos.label_candidates(doubled, "OPENCORE") == ["disk6s1", "disk6s2"]


def test_macos_size_and_mount_state_from_diskutil() -> None:
    du = RecordedDiskutil()
    assert macos.mounted_read_write(Path("/dev/rdisk11s2"), du) == ["/Volumes/HDD"]
    assert macos.mounted_anywhere(Path("/dev/disk11s2"), du) == ["/Volumes/HDD"]
    assert macos.mounted_anywhere(Path("/dev/rdisk99"), du) == []
    with pytest.raises(JobError, match="cannot read diskutil output"):
        macos.parse_plist(b"Could not find disk")


def test_macos_block_node_paths_become_raw_nodes() -> None:
    assert macos.raw_path(Path("/dev/disk4s2")) == Path("/dev/rdisk4s2")
    assert macos.raw_path(Path("/dev/disk4")) == Path("/dev/rdisk4")
    assert macos.raw_path(Path("/dev/rdisk4")) == Path("/dev/rdisk4")
    assert macos.raw_path(Path("/Users/me/disk.img")) == Path("/Users/me/disk.img")
