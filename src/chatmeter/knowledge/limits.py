"""How much one training file may cost to read: the caps, with their defaults.

``Settings`` takes its defaults from here, so the library and the operator's
configuration can't disagree about what "unset" means.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class ExtractionLimits:
    max_bytes: int = 20 * MIB  # the upload itself
    # A DOCX, unpacked: text-heavy documents unpack to a few times their size and
    # images to about theirs, so 64 MB leaves room for any real document while the
    # XML tree built from it stays within the training process's memory.
    max_unpacked_bytes: int = 64 * MIB
    max_pages: int = 1000  # a PDF's pages, counted before any text is read
    # Passages one file may make: 5,000 is ~800 dense pages, and minutes of embedding.
    max_chunks: int = 5000
