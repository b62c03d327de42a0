"""Events to an HTTP endpoint: a POST of JSON per event (or per batch of events)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline.config import register
from pipeline.errors import ConfigError
from pipeline.results import Event
from stages.sinks.events.base import event_text
from stages.sinks.events.outbox import Outbox, QueuedEventSink
from stages.sources.urls import redact

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("framegraph")

MAX_BACKOFF = 30.0
"""Seconds: the longest pause between two tries of one request."""
MIN_TIMEOUT = 0.05
"""Seconds: the shortest request timeout, also when the close's deadline is nearer."""
RETRIED = frozenset({408, 425, 429})
"""4xx statuses that mean "later" rather than "never": tried again like a 5xx."""


@register("webhook")
class WebhookSink(QueuedEventSink):
    """POSTs each event (``Event.to_json()``) as JSON to ``url``, from a thread of its own.

    ``write`` only queues (see :mod:`stages.sinks.events.outbox`: bounded, drops the oldest
    when full, counted), so a slow or dead receiver never slows the graph. A request that
    cannot connect, times out, or gets a 5xx (or 408 / 425 / 429) is tried again after
    ``backoff``, 2 x ``backoff``, 4 x ... seconds, ``tries`` times in all; other statuses
    count as failed at once. Any 2xx is success. A URL holding ``{source}`` gives one
    output (queue, thread, connection) per source.

    Args:
        url: ``http://`` or ``https://`` address of the receiver.
        headers: extra request headers (e.g. ``Authorization: Bearer ...``).
        batch: the most events in one request. 1: the body is one event object; above 1:
            a JSON array of the events queued at that moment.
        batch_wait: seconds a request waits, from its first event, for ``batch`` events
            to be queued (0: it takes what is there): fewer, larger requests when events
            come in bursts.
        timeout: seconds for each request (connect, send and the reply).
        tries: attempts per request, the first included.
        backoff: seconds before the second try; doubled for each further one.
        queue: the most events waiting for delivery; past it the oldest are dropped.
        drain: seconds the close goes on delivering what is queued before giving up.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        batch: int = 1,
        batch_wait: float = 0.0,
        timeout: float = 5.0,
        tries: int = 4,
        backoff: float = 0.5,
        queue: int = 1000,
        drain: float = 2.0,
    ) -> None:
        super().__init__(queue, drain)
        check_url(url)
        for name, value in (headers or {}).items():
            if not name or any(c in name + value for c in "\r\n"):
                raise ConfigError(f"webhook: header {name!r} must be one line and named")
        if batch < 1:
            raise ConfigError(f"webhook: batch must be at least 1, got {batch}")
        if batch_wait < 0:
            raise ConfigError(f"webhook: batch_wait must be 0 or more seconds, got {batch_wait}")
        if timeout <= 0:
            raise ConfigError(f"webhook: timeout must be above 0, got {timeout}")
        if tries < 1:
            raise ConfigError(f"webhook: tries must be at least 1, got {tries}")
        if backoff < 0:
            raise ConfigError(f"webhook: backoff must be 0 or more seconds, got {backoff}")
        self.url = url
        self.headers = dict(headers or {})
        self.batch = batch
        self.batch_wait = batch_wait
        self.timeout = timeout
        self.tries = tries
        self.backoff = backoff
        self._state = ""  # "ok" / "failing", set by the delivery thread
        self._last_problem = ""

    def _connection(self) -> str:
        return self._state

    def _deliver(self, outbox: Outbox) -> None:
        # Imported here: only a graph with a webhook needs httpx loaded.
        import httpx

        headers = {"User-Agent": "framegraph", "Content-Type": "application/json", **self.headers}
        # One client for the thread's life: it keeps the connection to the receiver open
        # between events. Redirects are not followed: a POST that moves is a setup problem.
        with httpx.Client(headers=headers, timeout=self.timeout) as client:
            while (events := outbox.take(self.batch, fill_wait=self.batch_wait)) is not None:
                payload: Event | list[Event] = events if self.batch > 1 else events[0]
                taken = self._post(client, event_text(payload), outbox)
                if taken:
                    outbox.settle(sent=len(events))
                elif taken is not None:  # None: the close gave up first; they stay in hand
                    outbox.settle(failed=len(events))

    def _post(self, client: httpx.Client, body: str, outbox: Outbox) -> bool | None:
        """One request with its retries.

        Returns:
            Whether the receiver took it; None when the close's deadline came first (the
            close counts the events as abandoned).
        """
        import httpx

        problem = ""
        for attempt in range(1, self.tries + 1):
            timeout = outbox.time_left(self.timeout)
            if timeout <= 0:
                return None
            try:
                response = client.post(self.url, content=body, timeout=max(timeout, MIN_TIMEOUT))
            except httpx.RequestError as error:
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                retry = True
            else:
                if response.is_success:
                    self._healthy()
                    return True
                problem = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
                retry = response.status_code >= 500 or response.status_code in RETRIED
            if not retry or attempt == self.tries:
                break
            if not outbox.pause(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)):
                return None
        self._failing(problem, attempt)
        return False

    def _healthy(self) -> None:
        if self._state == "failing":
            log.info("%s: %s takes events again", self.label, redact(self.url))
        self._state = "ok"

    def _failing(self, problem: str, tries: int) -> None:
        # Logged when the receiver turns bad (or the problem changes), not for every event.
        if self._state != "failing" or problem != self._last_problem:
            log.warning(
                "%s: %s did not take an event after %d tries (%s); events are counted as "
                "failed until it does", self.label, redact(self.url), tries, problem,
            )  # fmt: skip
        self._state, self._last_problem = "failing", problem


def check_url(url: str) -> None:
    """Raise ConfigError unless ``url`` is an ``http://`` or ``https://`` URL with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as error:
        raise ConfigError(f"webhook: url {redact(url)!r} is not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"webhook: url {redact(url)!r} must start with http:// or https://")
    if not parts.hostname or port == 0:
        raise ConfigError(f"webhook: url {redact(url)!r} names no host (or port 0)")
