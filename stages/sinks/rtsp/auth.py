"""RTSP authentication: Basic and Digest (RFC 2617, MD5, no qop), as RTSP clients
such as FFmpeg and GStreamer speak it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from typing import Literal

REALM = "FrameGraph"
Scheme = Literal["any", "basic", "digest"]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _params(header: str) -> dict[str, str]:
    """``a="x", b=y`` -> {"a": "x", "b": "y"} (quoted values may hold commas)."""
    out: dict[str, str] = {}
    rest = header
    while rest:
        key, sep, rest = rest.partition("=")
        if not sep:
            break
        rest = rest.lstrip()
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('"')
        else:
            value, _, rest = rest.partition(",")
        out[key.strip().strip(",").strip().lower()] = value
        rest = rest.lstrip(", ")
    return out


@dataclass
class Credentials:
    """Who may watch: one user name and password, checked with ``scheme``."""

    username: str
    password: str
    scheme: Scheme = "any"
    _nonces: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def challenge(self) -> list[str]:
        """``WWW-Authenticate`` header values for a 401 response."""
        values = []
        if self.scheme in ("any", "digest"):
            nonce = secrets.token_hex(16)
            with self._lock:
                if len(self._nonces) > 1024:  # bound memory against clients that never answer
                    self._nonces.clear()
                self._nonces.add(nonce)
            values.append(f'Digest realm="{REALM}", nonce="{nonce}"')
        if self.scheme in ("any", "basic"):
            values.append(f'Basic realm="{REALM}"')
        return values

    def check(self, authorization: str | None, method: str) -> bool:
        """True if an ``Authorization`` header value grants access for ``method``."""
        if not authorization:
            return False
        kind, _, value = authorization.strip().partition(" ")
        kind = kind.lower()
        if kind == "basic" and self.scheme in ("any", "basic"):
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return False
            expected = f"{self.username}:{self.password}"
            return hmac.compare_digest(decoded.encode(), expected.encode())
        if kind == "digest" and self.scheme in ("any", "digest"):
            fields = _params(value)
            with self._lock:
                known = fields.get("nonce", "") in self._nonces
            if not known or fields.get("username") != self.username:
                return False
            ha1 = _md5(f"{self.username}:{REALM}:{self.password}")
            ha2 = _md5(f"{method}:{fields.get('uri', '')}")
            expected = _md5(f"{ha1}:{fields['nonce']}:{ha2}")
            return hmac.compare_digest(expected, fields.get("response", ""))
        return False
