"""RTSP authentication as FFmpeg and GStreamer speak it: Digest (MD5, RFC 2617 /
RFC 7616 with ``qop=auth``) and, only where the config asks for it, Basic.

What it defends against, and how:

- Replay of a captured ``Authorization`` header. Nonces are stateless and
  server-signed: ``issued time | salt | HMAC(secret, issued time | salt | client
  address)``. A nonce works only from the address it was issued to and only for
  ``nonce_lifetime`` seconds; after that a correct response earns a challenge with
  ``stale=true`` (FFmpeg and GStreamer then retry with the new nonce, without
  failing). Within the lifetime, responses with ``qop=auth`` must carry a
  nonce count (nc) larger than any seen before for that nonce, so a header is
  good once. The only server state is the highest nc per nonce in use, pruned when
  the nonce expires and capped in size.
- A header moved to another request: the ``uri`` field must name the request's
  URI, and the method is part of the hash.
- Password guessing: failures are counted per client address (IPv6 per /64); past
  a few the 401 is delayed, doubling up to a cap, and past a limit the address is
  refused outright until its count decays. Memory is capped; when the table is
  full, new addresses share one overflow record.
- Malformed, oversized or non-ASCII input is an ordinary failure, never an
  exception.

What it cannot do: RTSP here is plain TCP, so anyone on the path sees the stream
and can take over an authenticated connection. GStreamer's rtspsrc answers
without qop (RFC 2069 style: no nc, no cnonce), so its headers can be replayed
from the same address until the nonce expires (``legacy_digest=False`` refuses
such clients). Basic sends the password itself: anyone who sees one request can
use it forever, which is why it is only accepted when the config says
``auth: basic`` or ``auth: any``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import struct
import threading
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

REALM = "FrameGraph"
Scheme = Literal["any", "basic", "digest"]
Outcome = Literal["ok", "challenge", "refuse"]

NONCE_LIFETIME = 60.0
"""Default seconds a nonce is good for: far longer than DESCRIBE -> SETUP -> PLAY."""
MAX_AUTHORIZATION = 4096
"""Longer ``Authorization`` values are refused unparsed (a real one is < 400 chars)."""
MAX_LIVE_NONCES = 4096
"""Nonces with nc state at once; past it the oldest are declared stale."""
FUTURE_SKEW = 1.0
"""Seconds a nonce's issue time may lie ahead of ``now`` (clock granularity)."""

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_NC = re.compile(r"[0-9a-fA-F]{8}")
_NONCE = re.compile(r"[0-9a-f]{64}")
# One auth-param: token = token / quoted-string, then a comma or the end. Quoted
# strings may hold commas and backslash escapes. Written to match in linear time.
_PARAM = re.compile(
    r"[ \t,]*([A-Za-z][A-Za-z0-9_-]*)[ \t]*=[ \t]*"  # key =
    r'(?:"((?:[^"\\]|\\.)*)"|([^ \t,"]*))'  # "quoted" or token
    r"[ \t]*(?:,|\Z)"
)
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Verdict:
    """What the server does with one request.

    Attributes:
        outcome: ``ok``: serve it. ``challenge``: answer 401 with ``challenge``
            as ``WWW-Authenticate`` headers, after waiting ``delay`` seconds.
            ``refuse``: too many failures from this address; answer without
            checking anything (e.g. 503 with ``Retry-After: retry_after``) and
            close the connection.
        challenge: ``WWW-Authenticate`` header values for the 401, in order.
        stale: the response was right but its nonce had expired; the challenge
            says ``stale=true`` so clients retry on their own.
        delay: seconds to wait before sending the 401 (failed attempts).
        retry_after: for ``refuse``, seconds until this address may try again.
        reason: why, for debug logs only (never send it to the client).
    """

    outcome: Outcome
    challenge: tuple[str, ...] = ()
    stale: bool = False
    delay: float = 0.0
    retry_after: float = 0.0
    reason: str = ""

    @property
    def ok(self) -> bool:
        """True when the request may be served."""
        return self.outcome == "ok"


def _md5(*parts: str) -> str:
    """Hex MD5 of ``parts`` joined with ":" (the way Digest hashes everything)."""
    data = ":".join(parts).encode("utf-8")
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _encodable(*texts: str) -> bool:
    """False if any text holds lone surrogates (they cannot be hashed as UTF-8)."""
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_params(text: str) -> dict[str, str] | None:
    """``a="x", b=y`` -> ``{"a": "x", "b": "y"}``; None if malformed or a key repeats
    (two ``uri`` or ``nonce`` values would make the check ambiguous)."""
    out: dict[str, str] = {}
    pos, end = 0, len(text.rstrip(" \t,"))
    text = text[:end]
    while pos < end:
        match = _PARAM.match(text, pos)
        if match is None or match.end() == pos:
            return None
        key = match.group(1).lower()
        if key in out:
            return None
        quoted = match.group(2)
        out[key] = _ESCAPE.sub(r"\1", quoted) if quoted is not None else match.group(3)
        pos = match.end()
    return out


def _same_target(field: str, request_uri: str) -> bool:
    """Whether a Digest ``uri`` field names the request's URI.

    FFmpeg and GStreamer both send the request line's URI verbatim (the full
    ``rtsp://`` URL, with ``/trackID=N`` on SETUP). RFC 7616 also allows the
    path form, so ``/live?x`` is accepted for ``rtsp://host:port/live?x``.
    """
    if field == request_uri:
        return True
    if not field.startswith("/"):
        return False
    try:
        parts = urlsplit(request_uri)
    except ValueError:  # e.g. an unbalanced IPv6 bracket in the request line
        return False
    return field == parts.path + (f"?{parts.query}" if parts.query else "")


class _Nonces:
    """Signed, expiring nonces and the nonce counts seen for the ones in use.

    A nonce is 64 hex digits: the issue time (ms, 8 bytes), a random salt
    (8 bytes, so two challenges never share a nonce and nc state stays per
    client), and the first 16 bytes of HMAC-SHA256 over both and the client
    address. Checking one needs only the secret.
    """

    def __init__(self, lifetime: float, capacity: int = MAX_LIVE_NONCES) -> None:
        self.lifetime = lifetime
        self.capacity = capacity
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}  # nonce -> (issued, highest nc)
        # Nonces issued at or before this time count as expired: raised when the
        # nc table overflows, so an evicted nonce can never be replayed.
        self._floor = -math.inf
        self._last_prune = -math.inf

    def _mac(self, stamp_and_salt: bytes, peer: str) -> bytes:
        message = stamp_and_salt + peer.encode("utf-8", "backslashreplace")
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:16]

    def mint(self, peer: str, now: float) -> str:
        """A new nonce for a client at ``peer``."""
        head = struct.pack(">q", round(now * 1000)) + secrets.token_bytes(8)
        return (head + self._mac(head, peer)).hex()

    def issued(self, nonce: str, peer: str, now: float) -> float | None:
        """The nonce's issue time if this server made it for ``peer``, else None."""
        if not _NONCE.fullmatch(nonce):
            return None
        raw = bytes.fromhex(nonce)
        if not hmac.compare_digest(raw[16:], self._mac(raw[:16], peer)):
            return None
        issued = struct.unpack(">q", raw[:8])[0] / 1000
        return issued if issued <= now + FUTURE_SKEW else None

    def fresh(self, issued: float, now: float) -> bool:
        """Whether a nonce issued at ``issued`` may still be used."""
        return now - issued <= self.lifetime and issued > self._floor

    def count(
        self, nonce: str, issued: float, nc: int, now: float
    ) -> Literal["ok", "replay", "stale"]:
        """Record nonce count ``nc`` for a fresh ``nonce``; it must exceed the last one."""
        with self._lock:
            if len(self._counts) >= self.capacity or now - self._last_prune >= 1.0:
                self._prune(now)
            if issued <= self._floor:
                return "stale"
            seen = self._counts.get(nonce)
            if seen is not None and nc <= seen[1]:
                return "replay"
            if seen is None and len(self._counts) >= self.capacity:
                oldest = min(self._counts, key=lambda key: self._counts[key][0])
                self._floor = max(self._floor, self._counts.pop(oldest)[0])
                if issued <= self._floor:
                    return "stale"
            self._counts[nonce] = (issued, nc)
            return "ok"

    def _prune(self, now: float) -> None:
        self._last_prune = now
        self._counts = {
            nonce: entry
            for nonce, entry in self._counts.items()
            if now - entry[0] <= self.lifetime and entry[0] > self._floor
        }

    def __len__(self) -> int:
        return len(self._counts)


class _Throttle:
    """Failed attempts per client address, as a score that decays with time.

    The first ``free`` failures cost nothing (typos); then each 401 is delayed
    ``base_delay`` seconds, doubling per failure up to ``max_delay``; at
    ``refuse_at`` the address is refused until the score decays (one failure is
    forgiven every ``decay`` seconds). At most ``capacity`` addresses are kept;
    when the table is full of live records, new addresses share one overflow
    record, so many addresses cannot flush a guesser's record out of the table.
    """

    OVERFLOW = "*"

    def __init__(
        self,
        free: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        refuse_at: int = 20,
        decay: float = 30.0,
        capacity: int = 4096,
    ) -> None:
        self.free, self.base_delay, self.max_delay = free, base_delay, max_delay
        self.refuse_at, self.decay, self.capacity = refuse_at, decay, capacity
        self._lock = threading.Lock()
        self._scores: dict[str, tuple[float, float]] = {}  # key -> (score, when)
        self._last_prune = -math.inf

    @staticmethod
    def key(peer: str) -> str:
        """The record an address counts against: IPv4 as is, IPv6 by /64 (one
        host usually holds a whole /64), anything else by its first 64 chars."""
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return peer[:64]
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def _score(self, key: str, now: float) -> float:
        score, when = self._scores.get(key, (0.0, now))
        return max(score - max(now - when, 0.0) / self.decay, 0.0)

    def _slot(self, peer: str) -> str:
        key = self.key(peer)
        if key in self._scores or len(self._scores) < self.capacity:
            return key
        return self.OVERFLOW

    def retry_after(self, peer: str, now: float) -> float:
        """Seconds until ``peer`` may try again; 0 when it is not refused."""
        with self._lock:
            excess = self._score(self._slot(peer), now) - (self.refuse_at - 1)
        return excess * self.decay if excess > 0 else 0.0

    def fail(self, peer: str, now: float) -> float:
        """Count a failure from ``peer``; returns the delay for its 401."""
        with self._lock:
            key = self.key(peer)
            if key not in self._scores and len(self._scores) >= self.capacity:
                # At most once a second: a full table of live records would
                # otherwise make every new address pay a full scan.
                if now - self._last_prune >= 1.0:
                    self._last_prune = now
                    self._scores = {
                        k: v for k, v in self._scores.items() if self._score(k, now) > 0
                    }
                key = self._slot(peer)
            score = self._score(key, now) + 1.0
            self._scores[key] = (score, now)
        excess = score - self.free
        return 0.0 if excess <= 0 else min(self.base_delay * 2 ** (excess - 1), self.max_delay)

    def __len__(self) -> int:
        return len(self._scores)


class Credentials:
    """Who may watch: one user name and password, checked with ``scheme``.

    One object serves every connection of a server (it is thread-safe); its
    nonces are signed with a secret made at construction, so they die with it.

    Args:
        username: the user name clients must give.
        password: its password.
        scheme: ``digest`` (default): Digest only. ``basic``: Basic only (the
            password crosses the network in clear). ``any``: both offered;
            FFmpeg and GStreamer pick Digest.
        nonce_lifetime: seconds a nonce is accepted; later, a correct response
            gets a ``stale=true`` challenge and the client retries.
        legacy_digest: accept Digest responses without ``qop`` (RFC 2069), as
            GStreamer's rtspsrc sends them. Such a header can be replayed from
            the same address until its nonce expires.

    Raises:
        ValueError: unknown ``scheme`` or a lifetime that is not positive.
    """

    def __init__(
        self,
        username: str,
        password: str,
        scheme: Scheme = "digest",
        *,
        nonce_lifetime: float = NONCE_LIFETIME,
        legacy_digest: bool = True,
    ) -> None:
        if scheme not in ("any", "basic", "digest"):
            raise ValueError(f"auth must be any, basic or digest, got {scheme!r}")
        if not nonce_lifetime > 0:
            raise ValueError(f"nonce_lifetime must be positive, got {nonce_lifetime!r}")
        self.username = username
        self.password = password
        self.scheme: Scheme = scheme
        self.legacy_digest = legacy_digest
        self._ha1 = _md5(username, REALM, password)
        self._basic = hashlib.sha256(f"{username}:{password}".encode()).digest()
        self._nonces = _Nonces(nonce_lifetime)
        self._throttle = _Throttle()

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=..., scheme={self.scheme!r})"

    @property
    def nonce_lifetime(self) -> float:
        """Seconds a nonce is accepted."""
        return self._nonces.lifetime

    @property
    def _offers_digest(self) -> bool:
        return self.scheme in ("any", "digest")

    @property
    def _offers_basic(self) -> bool:
        return self.scheme in ("any", "basic")

    def challenge_headers(
        self, peer: str, stale: bool = False, now: float | None = None
    ) -> list[str]:
        """``WWW-Authenticate`` header values for a 401 to the client at ``peer``.

        :meth:`check` already puts these in its verdict; call this only to
        challenge without a check.

        Args:
            peer: the client's IP address, as given to :meth:`check` (the nonce
                is good only from there).
            stale: mark the Digest challenge ``stale=true`` (the client's
                response was right but its nonce expired).
            now: the clock (``time.monotonic()`` seconds); for tests.

        Returns:
            Digest first, then Basic, as ``scheme`` offers them.
        """
        now = time.monotonic() if now is None else now
        values = []
        if self._offers_digest:
            nonce = self._nonces.mint(peer, now)
            digest = f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"'
            values.append(digest + (", stale=true" if stale else ""))
        if self._offers_basic:
            values.append(f'Basic realm="{REALM}"')
        return values

    def check(
        self,
        method: str,
        uri: str,
        authorization: str | None,
        peer: str,
        now: float | None = None,
    ) -> Verdict:
        """Decide whether one request may be served.

        Args:
            method: the request line's method, e.g. ``DESCRIBE``.
            uri: the request line's URI, verbatim (``rtsp://host:port/live``,
                ``.../live/trackID=0`` on SETUP).
            authorization: the ``Authorization`` header value, or None.
            peer: the client's IP address (the TCP peer, without the port).
            now: the clock (``time.monotonic()`` seconds); for tests.

        Returns:
            The verdict; see :class:`Verdict` for what the server does with it.
        """
        now = time.monotonic() if now is None else now
        retry_after = self._throttle.retry_after(peer, now)
        if retry_after > 0:
            return Verdict("refuse", retry_after=retry_after, reason="too many failed attempts")
        if not authorization:
            return self._challenge(peer, now, reason="no credentials")
        if len(authorization) > MAX_AUTHORIZATION or not _encodable(method, uri, authorization):
            return self._fail(peer, now, "malformed header")
        kind, _, rest = authorization.strip().partition(" ")
        kind = kind.lower()
        if kind == "digest" and self._offers_digest:
            result, reason = self._check_digest(method, uri, rest, peer, now)
        elif kind == "basic" and self._offers_basic:
            result, reason = self._check_basic(rest)
        else:
            # Not a password guess (nothing was checked): no failure counted.
            return self._challenge(peer, now, reason=f"scheme {kind[:16]!r} not offered")
        if result == "ok":
            # Failures are not forgiven on success: a guesser sharing an address
            # (NAT) with a working client would otherwise get a fresh allowance
            # with each of that client's requests. They decay with time only.
            return Verdict("ok", reason=reason)
        if result == "stale":
            return self._challenge(peer, now, stale=True, reason=reason)
        return self._fail(peer, now, reason)

    def state_size(self) -> dict[str, int]:
        """How many records the replay and throttle state hold (both bounded)."""
        return {"nonces": len(self._nonces), "peers": len(self._throttle)}

    # ---- internals ---------------------------------------------------------
    def _challenge(
        self, peer: str, now: float, *, stale: bool = False, delay: float = 0.0, reason: str
    ) -> Verdict:
        headers = tuple(self.challenge_headers(peer, stale=stale, now=now))
        return Verdict("challenge", headers, stale=stale, delay=delay, reason=reason)

    def _fail(self, peer: str, now: float, reason: str) -> Verdict:
        return self._challenge(peer, now, delay=self._throttle.fail(peer, now), reason=reason)

    def _check_basic(self, token: str) -> tuple[Literal["ok", "fail"], str]:
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            return "fail", "malformed basic"
        # Compared as hashes so the time taken says nothing about the length.
        if hmac.compare_digest(hashlib.sha256(given).digest(), self._basic):
            return "ok", "basic"
        return "fail", "wrong basic credentials"

    def _check_digest(
        self, method: str, uri: str, text: str, peer: str, now: float
    ) -> tuple[Literal["ok", "fail", "stale"], str]:
        fields = _parse_params(text)
        if fields is None or not {"username", "realm", "nonce", "uri", "response"} <= fields.keys():
            return "fail", "malformed digest"
        if not hmac.compare_digest(fields["username"].encode(), self.username.encode()):
            return "fail", "unknown user"
        if fields["realm"] != REALM or fields.get("algorithm", "MD5").upper() != "MD5":
            return "fail", "wrong realm or algorithm"
        if not _HEX32.fullmatch(fields["response"]):
            return "fail", "malformed response"
        nonce = fields["nonce"]
        issued = self._nonces.issued(nonce, peer, now)
        if issued is None:
            return "fail", "nonce not issued to this address"
        if not _same_target(fields["uri"], uri):
            return "fail", "uri does not match the request"
        ha2 = _md5(method, fields["uri"])
        qop = fields.get("qop")
        if qop is None:
            if not self.legacy_digest:
                return "fail", "digest without qop"
            expected = _md5(self._ha1, nonce, ha2)
        elif qop.lower() == "auth":
            nc, cnonce = fields.get("nc", ""), fields.get("cnonce", "")
            if not _NC.fullmatch(nc) or not cnonce:
                return "fail", "malformed nc or cnonce"
            expected = _md5(self._ha1, nonce, nc, cnonce, qop, ha2)
        else:
            return "fail", f"qop {qop[:16]!r} not offered"
        if not hmac.compare_digest(expected.encode(), fields["response"].lower().encode()):
            return "fail", "wrong response"
        # Only now, with the password proven, may the client learn that its
        # nonce expired: stale=true makes it retry instead of giving up.
        if not self._nonces.fresh(issued, now):
            return "stale", "nonce expired"
        if qop is not None:
            counted = self._nonces.count(nonce, issued, int(nc, 16), now)
            if counted == "replay":
                return "fail", "nonce count not increasing (replay)"
            if counted == "stale":
                return "stale", "nonce evicted"
        return "ok", "digest" if qop else "digest without qop"
