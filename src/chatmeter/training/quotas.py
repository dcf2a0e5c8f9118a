"""What one account may keep for training: files, their bytes, and passages.

The operator sets them (``CHATMETER_QUOTA_FILES``, ``_FILE_BYTES``,
``_PASSAGES``). Files and bytes are checked when an upload arrives, passages
when a file has been cut into them; failed files count toward nothing. The
check and the insert happen under a lock on the account's row, so two uploads
at once cannot both slip under the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatmeter.accounts.models import Account
from chatmeter.config import Settings
from chatmeter.errors import QuotaExceeded
from chatmeter.training.models import FileStatus, TrainingFile

__all__ = ["DEFAULT", "Quota", "QuotaExceeded", "Usage", "check_upload", "lock", "usage"]


@dataclass(frozen=True)
class Quota:
    files: int
    file_bytes: int
    passages: int

    @classmethod
    def of(cls, settings: Settings) -> Quota:
        return cls(settings.quota_files, settings.quota_file_bytes, settings.quota_passages)


DEFAULT = Quota.of(Settings.model_construct())  # the defaults, whatever the environment says


@dataclass(frozen=True)
class Usage:
    files: int
    file_bytes: int
    passages: int


def lock(session: Session, *, account_id: int) -> None:
    """Hold the account's row until commit (``FOR NO KEY UPDATE``: rows that merely
    refer to the account, ledger entries among them, are not held up)."""
    session.execute(
        select(Account.id).where(Account.id == account_id).with_for_update(key_share=True)
    )


def usage(session: Session, *, account_id: int, excluding: int | None = None) -> Usage:
    """The account's files that are not failed; passages of the ready ones."""
    query = select(
        func.count(),
        func.coalesce(func.sum(TrainingFile.size), 0),
        func.coalesce(func.sum(TrainingFile.chunks), 0),
    ).where(TrainingFile.account_id == account_id, TrainingFile.status != FileStatus.FAILED)
    if excluding is not None:
        query = query.where(TrainingFile.id != excluding)
    files, size, passages = session.execute(query).one()
    return Usage(int(files), int(size), int(passages))


def check_upload(
    session: Session, *, account_id: int, filename: str, size: int, quota: Quota
) -> None:
    """Raise ``QuotaExceeded`` unless one more file of ``size`` bytes fits the account."""
    used = usage(session, account_id=account_id)
    advice = "remove files it no longer needs before uploading more"
    if used.passages >= quota.passages:
        raise QuotaExceeded(
            f"this account already has {used.passages:,} passages, its limit of "
            f"{quota.passages:,}; {advice}",
            quota="passages",
            limit=quota.passages,
            used=used.passages,
        )
    if used.files >= quota.files:
        raise QuotaExceeded(
            f"{filename} would bring this account to {used.files + 1:,} training files, over "
            f"its limit of {quota.files:,}; {advice}",
            quota="files",
            limit=quota.files,
            used=used.files,
        )
    if used.file_bytes + size > quota.file_bytes:
        raise QuotaExceeded(
            f"{filename} would bring this account's training files to "
            f"{used.file_bytes + size:,} bytes, over its limit of {quota.file_bytes:,} bytes; "
            f"{advice}",
            quota="bytes",
            limit=quota.file_bytes,
            used=used.file_bytes,
        )


def passages_room(
    session: Session, *, account_id: int, quota: Quota, excluding: int | None = None
) -> int:
    """How many more passages the account may have."""
    return quota.passages - usage(session, account_id=account_id, excluding=excluding).passages
