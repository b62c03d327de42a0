"""RTSP requests off the wire: the request line and headers, a size-limited body,
and the interleaved ``$`` frames a client may send between requests."""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEADER = 8192
MAX_BODY = 65536


class BadRequest(Exception):
    """The bytes on a connection are not an RTSP request we can answer."""


def is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²", which ``int`` rejects."""
    return text.isascii() and text.isdigit()


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


def parse_head(head: bytes) -> Request:
    """The request line and headers (without the blank line) -> Request.

    Raises:
        BadRequest: not UTF-8, a bad request line or a header line without a name.
    """
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("not text") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("RTSP/"):
        raise BadRequest(f"bad request line {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise BadRequest("bad header line")
        headers[name.strip().lower()] = value.strip()
    return Request(parts[0], parts[1], headers)


class RequestReader:
    """Splits a connection's bytes into requests, skipping interleaved frames.

    A client's ``$`` frames can only be RTCP for us, so their payload is never
    looked at: they are stepped over in a tight loop and only their channels are
    noted (``channels``). Linear in the bytes fed: consumed input is only
    skipped over (an offset into one bytearray) and dropped once per ``feed``,
    and the search for a header's end resumes where the last one stopped, so
    neither thousands of 4-byte frames in one read nor a header dripped a byte
    at a time costs quadratic copying or scanning.
    """

    def __init__(self) -> None:
        self.channels: set[int] = set()  # channels of the frames skipped (the caller clears it)
        self.consumed = 0  # messages (requests and frames) taken so far
        self._buffer = bytearray()
        self._pos = 0  # first byte not yet consumed
        self._scan = 0  # where the search for b"\r\n\r\n" resumes
        self._head: Request | None = None  # a request whose body is still coming
        self._body = 0

    def feed(self, data: bytes) -> None:
        """Append bytes read from the connection."""
        if self._pos:
            # Deleting a bytearray's prefix only moves its start: cheap.
            del self._buffer[: self._pos]
            self._scan = max(self._scan - self._pos, 0)
            self._pos = 0
        self._buffer += data

    @property
    def pending(self) -> bool:
        """Part of a message is buffered, waiting for the rest."""
        return self._head is not None or self._pos < len(self._buffer)

    def next(self) -> Request | None:
        """The next complete request (frames before it skipped), or None until
        more bytes come.

        Raises:
            BadRequest: the stream cannot be a request (the connection is out
                of step and must be closed after a 400).
        """
        buffer, pos, size = self._buffer, self._pos, len(self._buffer)
        if self._head is not None:
            if size - pos < self._body:
                return None
            request, self._head = self._head, None
            request.body = bytes(buffer[pos : pos + self._body])
            self._pos = self._scan = pos + self._body
            self.consumed += 1
            return request
        # "$", channel, 16-bit length, payload
        skipped, channels = 0, self.channels
        while pos + 4 <= size and buffer[pos] == 0x24:
            end = pos + 4 + ((buffer[pos + 2] << 8) | buffer[pos + 3])
            if end > size:
                break
            channels.add(buffer[pos + 1])
            pos = end
            skipped += 1
        if skipped:
            self._pos = self._scan = pos
            self.consumed += skipped
        available = size - pos
        if available <= 0 or buffer[pos] == 0x24:  # nothing, or part of a frame
            return None
        end = buffer.find(b"\r\n\r\n", max(self._scan, pos))
        if end == -1:
            if available > MAX_HEADER:
                raise BadRequest("request header too large")
            self._scan = max(pos, len(buffer) - 3)  # a terminator may straddle reads
            return None
        if end - pos > MAX_HEADER:
            raise BadRequest("request header too large")
        request = parse_head(bytes(buffer[pos:end]))
        length = request.header("content-length", "0") or ""
        if not is_number(length) or int(length) > MAX_BODY:
            raise BadRequest("bad Content-Length")
        self._pos = self._scan = end + 4
        self._head, self._body = request, int(length)
        return self.next()  # with its body, if that is here
