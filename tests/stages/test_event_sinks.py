"""The event outputs (``event_log``, ``webhook``, ``mqtt``) against real receivers: an HTTP
server on a thread and Debian's mosquitto broker, both started here.

The events come from a test source that puts known ``Analytics`` into its frames, so
nothing here depends on the ``zones`` stage.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import build_stage
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec, RunReport
from pipeline.per_source import PerSource
from pipeline.results import Analytics, Event
from pipeline.stage import Sink, Source
from stages.sinks.events.jsonl import EventLogSink
from stages.sinks.events.mqtt import MqttSink, topic_level
from stages.sinks.events.webhook import WebhookSink
from tests.conftest import free_port, wait_until

KINDS = ("enter", "cross", "leave")


def make_event(source: str, index: int, n: int, serial: int | None = None) -> Event:
    """The ``n``-th event of frame ``index``, the ``serial``-th of its source (default:
    ``n``): kinds (and with them zones and optional fields) take turns by ``serial``."""
    kind = KINDS[(n if serial is None else serial) % 3]
    return Event(
        kind, source, index / 25, 1_700_000_000 + index / 25, index,
        # a numpy id, as a tracker's array gives it: must come out as a plain JSON number
        np.int64(index * 10 + n) if index % 2 else index * 10 + n,
        "person", "door" if kind == "cross" else "lot 1/a",
        direction="in" if kind == "cross" else None,
        dwell_s=1.5 if kind == "leave" else None,
    )  # fmt: skip


class EventSource(Source):
    """Yields ``count`` 8x8 frames with an ``Analytics`` holding ``events(index)`` events
    (default: 1 per frame), ``delay`` s apart; before the frame at an index of ``gates`` it
    waits for that gate (``waiting`` tells which it waits for)."""

    produces = (Analytics,)

    def __init__(
        self,
        count: int,
        source_id: str = "cam",
        per_frame: tuple[int, ...] = (1,),
        delay: float = 0.0,
        gates: dict[int, threading.Event] | None = None,
    ) -> None:
        self.count, self.source_id, self.per_frame = count, source_id, per_frame
        self.delay, self.gates = delay, gates or {}
        self.made: list[Event] = []
        self.yielded = 0
        self.waiting: int | None = None

    def frames(self) -> Iterator[Frame]:
        for i in range(self.count):
            if i in self.gates:
                self.waiting = i
                assert self.gates[i].wait(30), f"gate {i} never opened"
                self.waiting = None
            if self.delay:
                time.sleep(self.delay)
            events = [make_event(self.source_id, i, n, len(self.made) + n)
                      for n in range(self.per_frame[i % len(self.per_frame)])]  # fmt: skip
            self.made += events
            frame = Frame(np.zeros((8, 8, 3), np.uint8), i, Fraction(1, 25), i, self.source_id)
            frame.results[self.name] = Analytics(events, {"lot 1/a": 1})
            self.yielded += 1
            yield frame


def run_graph(sink: Sink, *sources: EventSource) -> RunReport:
    names = [f"events{i}" for i in range(len(sources))]
    specs = [NodeSpec(name, source) for name, source in zip(names, sources, strict=True)]
    report = Graph([*specs, NodeSpec("out", sink, names, join=False)]).run()
    assert report.error is None, report.error
    return report


def time_writes(sink: Sink) -> list[float]:
    """Make ``sink`` record how long each of its ``write`` calls took (seconds)."""
    times: list[float] = []
    write = sink.write

    def timed(frame: Frame) -> None:
        start = time.perf_counter()
        write(frame)
        times.append(time.perf_counter() - start)

    sink.write = timed  # type: ignore[method-assign]
    return times


def as_json(events: list[Event]) -> list[dict[str, Any]]:
    """What an event output writes for ``events`` (numpy ids as plain numbers)."""
    return [json.loads(json.dumps(e.to_json(), default=lambda v: v.item())) for e in events]


# --- event_log ---------------------------------------------------------------------------


def test_event_log_writes_one_line_per_event_in_order(tmp_path: Path) -> None:
    source = EventSource(30, per_frame=(0, 1, 3))  # frames without events write nothing
    sink = EventLogSink(str(tmp_path / "log" / "events.jsonl"))
    run_graph(sink, source)
    lines = (tmp_path / "log" / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(source.made) == 40
    assert [json.loads(line) for line in lines] == as_json(source.made)
    by_kind = {e["kind"]: e for e in map(json.loads, lines)}  # None fields are left out
    assert by_kind["cross"]["direction"] == "in" and "dwell_s" not in by_kind["cross"]
    assert by_kind["leave"]["dwell_s"] == 1.5 and "snapshot" not in by_kind["enter"]
    assert sink.status() == {"events": 40}


def test_event_log_lines_are_on_disk_as_soon_as_written(tmp_path: Path) -> None:
    sink = EventLogSink(str(tmp_path / "events.jsonl"))
    sink.open()
    frame = Frame(np.zeros((8, 8, 3), np.uint8), 0, Fraction(1, 25), 0, "cam")
    frame.results["zones"] = Analytics([make_event("cam", 0, 0), make_event("cam", 0, 1)])
    sink.write(frame)
    # read back before the close, as another process (or what is left after a kill) would
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["enter", "cross"]
    sink.close()


def test_event_log_per_source_path(tmp_path: Path) -> None:
    args = {"path": str(tmp_path / "{source}.jsonl")}
    sink = PerSource("event_log", args, lambda filled: build_stage("event_log", filled))
    lobby, door = EventSource(10, "lobby"), EventSource(7, "door 2")
    run_graph(sink, lobby, door)
    for source, name in ((lobby, "lobby"), (door, "door_2")):
        lines = (tmp_path / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == as_json(source.made)


# --- webhook -----------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST.

    Args:
        fail_first: answer this many requests with 500 first.
        sleep: seconds to wait before answering each request (cut short by ``stop``).
    """

    def __init__(self, fail_first: int = 0, sleep: float = 0.0) -> None:
        self.fail_first, self.sleep = fail_first, sleep
        self.requests = 0  # started
        self.answered = 0
        self.bodies: list[Any] = []  # of the requests answered 200
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with owner.lock:
                    owner.requests += 1
                    status = 500 if owner.requests <= owner.fail_first else 200
                if owner.sleep:
                    owner.release.wait(owner.sleep)
                with owner.lock:
                    owner.answered += 1
                    if status == 200:
                        owner.bodies.append(json.loads(body))
                        owner.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True  # a sleeping handler must not hold up stop()
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def test_webhook_posts_every_event_with_its_headers(receiver: Any) -> None:
    hook = receiver()
    sink = WebhookSink(hook.url, headers={"Authorization": "Bearer t0ken"})
    source = EventSource(40, per_frame=(1, 0, 2))
    run_graph(sink, source)  # the close delivers what is still queued
    assert hook.bodies == as_json(source.made)
    assert all(h["Authorization"] == "Bearer t0ken" for h in hook.headers)
    assert all(h["Content-Type"] == "application/json" for h in hook.headers)
    status = sink.status()
    assert status["sent"] == len(source.made) and status["connection"] == "ok"
    assert status["failed"] == status["dropped"] == status["queued"] == status["abandoned"] == 0


def test_webhook_batches_are_json_arrays_in_order(receiver: Any) -> None:
    hook = receiver()
    sink = WebhookSink(hook.url, batch=8)
    source = EventSource(50, per_frame=(3,))
    run_graph(sink, source)
    assert all(isinstance(body, list) and 1 <= len(body) <= 8 for body in hook.bodies)
    assert [e for body in hook.bodies for e in body] == as_json(source.made)
    assert sink.status()["sent"] == 150


def test_webhook_batch_wait_gathers_events_into_fewer_requests(receiver: Any) -> None:
    hook = receiver()
    sink = WebhookSink(hook.url, batch=10, batch_wait=1.0)
    source = EventSource(30)  # all queued well within the first request's second of waiting
    run_graph(sink, source)
    assert [e for body in hook.bodies for e in body] == as_json(source.made)
    assert hook.requests <= 4 and max(len(body) for body in hook.bodies) == 10


def test_webhook_tries_again_after_server_errors(receiver: Any) -> None:
    hook = receiver(fail_first=2)  # 500, 500, then 200
    sink = WebhookSink(hook.url, tries=3, backoff=0.01)
    source = EventSource(1)
    run_graph(sink, source)
    assert hook.requests == 3
    assert hook.bodies == as_json(source.made)
    assert sink.status()["sent"] == 1 and sink.status()["failed"] == 0


def test_webhook_out_of_tries_counts_failures_and_warns_once(
    receiver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hook = receiver(fail_first=10**6)
    sink = WebhookSink(hook.url, tries=2, backoff=0.0, drain=5.0)
    with caplog.at_level(logging.WARNING, "framegraph"):
        run_graph(sink, EventSource(5))
    assert hook.requests == 10 and hook.bodies == []
    status = sink.status()
    assert status["failed"] == 5 and status["sent"] == 0 and status["connection"] == "failing"
    warnings = [r.getMessage() for r in caplog.records if "did not take" in r.getMessage()]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0]


def test_webhook_to_nothing_listening_neither_blocks_nor_fails() -> None:
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", tries=2, backoff=0.01, drain=0.5)
    report = run_graph(sink, EventSource(20))
    assert report.metrics.frames_out == 20
    status = sink.status()
    assert status["sent"] == 0 and status["connection"] == "failing"
    assert status["failed"] + status["abandoned"] == 20


def test_slow_webhook_does_not_slow_the_graph(
    receiver: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver that takes 5 s per request: the graph runs its 400 frames at its own pace,
    the queue keeps the newest events and counts the rest, the close gives up in time."""
    hook = receiver(sleep=5.0)
    sink = WebhookSink(hook.url, timeout=10.0, queue=16, drain=0.3)
    writes = time_writes(sink)
    source = EventSource(400)
    with caplog.at_level(logging.WARNING, "framegraph"):
        report = run_graph(sink, source)
    # The whole run, close included, ended while the receiver had taken a request or two
    # (it takes well under a second: the receiver answers none): nothing waited for it.
    assert report.metrics.frames_out == 400 and source.yielded == 400
    assert hook.requests <= 2 and hook.answered <= 1
    assert len(writes) == 400 and max(writes) < 0.25  # 20 x below one reply's 5 s
    status = sink.status()
    assert status["sent"] <= 1 and status["dropped"] >= 400 - 16 - 2
    assert status["abandoned"] >= 1 and status["queued"] == 0
    assert status["dropped"] + status["abandoned"] + status["failed"] == 400
    drops = [r for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(drops) == 1


def test_event_outputs_need_an_analytics_stage_before_them() -> None:
    class Plain(Source):
        def frames(self) -> Iterator[Frame]:
            yield from ()

    for sink in (EventLogSink("-"), WebhookSink("http://127.0.0.1:9/"), MqttSink("localhost")):
        with pytest.raises(ConfigError, match="needs Analytics results"):
            Graph([NodeSpec("src", Plain()), NodeSpec("out", sink, ["src"])])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"url": "ftp://example.com/hook"}, "must start with http:// or https://"),
        ({"url": "example.com/hook"}, "must start with http:// or https://"),
        ({"url": "http:///hook"}, "names no host"),
        ({"url": "http://example.com:99999/"}, "not a valid URL"),
        ({"url": "http://example.com/", "tries": 0}, "tries must be at least 1"),
        ({"url": "http://example.com/", "queue": 0}, "queue must be at least 1"),
        ({"url": "http://example.com/", "headers": {"X-A": "b\r\nX-B: c"}}, "one line"),
    ],
)
def test_webhook_bad_config_is_one_config_error(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build_stage("webhook", args, "stages[2] (hook)")
    assert "\n" not in str(caught.value)


# --- mqtt --------------------------------------------------------------------------------

MOSQUITTO = "/usr/sbin/mosquitto"
needs_mosquitto = pytest.mark.skipif(
    not os.access(MOSQUITTO, os.X_OK), reason="Debian's mosquitto is not installed"
)


class Broker:
    """Debian's mosquitto on 127.0.0.1:``port``, startable again on the same port."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.port = free_port()
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "log_dest none",
            "user root",
        ]  # fmt: skip  (root: keep reading this test's files)
        if users:
            passwords = folder / "passwords"
            for i, (name, password) in enumerate(users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(["mosquitto_passwd", *create, "-b", str(passwords), name, password],
                               check=True, capture_output=True)  # fmt: skip
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [MOSQUITTO, "-c", str(self.config)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not wait_until(self._listening, 10):
            self.stop()
            pytest.fail("mosquitto did not start listening")

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"mosquitto exited: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    made: list[Broker] = []

    def make(users: dict[str, str] | None = None) -> Broker:
        folder = tmp_path / f"broker{len(made)}"
        folder.mkdir()
        made.append(Broker(folder, users))
        made[-1].start()
        return made[-1]

    yield make
    for b in made:
        b.stop()


class Subscriber:
    """A paho client that subscribes to ``pattern`` (again after each reconnect) and keeps
    what arrives as (topic, JSON payload)."""

    def __init__(
        self, port: int, pattern: str = "fg/#", login: tuple[str, str] | None = None
    ) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, Any]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if login is not None:
            self.client.username_pw_set(*login)
        self.client.reconnect_delay_set(1, 1)

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            client.subscribe(pattern, qos=1)

        def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
            self.subscribed.set()

        def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            self.subscribed.clear()

        def on_message(client: Any, userdata: Any, message: Any) -> None:
            self.messages.append((message.topic, json.loads(message.payload)))

        self.client.on_connect, self.client.on_subscribe = on_connect, on_subscribe
        self.client.on_disconnect, self.client.on_message = on_disconnect, on_message
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the test's subscriber could not subscribe"

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def expected_messages(events: list[Event]) -> list[tuple[str, Any]]:
    return [(f"fg/{e.source}/{e.kind}/{topic_level(e.where)}", payload)
            for e, payload in zip(events, as_json(events), strict=True)]  # fmt: skip


@needs_mosquitto
@pytest.mark.parametrize("qos", [1, 0, 2])
def test_mqtt_events_arrive_at_a_real_broker(broker: Any, qos: int) -> None:
    mosquitto = broker()
    subscriber = Subscriber(mosquitto.port)
    try:
        topic = "fg/{source}/{kind}/{where}"
        sink = MqttSink("127.0.0.1", topic=topic, port=mosquitto.port, qos=qos)  # type: ignore[arg-type]
        source = EventSource(60, per_frame=(1, 0, 2))
        run_graph(sink, source)  # the close waits (up to drain) for the broker's acks
        want = expected_messages(source.made)
        topics = {"fg/cam/cross/door", "fg/cam/enter/lot 1_a", "fg/cam/leave/lot 1_a"}
        assert {topic for topic, _ in want} == topics  # the zone's "/" is not a level
        assert wait_until(lambda: len(subscriber.messages) >= len(want), 10)
        assert subscriber.messages == want  # one publisher, one subscriber: in order
        status = sink.status()
        assert status["sent"] == len(want) and status["connection"] == "connected"
        assert status["dropped"] == status["abandoned"] == status["failed"] == 0
    finally:
        subscriber.stop()


@needs_mosquitto
@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="no mosquitto_passwd")
def test_mqtt_username_and_password(broker: Any) -> None:
    mosquitto = broker(users={"cam": "s3cret", "watcher": "w"})
    subscriber = Subscriber(mosquitto.port, login=("watcher", "w"))
    try:
        good = MqttSink("127.0.0.1", "fg/{source}/{kind}/{where}", mosquitto.port,
                        username="cam", password="s3cret")  # fmt: skip
        source = EventSource(5)
        run_graph(good, source)
        assert wait_until(lambda: len(subscriber.messages) >= 5, 10)
        assert subscriber.messages == expected_messages(source.made)
        # a wrong password: refused, counted, and the run ends normally
        bad = MqttSink("127.0.0.1", "fg/{source}/{kind}/{where}", mosquitto.port,
                       username="cam", password="nope", drain=1.0)  # fmt: skip
        run_graph(bad, EventSource(5))
        status = bad.status()
        assert status["connection"].startswith("refused") and status["sent"] == 0
        assert status["abandoned"] == 5
    finally:
        subscriber.stop()


@needs_mosquitto
def test_mqtt_broker_stopped_mid_run(broker: Any) -> None:
    """The broker goes away after 20 events and comes back after 50 more: the graph keeps
    its pace meanwhile, the events queued while it was away are published once it is back,
    and the events after that arrive at a subscriber."""
    mosquitto = broker()
    subscriber = Subscriber(mosquitto.port)
    gates = {20: threading.Event(), 70: threading.Event()}
    source = EventSource(100, delay=0.005, gates=gates)
    sink = MqttSink("127.0.0.1", topic="fg/{source}/{kind}/{where}", port=mosquitto.port)
    writes = time_writes(sink)
    reports: list[RunReport] = []
    runner = threading.Thread(target=lambda: reports.append(run_graph(sink, source)))
    runner.start()
    try:
        assert wait_until(lambda: source.waiting == 20 and len(subscriber.messages) == 20, 10)
        mosquitto.stop()
        assert wait_until(lambda: sink.status()["connection"] != "connected", 10)
        gates[20].set()  # 50 events while the broker is away
        assert wait_until(lambda: source.waiting == 70, 10)
        assert max(writes) < 0.25 and len(writes) == 70
        assert sink.status()["queued"] == 50 and sink.status()["sent"] == 20
        mosquitto.start()
        assert wait_until(lambda: sink.status()["connection"] == "connected", 20)
        assert wait_until(subscriber.subscribed.is_set, 20)
        assert wait_until(lambda: sink.status()["sent"] == 70, 10)  # the queued 50
        gates[70].set()
        runner.join(30)
        assert not runner.is_alive() and reports
        after = expected_messages(source.made[70:])
        assert wait_until(lambda: subscriber.messages[-30:] == after, 10)
        status = sink.status()
        assert status["sent"] == 100 and status["dropped"] == status["abandoned"] == 0
    finally:
        for gate in gates.values():
            gate.set()
        runner.join(30)
        subscriber.stop()


@needs_mosquitto
def test_mqtt_without_a_broker_neither_blocks_nor_fails() -> None:
    sink = MqttSink("127.0.0.1", port=free_port(), drain=0.3)
    writes = time_writes(sink)
    report = run_graph(sink, EventSource(50))
    assert report.metrics.frames_out == 50 and max(writes) < 0.25
    status = sink.status()
    assert status["connection"] in ("connecting", "unreachable")
    assert status["sent"] == 0 and status["abandoned"] == 50


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"host": "h", "topic": "fg/+/x"}, "no \\+ or #"),
        ({"host": "h", "topic": "fg/#"}, "no \\+ or #"),
        ({"host": "h", "topic": "fg/{camera}"}, "unknown placeholder"),
        ({"host": "h", "topic": "fg/{where!r}"}, "unknown placeholder"),
        ({"host": "h", "topic": "fg/{source"}, "mqtt: topic"),
        ({"host": "h", "topic": "$SYS/x"}, "starting with \\$"),
        ({"host": "mqtt://h"}, "host must be a host name"),
        ({"host": "h", "port": 0}, "port must be 1 to 65535"),
        ({"host": "h", "qos": 3}, "qos"),
        ({"host": "h", "password": "p"}, "needs a username"),
    ],
)
def test_mqtt_bad_config_is_one_config_error(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build_stage("mqtt", args, "stages[2] (bus)")
    assert "\n" not in str(caught.value)


def test_a_topic_naming_the_source_keeps_one_connection_for_every_source() -> None:
    from pipeline.config import build_graph, parse_config

    graph = build_graph(parse_config({"stages": [
        {"name": "cams", "kind": "sources", "sources": {"a": "synthetic", "b": "synthetic"}},
        {"name": "motion", "kind": "motion"},
        {"name": "track", "kind": "track", "detections": "motion"},
        {"name": "zones", "kind": "zones", "tracks": "motion",
         "lines": {"door": [[0.5, 0.0], [0.5, 1.0]]}, "coordinates": "relative"},
        {"name": "bus", "kind": "mqtt", "host": "h", "topic": "fg/{source}/{kind}",
         "inputs": ["zones"]},
        {"name": "log", "kind": "event_log", "path": "out/{source}.jsonl", "inputs": ["zones"]},
    ]}))  # fmt: skip
    assert isinstance(graph.nodes["bus"].stage, MqttSink)  # fills {source} per event itself
    assert type(graph.nodes["log"].stage).__name__ == "PerSource"  # a file per source
