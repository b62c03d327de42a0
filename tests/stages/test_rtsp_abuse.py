"""The RTSP server against clients that hold on to what they get: connections that
never speak or drip a request a byte at a time (slowloris), too many connections
from one address, and sessions whose player vanished without a word. Real
players (FFmpeg's client through PyAV, GStreamer's rtspsrc) must still get the
stream at the source's frame rate. Everything runs on loopback; the attacker's
connections come from 127.0.0.2 and up (Linux routes all of 127/8 to lo).
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from stages.sinks.rtsp.server import Limits, RtspServer
from stages.sinks.rtsp_server import RtspServerSink
from stages.sources.synthetic import SyntheticSource
from tests.stages.rtsp_clients import (
    HOST,
    GstPlayer,
    Player,
    RawClient,
    Slowloris,
    free_port,
    gstreamer_player_available,
    wait_until,
)
from tests.stages.test_rtsp import Served

FPS = 30
ATTACKERS = [f"127.0.0.{i}" for i in range(2, 32)]  # 30 addresses
OPTIONS = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n"

needs_gstreamer_player = pytest.mark.skipif(
    not gstreamer_player_available(),
    reason="needs Debian's python3-gi with gstreamer1.0-plugins-good (rtspsrc)",
)


@pytest.fixture
def server() -> Iterator[Callable[..., RtspServer]]:
    """``server(**limits)``: an RtspServer on a free loopback port, no mounts."""
    started: list[RtspServer] = []

    def start(**limits: float) -> RtspServer:
        running = RtspServer(HOST, 0, limits=Limits(**limits))  # type: ignore[arg-type]
        running.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """``serve(**sink_options)``: a live 320x240 synthetic source at 30 fps served
    on a free port; stopped at teardown."""
    running: list[Served] = []

    def start(**options: object) -> Served:
        source = SyntheticSource(width=320, height=240, fps=FPS, frames=None, live=True)
        sink = RtspServerSink(f"rtsp://{HOST}:{free_port()}/live", **options)  # type: ignore[arg-type]
        served = Served(source, [sink])
        running.append(served)
        return served

    yield start
    for served in running:
        served.stop()


def connect(port: int, source: str = HOST) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect((HOST, port))
    return sock


def answer(sock: socket.socket, request: bytes = OPTIONS) -> bytes:
    """Send ``request`` and read one response header."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def hung_up(sock: socket.socket, timeout: float) -> bool:
    """True once the server closed ``sock`` (EOF or reset) within ``timeout`` s."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


def senders() -> int:
    return sum(t.name == "rtsp-client" for t in threading.enumerate())


# ---- caps ---------------------------------------------------------------------------------


def test_the_per_address_cap_refuses_one_connection_too_many() -> None:
    sink = RtspServerSink(f"rtsp://{HOST}:{free_port()}/live", max_connections_per_address=3)
    sink.open()
    sockets: list[socket.socket] = []
    try:
        server = sink.server
        assert server is not None and server.limits.max_per_address == 3
        sockets += [connect(server.port) for _ in range(3)]
        for sock in sockets:
            assert answer(sock).startswith(b"RTSP/1.0 200 OK")
        sockets.append(extra := connect(server.port))  # the 4th from 127.0.0.1
        assert hung_up(extra, 10), "a 4th connection from one address was served"
        sockets.append(other := connect(server.port, "127.0.0.2"))
        assert answer(other).startswith(b"RTSP/1.0 200 OK")  # another address is not held up
        assert answer(sockets[0]).startswith(b"RTSP/1.0 200 OK")  # nor are the first three
        sockets[0].close()  # a slot frees up...
        assert wait_until(lambda: server.stats()["connections"] == 3, 5)
        sockets.append(again := connect(server.port))
        assert answer(again).startswith(b"RTSP/1.0 200 OK")  # ...and is taken again
        assert server.stats()["refused"] == 1
    finally:
        for sock in sockets:
            sock.close()
        sink.close()


def test_the_global_cap_refuses_connections_from_any_address(
    server: Callable[..., RtspServer],
) -> None:
    running = server(max_connections=4)
    held = [connect(running.port, f"127.0.0.{i}") for i in range(2, 6)]
    try:
        for sock in held:
            assert answer(sock).startswith(b"RTSP/1.0 200 OK")
        extra = connect(running.port, "127.0.0.9")
        held.append(extra)
        assert hung_up(extra, 10)
        assert running.stats() == {"connections": 4, "refused": 1, "expired": 0}
    finally:
        for sock in held:
            sock.close()


def test_accepted_sockets_have_tcp_keepalive(server: Callable[..., RtspServer]) -> None:
    running = server(session_timeout=40)
    client = connect(running.port)
    try:
        assert wait_until(lambda: running.stats()["connections"] == 1, 5)
        (accepted,) = list(running._connections)
        assert accepted.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):  # probes start after a session timeout of silence
            assert accepted.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 40
    finally:
        client.close()


# ---- deadlines ----------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_after_the_first_byte_deadline(
    server: Callable[..., RtspServer],
) -> None:
    running = server(first_byte_timeout=1.0, request_timeout=3.0, session_timeout=30)
    opened = time.monotonic()
    silent = connect(running.port)
    talking = connect(running.port)
    try:
        assert answer(talking).startswith(b"RTSP/1.0 200 OK")
        assert hung_up(silent, 20), "a silent connection was kept"
        waited = time.monotonic() - opened
        print(f"silent connection closed after {waited:.2f} s (deadline 1.0 s)")
        assert waited >= 1.0
        # a client that asked in time may wait between requests (as long as a session lives)
        assert answer(talking).startswith(b"RTSP/1.0 200 OK")
        assert running.stats()["expired"] == 1
    finally:
        silent.close()
        talking.close()


def test_a_half_sent_request_is_closed_after_the_request_deadline(
    server: Callable[..., RtspServer],
) -> None:
    running = server(first_byte_timeout=1.0, request_timeout=2.5)
    # sent in two halves within the deadline: answered
    prompt = connect(running.port)
    prompt.sendall(OPTIONS[:10])
    time.sleep(1.2)  # past the first-byte deadline, well within the request's
    assert answer(prompt, OPTIONS[10:]).startswith(b"RTSP/1.0 200 OK")
    prompt.close()
    # dripped a byte every 0.3 s: the request would take 10 s, the deadline is 2.5 s
    drip = connect(running.port)
    started, sent, closed_at = time.monotonic(), 0, None
    try:
        drip.settimeout(0.3)
        while sent < len(OPTIONS) - 1 and closed_at is None:
            try:
                drip.send(OPTIONS[sent : sent + 1])
                sent += 1
                if drip.recv(4096) == b"":
                    closed_at = time.monotonic()
            except TimeoutError:
                continue
            except ConnectionError:
                closed_at = time.monotonic()
    finally:
        drip.close()
    assert closed_at is not None, "the dripped request was never cut off"
    print(f"dripped request closed after {closed_at - started:.2f} s and {sent} bytes")
    assert closed_at - started >= 2.5 and sent >= 5  # it outlived the first-byte deadline
    fresh = connect(running.port)
    assert answer(fresh).startswith(b"RTSP/1.0 200 OK")
    fresh.close()


# ---- sessions -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_session_without_keep_alives_is_torn_down_after_the_timeout(
    serve: Callable[..., Served], transport: str
) -> None:
    served = serve(session_timeout=2)
    before = senders()
    raw = RawClient(served.url, timeout=10)
    try:
        asked = time.monotonic()  # the session's clock starts at SETUP, after this
        raw.play(transport)
        assert raw.setup is not None and raw.setup.header("Session") == f"{raw.session};timeout=2"
        if transport == "udp":
            assert raw.udp_packets(1.5) > 0  # from the next keyframe on (at most 1 s)
        else:
            raw.next_packet()
        assert served.sink.status()["clients"] == 1
        # From here on the client says nothing: no keep-alive, no RTCP. It keeps its
        # sockets open (a vanished player's half-open connection looks the same).
        if transport == "tcp":
            raw.read_until_closed(30)  # reads the media (no stall) until the server hangs up
        else:
            assert hung_up(raw.sock, 30), "the session's connection was kept"
        gone = time.monotonic()
        print(f"{transport} session torn down {gone - asked:.2f} s after DESCRIBE (timeout 2 s)")
        assert gone - asked >= 2.0
        assert wait_until(lambda: served.sink.status()["clients"] == 0, 5)
        assert wait_until(lambda: senders() == before, 5), "the session's sender kept running"
        if transport == "udp":
            raw.udp_packets(0.2)  # what was already on its way
            assert raw.udp_packets(1.0) == 0, "media still sent to a torn-down session"
    finally:
        raw.close()


def test_keep_alives_and_rtcp_keep_sessions_alive(serve: Callable[..., Served]) -> None:
    served = serve(session_timeout=2)
    by_request, by_rtcp = RawClient(served.url, timeout=10), RawClient(served.url, timeout=10)
    by_channel = RawClient(served.url, timeout=10)  # RTCP on interleaved channel 1
    # FFmpeg sends its own GET_PARAMETER every timeout / 2 (over TCP, the answers
    # travel between media packets) and RTCP receiver reports over UDP
    ffmpegs = [Player(served.url, transport, seconds=7) for transport in ("udp", "tcp")]
    try:
        by_request.play("udp")
        by_rtcp.play("udp")
        by_channel.play("tcp")
        for ffmpeg in ffmpegs:
            ffmpeg.start()
        until = time.monotonic() + 7  # three and a half session timeouts
        while time.monotonic() < until:
            assert by_request.keep_alive().status == 200
            by_rtcp.send_rtcp()
            by_channel.send_rtcp()
            by_channel.sock.settimeout(0.2)  # keep reading its media, or it would stall
            by_channel.read_until_closed(0.5)
            by_channel.packets.clear()
        assert served.sink.status()["clients"] == 5
        assert by_request.udp_packets(0.5) > 0 and by_rtcp.udp_packets(0.5) > 0
        by_channel.sock.settimeout(5)
        by_channel.next_packet()
        for ffmpeg in ffmpegs:
            ffmpeg.join(30)
    finally:
        for raw in (by_request, by_rtcp, by_channel):
            raw.close()
        for ffmpeg in ffmpegs:
            ffmpeg.stop()
    for ffmpeg in ffmpegs:
        ffmpeg.check()
        print(f"ffmpeg over {ffmpeg.transport}, timeout=2: {ffmpeg.rate(after=1):.1f} fps")
        assert ffmpeg.received[-1].arrival - ffmpeg.received[0].arrival >= 7
        assert ffmpeg.delivered() >= 0.95


# ---- slowloris ------------------------------------------------------------------------------


@pytest.mark.slow
@needs_gstreamer_player
def test_players_get_the_full_frame_rate_while_600_connections_are_held(
    serve: Callable[..., Served],
) -> None:
    served = serve()  # the defaults: 32 per address, 5 s to the first byte, 10 s a request
    server = served.sink.server
    assert server is not None
    threads_before = threading.active_count()
    attacker = Slowloris(server.port, idle=500, drip=100, interval=2.0, addresses=ATTACKERS)
    seconds = 10.0
    held: list[int] = []
    try:
        assert wait_until(lambda: attacker.last.get("idle", 0) == 500, 30), attacker.last
        assert wait_until(lambda: attacker.last.get("drip", 0) == 100, 10), attacker.last
        assert wait_until(lambda: server.stats()["connections"] >= 600, 10), server.stats()
        # idle connections cost no thread (the reader of the attacker's output is one)
        assert threading.active_count() <= threads_before + 2
        before = dict(attacker.last)
        ffmpeg = Player(served.url, "tcp", seconds=seconds)
        gstreamer = GstPlayer(served.url, "tcp", seconds=seconds)
        ffmpeg.start()
        gstreamer.start()
        while ffmpeg.is_alive() and len(held) < 200:
            held.append(server.stats()["connections"])
            time.sleep(0.25)
        ffmpeg.join(60)
        gstreamer.join(60)
        after = dict(attacker.last)
    finally:
        stderr = attacker.stop()
    assert not ffmpeg.is_alive()
    print(
        f"attack: {min(held)}-{max(held)} connections held while playing (median"
        f" {statistics.median(held)}); the server closed"
        f" {after['closed'] - before['closed']} by their deadlines and refused"
        f" {after['refused']} over the caps meanwhile"
    )
    ffmpeg_rate, gstreamer_rate = ffmpeg.rate(after=1), gstreamer.rate(after=1)
    print(
        f"ffmpeg: {ffmpeg_rate:.1f} fps, first picture {ffmpeg.first_frame_after:.2f} s after"
        f" opening; gstreamer: {gstreamer_rate:.1f} fps, first frame after"
        f" {gstreamer.first_frame_after:.2f} s, largest gap {gstreamer.largest_gap():.2f} s"
    )
    # all the time but for a moment after each wave of deadlines (the idle ones were
    # opened together, so they are closed together before the attacker reconnects)
    assert statistics.median(held) >= 0.95 * 600, (held, stderr[-500:])
    assert after["closed"] > before["closed"]  # the deadlines worked through the attack
    ffmpeg.check()
    assert ffmpeg.delivered() >= 0.95
    assert ffmpeg_rate == pytest.approx(FPS, rel=0.1)
    assert not gstreamer.errors and gstreamer.arrivals, gstreamer.errors
    assert len(gstreamer.arrivals) >= 0.9 * seconds * FPS
    assert gstreamer_rate == pytest.approx(FPS, rel=0.1)
