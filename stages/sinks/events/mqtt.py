"""Events to an MQTT broker (paho-mqtt): a message per event, on a topic made from it."""

from __future__ import annotations

import logging
import string
import threading
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pipeline.config import register
from pipeline.errors import ConfigError
from pipeline.per_source import safe_name
from pipeline.results import Event
from stages.sinks.events.base import event_text
from stages.sinks.events.outbox import JOIN_MARGIN, Outbox, QueuedEventSink

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger("framegraph")

TOPIC_FIELDS = ("source", "kind", "where")
"""Placeholders a topic may hold, filled from each event."""
RECONNECT_DELAY = (1, 8)
"""Seconds paho waits before reconnecting: the first wait, doubled up to the second."""


def check_topic(topic: str) -> None:
    """Raise ConfigError unless ``topic`` is a topic a client may publish to, once its
    ``{source}`` / ``{kind}`` / ``{where}`` are filled."""
    known = ", ".join(f"{{{f}}}" for f in TOPIC_FIELDS)
    try:
        pieces = list(string.Formatter().parse(topic))
    except ValueError as error:
        raise ConfigError(f"mqtt: topic {topic!r}: {error} (placeholders: {known})") from None
    for literal, field, spec, conversion in pieces:
        if field is not None and (field not in TOPIC_FIELDS or spec or conversion):
            raise ConfigError(f"mqtt: topic {topic!r}: unknown placeholder (known: {known})")
        if any(c in literal for c in "+#\0"):
            raise ConfigError(f"mqtt: topic {topic!r}: a topic to publish to has no + or #")
    if not topic or topic.startswith("$"):
        raise ConfigError(f"mqtt: topic {topic!r}: empty, or starting with $ (the broker's)")
    if len(topic.encode("utf-8")) > 60_000:  # MQTT's limit is 65535 bytes, filled in
        raise ConfigError("mqtt: topic is too long")


def topic_level(value: str) -> str:
    """``value`` as one topic level: no ``/`` (a level separator), no wildcards, never empty."""
    cleaned = "".join("_" if c in "/+#\0" else c for c in value)
    return cleaned or "_"


@register("mqtt")
class MqttSink(QueuedEventSink):
    """Publishes each event (``Event.to_json()``) on an MQTT broker.

    ``write`` only queues (see :mod:`stages.sinks.events.outbox`: bounded, drops the oldest
    when full, counted). A thread of this sink's own hands events to paho, whose network
    thread connects, reconnects (1 s, doubling to 8 s) and, at QoS 1 and 2, sends again what
    the broker had not acknowledged when a connection dropped. While the broker is away the
    events wait in the queue, so a dead broker never slows the graph. An event counts as
    ``sent`` when the broker acknowledged it (QoS 1, 2) or it was written to the socket
    (QoS 0). At most ``max_inflight`` events are published and unacknowledged at once.

    The topic's ``{source}`` is filled per event: every source's events go over one
    connection (the sink is never split per source, ``per_source = False``).

    Args:
        host: the broker's host name or address.
        topic: where each event goes; ``{source}``, ``{kind}`` (enter / leave / cross) and
            ``{where}`` (zone or line) are filled from it, ``/`` and wildcards in them
            replaced by ``_``.
        port: the broker's port.
        qos: MQTT quality of service: 0 at most once, 1 at least once, 2 exactly once.
        retain: ask the broker to keep the last event of each topic for new subscribers.
        client_id: the client's name at the broker (default: the broker picks one).
        username: for a broker that asks for one.
        password: with ``username``.
        keepalive: seconds between pings on an idle connection.
        timeout: seconds a connection attempt may take.
        max_inflight: the most events published and not yet acknowledged (20, as paho's
            and mosquitto's own default: Debian 12's mosquitto 2.0.11 loses QoS 2 messages
            to its subscribers with more in flight from one client).
        queue: the most events waiting for delivery; past it the oldest are dropped.
        drain: seconds the close goes on delivering what is queued before giving up.
    """

    per_source: ClassVar[bool] = False  # its topic's {source} is filled per event

    def __init__(
        self,
        host: str,
        topic: str = "framegraph/{source}/{kind}/{where}",
        port: int = 1883,
        qos: Literal[0, 1, 2] = 1,
        retain: bool = False,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 60,
        timeout: float = 5.0,
        max_inflight: int = 20,
        queue: int = 1000,
        drain: float = 2.0,
    ) -> None:
        super().__init__(queue, drain)
        try:
            import paho.mqtt.client  # noqa: F401  (only checks that it is there)
        except ImportError:
            raise ConfigError("mqtt: needs paho-mqtt (pip install -r requirements.txt)") from None
        if not host or "://" in host or "/" in host:
            raise ConfigError(f"mqtt: host must be a host name or address, got {host!r}")
        if not 0 < port < 65536:
            raise ConfigError(f"mqtt: port must be 1 to 65535, got {port}")
        check_topic(topic)
        if password is not None and username is None:
            raise ConfigError("mqtt: a password needs a username")
        if keepalive < 1 or timeout <= 0 or max_inflight < 1:
            raise ConfigError("mqtt: keepalive, timeout and max_inflight must be above 0")
        self.host, self.port, self.topic = host, port, topic
        self.qos, self.retain, self.client_id = qos, retain, client_id
        self.username, self.password = username, password
        self.keepalive, self.timeout, self.max_inflight = keepalive, timeout, max_inflight
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()  # guards the sets below; never held while calling paho
        self._pending: set[int] = set()  # message ids published, not yet acknowledged
        self._early: set[int] = set()  # acknowledged before publish() had returned their id
        self._stopped = False
        self._connected = False
        self._state = "connecting"

    def topic_for(self, event: Event) -> str:
        """The topic ``event`` is published on."""
        return self.topic.format(
            source=safe_name(event.source), kind=topic_level(event.kind),
            where=topic_level(event.where),
        )  # fmt: skip

    def _connection(self) -> str:
        return self._state

    def _start(self) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id or "",
            protocol=mqtt.MQTTv311, clean_session=True,
        )  # fmt: skip
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.reconnect_delay_set(*RECONNECT_DELAY)
        client.max_inflight_messages_set(self.max_inflight)
        client.connect_timeout = self.timeout
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        # connect_async does no network I/O here: paho's own thread connects, and keeps
        # trying when the broker is not there yet, so opening never waits for the broker.
        client.connect_async(self.host, self.port, self.keepalive)
        client.loop_start()
        self._client = client

    # paho's callbacks: they run on paho's network thread.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._set_state(f"refused: {reason}", logging.WARNING)
            return
        self._connected = True
        self._set_state("connected", logging.INFO)
        self._outbox.wake()  # type: ignore[union-attr]

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._set_state("unreachable", logging.WARNING)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connected = False
        if self.qos == 0:
            # paho sends QoS 0 messages once: those not yet written when the connection went
            # are gone (at QoS 1 and 2 it keeps them, and they stay pending).
            with self._lock:
                lost = 0 if self._stopped else len(self._pending)
                self._pending.clear()
            if lost:
                self._outbox.count(failed=lost)  # type: ignore[union-attr]
        # After a refusal paho disconnects too: the refusal stays the state to show.
        if not self._stopped and self._state == "connected":
            self._set_state("reconnecting", logging.WARNING)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if self._stopped:
                return  # counted as abandoned already
            known = mid in self._pending
            if known:
                self._pending.discard(mid)
            else:
                self._early.add(mid)
        if known:
            self._outbox.count(sent=1)  # type: ignore[union-attr]

    def _set_state(self, state: str, level: int) -> None:
        # Logged when the state changes, not on every reconnect attempt.
        if state != self._state:
            where = f"{self.host}:{self.port}"
            log.log(level, "%s: broker %s %s", self.label, where, state)
        self._state = state

    def _ready(self) -> bool:
        # Events wait in the outbox (bounded, counted) rather than in paho's unbounded store
        # while the broker is away or slow to acknowledge.
        return self._connected and len(self._pending) < self.max_inflight

    def _deliver(self, outbox: Outbox) -> None:
        import paho.mqtt.client as mqtt

        client = self._client
        assert client is not None
        while (events := outbox.take(1, ready=self._ready)) is not None:
            event = events[0]
            info = client.publish(self.topic_for(event), event_text(event), self.qos, self.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS and self.qos == 0:
                outbox.settle(failed=1)  # the connection went between take and publish
                continue
            # At QoS 1 and 2 paho keeps a message the connection lost and sends it again after
            # reconnecting: it is pending until the broker acknowledges it.
            with self._lock:
                acked = info.mid in self._early
                if acked:
                    self._early.discard(info.mid)
                else:
                    self._pending.add(info.mid)
            outbox.settle(sent=int(acked))

    def _stop(self, outbox: Outbox) -> int:
        client = self._client
        if client is None:
            return 0
        outbox.wait_for(lambda: not self._pending)  # acknowledgements, until the deadline
        with self._lock:
            self._stopped = True
            unconfirmed = len(self._pending)
        client.disconnect()
        # loop_stop joins paho's thread, which may be inside a connection attempt (up to
        # ``timeout``): the close waits a little, then leaves the daemon thread to end alone.
        stopper = threading.Thread(target=client.loop_stop, name=f"{self.name}-stop", daemon=True)
        stopper.start()
        stopper.join(JOIN_MARGIN)
        self._client = None
        return unconfirmed
