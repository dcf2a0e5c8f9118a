"""Training files read from a multipart request as it streams in, into temporary files.

The two upload routes (the REST API's and the panel's) call ``receive_upload`` only
once they know the caller, and ``allow_upload`` raises the request's body limit
just before. Each file goes to a ``Spool`` on disk (``CHATMETER_DATA_DIR/uploads``),
hashed on the way and refused the moment it passes ``max_file_bytes``; the
request never sits in memory. A form field may come before the files (the
panel's plain form sends its CSRF token first): ``before_files`` sees those
fields before a byte of any file is read, and may refuse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from chatmeter.errors import InvalidInput
from chatmeter.http.limits import allow_upload
from chatmeter.training.content import Content, Spool
from chatmeter.training.service import check_file_count

MAX_FIELDS = 8
MAX_FIELD_BYTES = 1024  # a CSRF token, not a document


@dataclass
class Received:
    files: list[tuple[str, Content]]  # (file name as sent, its bytes)
    fields: dict[str, str]


@asynccontextmanager
async def receive_upload(
    request: Request,
    *,
    spool_dir: Path,
    max_file_bytes: int,
    name: str = "files",
    before_files: Callable[[dict[str, str]], None] | None = None,
) -> AsyncIterator[Received]:
    """The files sent as form field ``name``; their temporary files go when the block ends.

    An upload carries 1 to ``training.MAX_FILES_PER_UPLOAD`` files (``check_file_count``).

    Call only for an authenticated caller: it raises the body limit to the upload's.
    """
    reader = _Reader(
        spool_dir=spool_dir,
        max_file_bytes=max_file_bytes,
        name=name,
        before_files=before_files,
    )
    try:
        allow_upload(request)
        await reader.read(request)
        check_file_count(len(reader.spools))
        yield Received([(s.filename, s.content()) for s in reader.spools], reader.fields)
    finally:
        reader.close()


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_name: bytes = b""
    header_value: bytes = b""
    field_name: str = ""
    spool: Spool | None = None
    ignored: int | None = None  # bytes of a file part that is not ours, counted and dropped
    data: bytearray = field(default_factory=bytearray)


class _Reader:
    def __init__(
        self,
        *,
        spool_dir: Path,
        max_file_bytes: int,
        name: str,
        before_files: Callable[[dict[str, str]], None] | None,
    ) -> None:
        self.spool_dir = spool_dir
        self.max_file_bytes = max_file_bytes
        self.name = name
        self.before_files = before_files
        self.spools: list[Spool] = []
        self.fields: dict[str, str] = {}
        self._files = 0
        self._ended = False
        self._seen_file = False
        self._field_count = 0
        self._part = _Part()
        self._pending: list[tuple[Spool, bytes]] = []

    async def read(self, request: Request) -> None:
        kind, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise InvalidInput("send the files as multipart/form-data", field=self.name)
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": self._header_name,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._end,
                "on_end": self._closed,
            },
        )
        try:
            async for piece in request.stream():
                parser.write(piece)
                if self._pending:  # disk writes off the event loop, a network read at a time
                    pending, self._pending = self._pending, []
                    await run_in_threadpool(_write, pending)
            parser.finalize()
        except FormParserError as exc:
            raise InvalidInput("the upload is not valid multipart/form-data") from exc
        if not self._ended:  # the parser does not check it: a cut-off body is not an upload
            raise InvalidInput("the upload ended before its last part did")

    def close(self) -> None:
        for spool in self.spools:
            spool.close()

    # --- the parser's callbacks ---------------------------------------------------------

    def _begin(self) -> None:
        self._part = _Part()

    def _header_name(self, data: bytes, start: int, end: int) -> None:
        self._part.header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._part.header_value += data[start:end]

    def _header_end(self) -> None:
        part = self._part
        part.headers[part.header_name.strip().lower()] = part.header_value
        part.header_name = part.header_value = b""

    def _headers_done(self) -> None:
        part = self._part
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.field_name = _text(options.get(b"name", b""))
        if b"filename" not in options:
            self._field_count += 1
            if self._field_count > MAX_FIELDS:
                raise InvalidInput("the upload has too many form fields")
            return
        if not self._seen_file:
            self._seen_file = True
            if self.before_files is not None:
                self.before_files(dict(self.fields))
        if part.field_name != self.name or not options[b"filename"]:
            self._field_count += 1  # another field, or a file input with no file chosen
            if self._field_count > MAX_FIELDS:
                raise InvalidInput("the upload has too many form fields")
            part.ignored = 0
            return
        self._files += 1
        check_file_count(self._files)  # refused before the file one too many is read
        part.spool = Spool(
            filename=_text(options[b"filename"]),
            limit=self.max_file_bytes,
            directory=self.spool_dir,
        )
        self.spools.append(part.spool)

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        piece = data[start:end]
        if part.spool is not None:
            self._pending.append((part.spool, piece))
        elif part.ignored is not None:
            part.ignored += len(piece)
            if part.ignored > self.max_file_bytes:
                raise InvalidInput(f"send the files as form field {self.name!r}", field=self.name)
        else:
            part.data += piece
            if len(part.data) > MAX_FIELD_BYTES:
                raise InvalidInput(f"the form field {part.field_name!r} is too long")

    def _closed(self) -> None:
        self._ended = True

    def _end(self) -> None:
        part = self._part
        if part.spool is None and part.ignored is None:
            self.fields[part.field_name] = _text(bytes(part.data))


def _write(pending: list[tuple[Spool, bytes]]) -> None:
    for spool, data in pending:
        spool.write(data)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
