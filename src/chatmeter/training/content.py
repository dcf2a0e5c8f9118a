"""An upload's bytes, kept in a temporary file rather than in memory.

``Spool`` receives the bytes piece by piece as the request streams in: it
counts them against the limit (refusing the file the moment it is over) and
hashes them on the way, so nothing ever holds the whole file. ``Content`` is
what it leaves: the size, the SHA-256 and the file to read the bytes back
from, a part at a time.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from chatmeter.errors import PayloadTooLarge

PART_BYTES = 1024 * 1024  # what is read, stored and held at once


@dataclass(frozen=True)
class Content:
    size: int
    sha256: str
    file: BinaryIO

    @classmethod
    def of_bytes(cls, data: bytes) -> Content:
        """Bytes already in memory (the CLI's and the demo's small files)."""
        return cls(len(data), hashlib.sha256(data).hexdigest(), io.BytesIO(data))

    def parts(self, size: int = PART_BYTES) -> Iterator[bytes]:
        self.file.seek(0)
        while piece := self.file.read(size):
            yield piece


class Spool:
    """One file of an upload, written to disk as it arrives."""

    def __init__(self, *, filename: str, limit: int, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.filename = filename
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        # Unnamed where the system allows: gone with the process, whatever happens.
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise PayloadTooLarge(
                f"{self.filename or 'a file'} is larger than the limit of {self.limit:,} bytes",
                filename=self.filename,
                limit=self.limit,
            )
        self._hash.update(data)
        self._file.write(data)

    def content(self) -> Content:
        self._file.flush()
        return Content(self.size, self._hash.hexdigest(), self._file)

    def close(self) -> None:
        self._file.close()
