"""The one way a URL is shown: in logs, errors, source ids (JSONL, metrics, Prometheus
labels) and the API's stream listing.

``redact`` drops the user info (user and password) and masks the values of query and
fragment parameters that carry credentials (``token``, ``sig``, ``X-Amz-Signature``, ...);
everything else is kept, so two cameras on one host stay told apart by path and query.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
"""What a secret parameter's value becomes."""
SECRET_PARAMS = frozenset({
    "token", "access_token", "refresh_token", "id_token", "auth", "auth_token", "authorization",
    "key", "api_key", "apikey", "sig", "signature", "password", "pass", "passwd", "pwd",
    "secret", "client_secret", "credential", "credentials", "session", "sessionid", "jwt",
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature",
    "x-goog-credential",
})  # fmt: skip
"""Parameter names (lower case) whose values are credentials: bearer tokens, API keys, the
signatures of presigned S3 / GCS / Azure URLs."""
SECRET_WORDS = ("token", "secret", "passw", "signature", "credential", "apikey", "api_key")
"""A parameter whose name contains one of these is a credential too (``auth_token_v2``)."""


def _is_secret(name: str) -> bool:
    name = unquote(name).strip().lower()
    return name in SECRET_PARAMS or any(word in name for word in SECRET_WORDS)


def _mask_params(text: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***`` (``&`` or ``;`` separated, order kept)."""
    pieces = re.split(r"([&;])", text)  # the separators stay, at the odd positions
    for i in range(0, len(pieces), 2):
        name, equals, _ = pieces[i].partition("=")
        if equals and _is_secret(name):
            pieces[i] = f"{name}={MASK}"
    return "".join(pieces)


def _first_of(text: str, chars: str) -> int:
    """Index of the first of ``chars`` in ``text``, or its length."""
    return min((i for i in map(text.find, chars) if i >= 0), default=len(text))


def _split_netloc(rest: str) -> tuple[str, str]:
    """(user info and host, what follows) of a URL after its ``scheme://``.

    RFC 3986 ends the user info + host at the first ``/``, ``?`` or ``#``; FFmpeg splits the
    user info off at the last ``@`` before that (a password may hold ``@``). People also
    paste passwords with a raw ``/``, ``?`` or ``#`` (``rtsp://admin:pa/ss@cam/live``):
    when what comes before that character looks like ``user:password`` rather than
    ``host:port`` and an ``@`` follows, the user info runs to that ``@``, so no piece of the
    password is shown.
    """
    end = _first_of(rest, "/?#")
    head = rest[:end]
    if "@" not in head and not head.startswith("[") and "@" in rest[end:]:
        _, colon, port = head.rpartition(":")
        if colon and (not port.isdigit() or head.count(":") > 1):
            at = rest.index("@", end)
            end = at + 1 + _first_of(rest[at + 1 :], "/?#")
    return rest[:end], rest[end:]


def redact(url: str) -> str:
    """``url`` safe to show: no user or password, credential parameters masked.

    ``rtsp://admin:p@ss@10.0.0.5:554/live?channel=1&token=abc`` ->
    ``rtsp://10.0.0.5:554/live?channel=1&token=***``. A string without ``://`` (a file
    path, a camera index) is returned as it is. Applying it twice changes nothing.
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, tail = _split_netloc(rest)
    host = netloc.rpartition("@")[2]  # the password may hold '@': the host follows the last
    path, hash_, fragment = tail.partition("#")
    path, question, query = path.partition("?")
    tail = path + question + _mask_params(query) + hash_ + _mask_params(fragment)
    return f"{scheme}://{host}{tail}"
