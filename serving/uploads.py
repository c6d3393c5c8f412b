"""Streaming multipart reading with limits enforced as bytes arrive.

Nothing is buffered past a limit: a photo over ``max_file_bytes``, more than
``max_files`` photos, or a metadata field over ``max_field_bytes`` stops the
read at once with a problem response.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from pestid.serving.problems import Problem

PHOTO_FIELD = "photos"
MAX_FIELDS = 16  # metadata parts beside the photos; the form has 8
PARSE_BATCH = 64 * 1024  # bytes handed to the parser per trip to a worker thread (limits bite within one)


@dataclass
class UploadedFile:
    filename: str
    content_type: str
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    file: UploadedFile | None = None
    value: bytearray = field(default_factory=bytearray)


def too_large(limit: int) -> Problem:
    mb = limit / 1024 / 1024
    return Problem(413, "photo_too_large", f"Ảnh vượt quá giới hạn {mb:.0f} MB.",
                   f"A photo is larger than the {mb:.0f} MB limit.", limit_bytes=limit)  # fmt: skip


class _Collector:
    def __init__(self, max_files: int, max_file_bytes: int, max_field_bytes: int) -> None:
        self.max_files, self.max_file_bytes, self.max_field_bytes = max_files, max_file_bytes, max_field_bytes
        self.files: list[UploadedFile] = []
        self.fields: dict[str, str] = {}
        self.part = _Part()
        self.parts = 0
        self._header_field = bytearray()
        self._header_value = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin, "on_part_data": self._data, "on_part_end": self._end,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
        }  # fmt: skip

    def _begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_files + MAX_FIELDS:  # 2 million one-byte fields are no observation
            raise Problem(400, "too_many_parts", "Nội dung gửi lên có quá nhiều trường.",
                          "The request has too many parts.", max_parts=self.max_files + MAX_FIELDS)  # fmt: skip
        self.part = _Part()

    def _header_end(self) -> None:
        self.part.headers[bytes(self._header_field).decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_done(self) -> None:
        _, options = parse_options_header(self.part.headers.get("content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if self.part.name != PHOTO_FIELD:
                raise Problem(400, "unexpected_file", f"Trường tệp '{self.part.name}' không được hỗ trợ; dùng 'photos'.",
                              f"File field '{self.part.name}' is not accepted; send photos as 'photos'.")  # fmt: skip
            if len(self.files) >= self.max_files:
                raise Problem(400, "too_many_photos", f"Tối đa {self.max_files} ảnh cho một lần gửi.",
                              f"At most {self.max_files} photos per submission.", max_photos=self.max_files)  # fmt: skip
            content_type = self.part.headers.get("content-type", b"application/octet-stream").decode("latin-1")
            self.part.file = UploadedFile(options[b"filename"].decode("utf-8", "replace"), content_type.strip())
            self.files.append(self.part.file)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.part.file is not None:
            if len(self.part.file.data) + (end - start) > self.max_file_bytes:
                raise too_large(self.max_file_bytes)
            self.part.file.data.extend(data[start:end])
        else:
            if len(self.part.value) + (end - start) > self.max_field_bytes:
                raise Problem(400, "field_too_large", f"Trường '{self.part.name}' quá dài.",
                              f"Field '{self.part.name}' is too long.")  # fmt: skip
            self.part.value.extend(data[start:end])

    def _end(self) -> None:
        if self.part.file is None and self.part.name:
            try:  # strict: replacing bad bytes would make different texts (and idempotency keys) equal
                self.fields[self.part.name] = self.part.value.decode("utf-8")
            except UnicodeDecodeError:
                raise Problem(400, "invalid_encoding", f"Trường '{self.part.name}' không phải văn bản UTF-8.",
                              f"Field '{self.part.name}' is not UTF-8 text.", field=self.part.name) from None  # fmt: skip


async def read_multipart(
    request: Request, *, max_files: int, max_file_bytes: int, max_field_bytes: int
) -> tuple[list[UploadedFile], dict[str, str]]:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise Problem(415, "wrong_content_type", "Hãy gửi ảnh dạng multipart/form-data.",
                      "Send photos as multipart/form-data.")  # fmt: skip
    declared = request.headers.get("content-length")
    ceiling = max_files * (max_file_bytes + max_field_bytes) + 64 * 1024
    if declared and declared.isdigit() and int(declared) > ceiling:
        raise too_large(max_file_bytes)
    collector = _Collector(max_files, max_file_bytes, max_field_bytes)
    received, pending = 0, bytearray()
    try:  # the one error boundary of the body: whatever the parser cannot read is the request's fault, a 400
        parser = MultipartParser(options[b"boundary"], collector.callbacks())  # type: ignore[arg-type]
        async for chunk in request.stream():
            received += len(chunk)
            if received > ceiling:  # holds for chunked bodies too, which declare no length
                raise too_large(max_file_bytes)
            pending += chunk
            if len(pending) >= PARSE_BATCH:  # parsing runs in a thread: the event loop keeps answering others
                await run_in_threadpool(parser.write, bytes(pending))
                pending.clear()
        await run_in_threadpool(_finish, parser, bytes(pending))
    except Problem:
        raise
    except Exception:  # noqa: BLE001 - MultipartParseError, a bad boundary, broken headers …
        raise malformed() from None  # the parser's own words stay in the server
    return collector.files, collector.fields


def _finish(parser: MultipartParser, rest: bytes) -> None:
    parser.write(rest)
    parser.finalize()
    if parser.state != MultipartState.END:  # finalize() does not check it (python-multipart's TODO)
        raise ValueError("the body ends before the closing boundary")


def malformed() -> Problem:
    return Problem(400, "malformed_multipart", "Nội dung gửi lên bị hỏng, không đọc được ảnh. Hãy gửi lại.",
                   "The request body is not valid multipart/form-data; send it again.")  # fmt: skip
