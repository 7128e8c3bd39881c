"""The instructions ``coldvault mount`` hands its FUSE server (JSON on its standard input)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldvault.mount.table import PartTable


@dataclass(frozen=True)
class ServeSpec:
    """What the server is told to serve, and where."""

    fuse_dir: Path
    name: str
    folder_fd: int
    folder_path: Path
    lock_fd: int
    table: PartTable
    purpose: str = ""  # written after the pid into the lock file: what holds the disk

    def to_json(self) -> str:
        """The JSON the parent writes to the server's standard input."""
        return json.dumps(
            {
                "fuse_dir": str(self.fuse_dir),
                "name": self.name,
                "folder_fd": self.folder_fd,
                "folder_path": str(self.folder_path),
                "lock_fd": self.lock_fd,
                "table": self.table.to_json(),
                "purpose": self.purpose,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        """Parse what :meth:`to_json` wrote."""
        data: dict[str, Any] = json.loads(text)
        return cls(
            Path(data["fuse_dir"]),
            str(data["name"]),
            int(data["folder_fd"]),
            Path(data["folder_path"]),
            int(data["lock_fd"]),
            PartTable.from_json(data["table"]),
            str(data.get("purpose", "")),
        )
