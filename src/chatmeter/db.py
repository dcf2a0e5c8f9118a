"""Engine, metadata, the unit of work and the one lock that guards a balance.

SQLite and PostgreSQL are both first-class. On SQLite every writing unit of
work starts with ``BEGIN IMMEDIATE``, so writers queue on the database lock
instead of failing at commit; on PostgreSQL a writer locks the account's
balance row (``SELECT ... FOR UPDATE``), so writers to *different* accounts
run in parallel while writers to one account queue.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CursorResult,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    delete,
    event,
    select,
    tuple_,
)
from sqlalchemy.engine import Result, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# A pooled PostgreSQL connection idle this long is pinged before use: the server may
# have restarted, or something in between dropped it. One in steady use is not:
# a ping on every checkout would add a round trip to every transaction.
IDLE_PING_SECONDS = 10.0

# 64-bit keys on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer, "sqlite")
# The largest id either database can hold (a signed 64-bit integer): a larger number
# names no row, and a query with it fails instead of finding nothing.
MAX_ID = 2**63 - 1
# Accounts and API keys were keyed by INTEGER from the start: 32 bits on PostgreSQL.
# Widening them would rewrite every table that names an account; their ids are checked
# against this instead.
MAX_INT_ID = 2**31 - 1


class Base(DeclarativeBase):
    """Every table of the schema.

    A table keyed by a surrogate integer gets ``AUTOINCREMENT`` on SQLite: without
    it SQLite hands the largest id out again once its row is deleted, and an id
    that left the server (in a cookie, a link, a job, an API client's records)
    would name something else. PostgreSQL sequences never go back.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("__table__")
        if isinstance(table, Table) and has_surrogate_key(table):
            table.dialect_kwargs["sqlite_autoincrement"] = True


def has_surrogate_key(table: Table) -> bool:
    """True when the table's key is one integer column the database numbers itself."""
    columns = list(table.primary_key.columns)
    if len(columns) != 1:
        return False
    (column,) = columns
    return (
        isinstance(column.type, Integer)
        and not column.foreign_keys
        and column.autoincrement in ("auto", True)
    )


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores UTC, returns aware UTC datetimes on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a time zone")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched (``session.execute`` types its result loosely)."""
    return cast(CursorResult[Any], result).rowcount


def delete_batch(
    session: Session, model: type[Base], *where: ColumnElement[bool], limit: int
) -> int:
    """Delete at most ``limit`` rows of ``model`` matching ``where``, lowest keys first;
    returns how many went (``limit``: there may be more).

    The rows are chosen first, then deleted if they still match: a row changed
    meanwhile (a dead email sent again) stays.
    """
    table = cast(Table, model.__table__)
    keys = list(table.primary_key.columns)
    chosen = session.execute(select(*keys).where(*where).order_by(*keys).limit(limit)).all()
    if not chosen:
        return 0
    if len(keys) == 1:
        matched = keys[0].in_([row[0] for row in chosen])
    else:
        matched = tuple_(*keys).in_([tuple(row) for row in chosen])
    return rowcount(session.execute(delete(table).where(matched, *where)))


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and pick the psycopg 3 driver for it."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": 60, "check_same_thread": False}
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, echo=echo, pool_size=10, max_overflow=20, pool_recycle=1800)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, only for connections that sat idle ``IDLE_PING_SECONDS``.

    A failed ping discards the connection and every older one in the pool, and
    the checkout goes on with a new connection. A connection that breaks while
    in steady use fails that one transaction; SQLAlchemy then replaces the pool's
    older connections too.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise InvalidatePoolError(f"ping of an idle connection failed: {exc}") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# Set on a session whose transaction queued work for the worker (``queue_work``).
_WORK_QUEUED = "chatmeter.work_queued"


def queue_work(session: Session) -> None:
    """This transaction queued work for the worker (an email, a file to train): the unit
    of work wakes the worker once it has committed, never before (``Database.wake_worker``).
    """
    session.info[_WORK_QUEUED] = True


def _nothing() -> None:
    pass


class Database:
    """An engine plus the two kinds of unit of work: writing and reading."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, echo=echo)
        writer = self.engine.execution_options(sqlite_immediate=True)
        self._write_sessions = sessionmaker(bind=writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        # SQLite has one writer; let this process's writers queue on a lock that hands
        # over at once, instead of SQLite's busy handler that sleeps and polls.
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        # Nudges this process's worker when a commit queued work for it; set by the
        # process that runs one (``chatmeter serve``), a no-op otherwise.
        self.wake_worker: Callable[[], None] = _nothing

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self._write_sessions, self._write_lock, on_work=self._work_queued)

    def _work_queued(self) -> None:
        self.wake_worker()  # looked up now: the worker may have started since

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; it never commits, and closing it ends its transaction.

        Objects read stay usable after the block (closing detaches, it does not expire).
        """
        with self._read_sessions() as session:
            yield session

    def create_all(self) -> None:
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


class UnitOfWork:
    """A transaction that rolls back unless ``commit()`` is called.

    Services receive ``uow.session`` and never commit; the caller commits once,
    so an operation and the emails it queues are all-or-nothing. Side effects
    happen after the commit succeeded, never before, through one mechanism: the
    callbacks registered with ``after_commit``, among them waking the worker
    when the transaction queued work for it (``queue_work``).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        lock: threading.Lock | None = None,
        *,
        on_work: Callable[[], None] = _nothing,
    ) -> None:
        self._factory = factory
        self._lock = lock
        self._on_work = on_work
        self._after_commit: list[Callable[[], None]] = []
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        # A generous timeout turns a nested write in one thread (a bug) into an error,
        # not a hang.
        if self._lock is not None and not self._lock.acquire(timeout=120):
            raise TimeoutError("waited 120 s for this process's SQLite writer lock")
        try:
            self.session = self._factory()
            self.session.begin()
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.session.rollback()
        finally:
            self.session.close()
            if self._lock is not None:
                self._lock.release()

    def commit(self) -> None:
        self.session.commit()
        if self.session.info.pop(_WORK_QUEUED, False):
            self._after_commit.append(self._on_work)
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)
