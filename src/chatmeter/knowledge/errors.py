"""Why a file could not be learned from, in words the customer can act on.

    InvalidInput (422 invalid_input)
    └── ExtractionError (422 unprocessable_file; ``reason`` says which)
        ├── EncryptedFile      encrypted
        ├── NoTextLayer        no_text
        ├── EmptyFile          empty
        ├── UnsupportedFormat  unsupported
        ├── FileTooLarge       too_large (413): bytes, pages, passages, memory
        ├── TooSlow            too_slow: processing time or wall-clock time
        ├── ZipBomb            zip_bomb
        ├── CorruptFile        corrupt
        └── QuotaReached       quota: the account's passages

``reason`` is a stable code for the file's status; ``message`` is shown to the
customer as it is, so it says what to do next.
"""

from __future__ import annotations

from typing import ClassVar

from chatmeter.errors import InvalidInput

SUPPORTED_FORMATS = "PDF, Word (DOCX), plain text, Markdown, HTML and CSV"


class ExtractionError(InvalidInput):
    code = "unprocessable_file"

    def __init__(self, reason: str, message: str, /, **details: object) -> None:
        super().__init__(message, reason=reason, **details)
        self.reason = reason


class _KnownReason(ExtractionError):
    reason_code: ClassVar[str]
    default_message: ClassVar[str]

    def __init__(self, message: str | None = None, /, **details: object) -> None:
        super().__init__(self.reason_code, message or self.default_message, **details)


class EncryptedFile(_KnownReason):
    reason_code = "encrypted"
    default_message = (
        "This PDF is protected by a password, so its text can't be read. Save a copy "
        "without the password (for example with “Print to PDF”) and upload that."
    )


class NoTextLayer(_KnownReason):
    reason_code = "no_text"
    default_message = (
        "This PDF has no text layer: it looks like a scan or a set of images. Run it "
        "through text recognition (OCR), or export it again with text, and upload that."
    )


class EmptyFile(_KnownReason):
    reason_code = "empty"
    default_message = "This file is empty: there is no text in it to learn from."


class UnsupportedFormat(_KnownReason):
    reason_code = "unsupported"
    default_message = (
        f"This type of file can't be used for training. Supported formats: {SUPPORTED_FORMATS}."
    )

    @classmethod
    def because(cls, what: str, *, advice: str = "") -> UnsupportedFormat:
        """``what`` names what the file really is, e.g. "a PNG image"."""
        advice = f" {advice}" if advice else ""
        return cls(
            f"This file is {what}, which can't be used for training.{advice} "
            f"Supported formats: {SUPPORTED_FORMATS}.",
            detected=what,
        )


class FileTooLarge(_KnownReason):
    reason_code = "too_large"
    status_code = 413
    default_message = "This file is over the size limit. Split it into smaller files."

    @classmethod
    def of(cls, *, size: int, limit: int) -> FileTooLarge:
        return cls(
            f"This file is {_megabytes(size)}; the limit is {_megabytes(limit)}. "
            "Split it into smaller files and upload them separately.",
            size=size,
            limit=limit,
        )

    @classmethod
    def pages(cls, *, count: int, limit: int) -> FileTooLarge:
        return cls(
            f"This PDF has {count:,} pages; the limit is {limit:,} pages. "
            "Split it into smaller files and upload them separately.",
            pages=count,
            limit=limit,
        )

    @classmethod
    def passages(cls, *, limit: int) -> FileTooLarge:
        return cls(
            f"This file makes more than {limit:,} passages, the most one file may have. "
            "Split it into smaller files and upload them separately.",
            limit=limit,
        )

    @classmethod
    def memory(cls, *, limit: int) -> FileTooLarge:
        return cls(
            f"Reading this file needs more memory than the {_megabytes(limit)} allowed. "
            "Split it into smaller files and upload them separately.",
            limit=limit,
        )


class TooSlow(_KnownReason):
    reason_code = "too_slow"
    default_message = "This file took too long to process. Split it into smaller files."

    @classmethod
    def cpu(cls, *, seconds: int) -> TooSlow:
        return cls(
            f"This file needed more than {_seconds(seconds)} of processing time. "
            "Split it into smaller files and upload them separately.",
            limit=seconds,
        )

    @classmethod
    def wall(cls, *, seconds: float) -> TooSlow:
        return cls(
            f"Processing this file took longer than {_seconds(seconds)}. "
            "Split it into smaller files and upload them separately.",
            limit=seconds,
        )


class ZipBomb(_KnownReason):
    reason_code = "zip_bomb"
    default_message = (
        "This Word file would unpack to an implausible size, so it was not opened. "
        "Open it in Word, save it again, and upload the new copy."
    )

    @classmethod
    def unpacked(cls, *, size: int, limit: int) -> ZipBomb:
        return cls(
            f"This Word file would unpack to {_megabytes(size)}; the limit is "
            f"{_megabytes(limit)}, so it was not opened. Split it into smaller files, or "
            "open it in Word, save it again, and upload the new copy.",
            unpacked=size,
            limit=limit,
        )


class CorruptFile(_KnownReason):
    reason_code = "corrupt"
    default_message = (
        "This file is damaged and can't be read. Open it, save it again, and upload the new copy."
    )

    @classmethod
    def of(cls, kind: str) -> CorruptFile:
        return cls(
            f"This {kind} file is damaged and can't be read. Open it, save it again, "
            "and upload the new copy."
        )


class QuotaReached(_KnownReason):
    reason_code = "quota"
    default_message = "This account has reached its limit of passages."

    @classmethod
    def passages(cls, *, making: int, room: int, limit: int) -> QuotaReached:
        return cls(
            f"This file makes {making:,} passages, but the account has room for only "
            f"{max(room, 0):,} more of its {limit:,}. Remove files it no longer needs, "
            "or ask the administrator to raise the limit, and upload the file again.",
            making=making,
            room=room,
            limit=limit,
        )


def _seconds(seconds: float) -> str:
    return "1 second" if seconds == 1 else f"{seconds:,.0f} seconds"


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"
