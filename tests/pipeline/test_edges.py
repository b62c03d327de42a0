"""Edge: bounded queue, flow-control policies, end of stream, close."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
import pytest

from pipeline.edges import Edge, EdgeClosed, Policy
from pipeline.frame import EndOfStream, Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.stage import Source
from tests.conftest import wait_until


def drain(edge: Edge) -> list:
    """Every queued payload, without blocking."""
    out = []
    while (item := edge.get(timeout=0)) is not None:
        out.append(item[1])
    return out


def indices(payloads: list) -> list:
    return [p.index if not isinstance(p, EndOfStream) else "EOS" for p in payloads]


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        Edge("e", capacity=0)


def test_fifo_order_and_sender_kept(make_frame):
    edge = Edge("e", capacity=4)
    for i in range(3):
        assert edge.put("src", make_frame(i)) is True
    assert edge.depth == 3
    items = [edge.get(timeout=0) for _ in range(3)]
    assert [sender for sender, _ in items] == ["src"] * 3
    assert [frame.index for _, frame in items] == [0, 1, 2]
    assert edge.depth == 0
    assert edge.max_depth == 3


def test_get_times_out_with_none():
    edge = Edge("e")
    t0 = time.monotonic()
    assert edge.get(timeout=0.05) is None
    waited = time.monotonic() - t0
    assert 0.04 <= waited < 10  # waited its timeout; the upper bound only catches a hang


def test_get_waits_for_a_put(make_frame):
    edge = Edge("e")
    timer = threading.Timer(0.05, edge.put, args=("src", make_frame(7)))
    timer.start()
    item = edge.get(timeout=10.0)
    timer.join()
    assert item is not None and item[1].index == 7


def test_block_policy_blocks_producer_and_loses_nothing(make_frame):
    edge = Edge("e", capacity=2, policy=Policy.BLOCK)
    n = 20
    put_returned: list[bool] = []

    def produce():
        for i in range(n):
            put_returned.append(edge.put("src", make_frame(i)))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    # The producer fills the edge and then waits for room, however long we look.
    assert wait_until(lambda: len(put_returned) == 2, 10)
    time.sleep(0.05)
    assert producer.is_alive()
    assert edge.depth == 2
    assert len(put_returned) == 2

    received = []
    while len(received) < n:
        item = edge.get(timeout=10.0)
        assert item is not None, "producer stalled"
        received.append(item[1].index)
        assert edge.depth <= 2
    producer.join(10.0)
    assert not producer.is_alive()
    assert received == list(range(n))
    assert all(put_returned)
    assert edge.drops == 0
    assert edge.max_depth == 2


def test_drop_oldest_drops_oldest_frames_and_counts(make_frame):
    edge = Edge("e", capacity=3, policy=Policy.DROP_OLDEST)
    for i in range(7):
        assert edge.put("src", make_frame(i)) is True  # never blocks
    assert edge.depth == 3
    assert edge.drops == 4
    assert indices(drain(edge)) == [4, 5, 6]
    assert edge.snapshot()["drops"] == 4


def test_latest_keeps_only_newest_and_counts(make_frame):
    edge = Edge("e", capacity=8, policy=Policy.LATEST)
    assert edge.capacity == 1
    for i in range(5):
        assert edge.put("src", make_frame(i)) is True
    assert edge.depth == 1
    assert edge.drops == 4
    assert indices(drain(edge)) == [4]
    snap = edge.snapshot()
    assert snap == {"depth": 0, "max_depth": 1, "capacity": 1, "policy": "latest", "drops": 4,
                    "bytes": 0, "peak_bytes": 8 * 8 * 3, "max_bytes": None}  # fmt: skip


def test_latest_given_as_string_also_keeps_only_newest(make_frame):
    # Edge converts the policy with Policy(policy), so "latest" must behave like
    # Policy.LATEST (capacity 1), not like drop_oldest with the given capacity.
    edge = Edge("e", capacity=8, policy="latest")  # type: ignore[arg-type]
    for i in range(5):
        edge.put("src", make_frame(i))
    assert edge.policy is Policy.LATEST
    assert indices(drain(edge)) == [4]
    assert edge.drops == 4


@pytest.mark.parametrize("policy", [Policy.LATEST, Policy.DROP_OLDEST])
def test_end_of_stream_is_never_dropped(make_frame, policy):
    edge = Edge("e", capacity=1, policy=policy)
    edge.put("a", make_frame(0))
    edge.put("a", EndOfStream("a"))
    edge.put("b", make_frame(1))  # full: drops frame 0, not the EOS
    edge.put("b", make_frame(2))  # drops frame 1
    edge.put("b", EndOfStream("b"))
    assert edge.drops == 2
    assert edge.depth == 1
    assert indices(drain(edge)) == ["EOS", 2, "EOS"]


def test_end_of_stream_does_not_block_or_count_against_capacity(make_frame):
    edge = Edge("e", capacity=1, policy=Policy.BLOCK)
    edge.put("src", make_frame(0))
    returned: list[bool] = []  # put on a thread: if it blocked, the test fails, not hangs
    putter = threading.Thread(
        target=lambda: returned.append(edge.put("src", EndOfStream("src"))), daemon=True
    )
    putter.start()
    putter.join(10.0)
    assert returned == [True]  # full, but control items pass without waiting for room
    assert edge.depth == 1
    sender, payload = edge.get(timeout=0)
    assert payload.index == 0
    sender, payload = edge.get(timeout=0)
    assert payload == EndOfStream("src") and sender == "src"


def test_close_wakes_blocked_get():
    edge = Edge("e")
    raised = threading.Event()

    def consume():
        try:
            edge.get()  # no timeout: waits until something happens
        except EdgeClosed:
            raised.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    time.sleep(0.05)
    assert consumer.is_alive()
    edge.close()
    consumer.join(10.0)
    assert not consumer.is_alive()
    assert raised.is_set()


def test_close_wakes_blocked_put_which_returns_false(make_frame):
    edge = Edge("e", capacity=1, policy=Policy.BLOCK)
    edge.put("src", make_frame(0))
    result: list[bool] = []
    producer = threading.Thread(
        target=lambda: result.append(edge.put("src", make_frame(1))), daemon=True
    )
    producer.start()
    time.sleep(0.05)
    assert producer.is_alive() and result == []
    edge.close()
    producer.join(10.0)
    assert not producer.is_alive()
    assert result == [False]
    assert edge.depth == 1  # the refused frame was not queued


def test_closed_edge_refuses_puts_and_get_raises(make_frame):
    edge = Edge("e", policy=Policy.DROP_OLDEST)
    edge.put("src", make_frame(0))
    edge.close()
    assert edge.put("src", make_frame(1)) is False
    assert edge.put("src", EndOfStream("src")) is False
    with pytest.raises(EdgeClosed):
        edge.get(timeout=0)


def test_multiple_producers_lose_nothing_under_block(make_frame):
    edge = Edge("e", capacity=2, policy=Policy.BLOCK)

    def produce(name: str):
        for i in range(30):
            edge.put(name, make_frame(i, source_id=name))
        edge.put(name, EndOfStream(name))

    producers = [threading.Thread(target=produce, args=(n,), daemon=True) for n in "ab"]
    for p in producers:
        p.start()
    got: dict[str, list[int]] = {"a": [], "b": []}
    ended = set()
    while len(ended) < 2:
        item = edge.get(timeout=10.0)
        assert item is not None
        sender, payload = item
        if isinstance(payload, EndOfStream):
            ended.add(sender)
        else:
            assert payload.source_id == sender
            got[sender].append(payload.index)
    assert got == {"a": list(range(30)), "b": list(range(30))}
    assert edge.max_depth <= 2


# ---- byte budget -------------------------------------------------------------------------


def big_frame(index: int, side: int = 600) -> Frame:
    """A frame whose image is ``side`` x ``side`` BGR (1.08 MB at 600; np.zeros touches
    no memory until written, so many of them cost little)."""
    return Frame(np.zeros((side, side, 3), np.uint8), index, Fraction(1, 25), index, "cam")


def test_max_bytes_must_be_positive():
    with pytest.raises(ValueError, match="max_bytes"):
        Edge("e", max_bytes=0)


def test_a_producer_of_big_frames_is_held_back_by_bytes_not_by_count():
    size = big_frame(0).image.nbytes
    edge = Edge("e", capacity=100, policy=Policy.BLOCK, max_bytes=int(2.5 * size))
    n = 10
    put_returned: list[bool] = []
    producer = threading.Thread(
        target=lambda: [put_returned.append(edge.put("src", big_frame(i))) for i in range(n)],
        daemon=True,
    )
    producer.start()
    # Two frames fit the budget, a third would not: the producer waits with 98 frames of
    # capacity left.
    assert wait_until(lambda: len(put_returned) == 2, 10)
    time.sleep(0.05)
    assert producer.is_alive() and len(put_returned) == 2
    assert (edge.depth, edge.bytes) == (2, 2 * size)

    first = edge.get(timeout=10)
    assert first is not None and first[1].index == 0
    assert wait_until(lambda: len(put_returned) == 3, 10)  # one out, one more in
    assert edge.depth == 2

    received = [0]
    while len(received) < n:
        item = edge.get(timeout=10)
        assert item is not None, "the producer stopped putting"
        received.append(item[1].index)
    producer.join(10)
    assert put_returned == [True] * n and received == list(range(n))
    assert edge.max_depth == 2 and edge.peak_bytes == 2 * size  # the budget, never the count
    assert edge.drops == 0 and edge.bytes == 0


def test_a_frame_bigger_than_the_budget_still_passes_one_at_a_time(make_frame):
    edge = Edge("e", capacity=8, policy=Policy.BLOCK, max_bytes=10)  # frames are 192 bytes
    done = threading.Event()

    def produce():
        for i in range(5):
            edge.put("src", make_frame(i))
        edge.put("src", EndOfStream("src"))
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    got = []
    while not got or got[-1] != "EOS":
        item = edge.get(timeout=10)
        assert item is not None, "deadlocked on a frame over the budget"
        got.append(indices([item[1]])[0])
    assert got == [0, 1, 2, 3, 4, "EOS"] and done.wait(10)
    assert edge.max_depth == 1


def test_drop_oldest_drops_to_fit_the_byte_budget():
    size = big_frame(0).image.nbytes
    edge = Edge("e", capacity=100, policy=Policy.DROP_OLDEST, max_bytes=int(2.5 * size))
    for i in range(5):
        assert edge.put("src", big_frame(i)) is True  # never waits
    assert edge.depth == 2 and edge.drops == 3
    assert indices(drain(edge)) == [3, 4]
    assert edge.snapshot()["bytes"] == 0 and edge.snapshot()["max_bytes"] == int(2.5 * size)


def test_latest_holds_its_one_frame_whatever_the_budget(make_frame):
    edge = Edge("e", capacity=8, policy=Policy.LATEST, max_bytes=1)
    for i in range(3):
        assert edge.put("src", make_frame(i)) is True
    assert indices(drain(edge)) == [2] and edge.drops == 2


def test_a_graph_source_of_huge_frames_waits_on_the_byte_budget(make_sink, run_graph):
    side = 1024  # 3 MiB frames; a budget of 10 MiB holds 3 of the 64 the capacity allows
    count = 12

    class HugeFrames(Source):
        def frames(self) -> Iterator[Frame]:
            for i in range(count):
                yield big_frame(i, side)

    class HoldsTheFirst(make_sink):  # type: ignore[misc, valid-type]
        """Keeps frame 0 until the edge behind it is full, so the source must wait."""

        def write(self, frame: Frame) -> None:
            if frame.index == 0:
                assert wait_until(lambda: edge.bytes + side * side * 3 > edge.max_bytes, 30)
                time.sleep(0.05)  # the source is blocked now; give it time to misbehave
            super().write(frame)

    sink = HoldsTheFirst()
    graph = Graph([
        NodeSpec("src", HugeFrames()),
        NodeSpec("out", sink, inputs=["src"], capacity=64, max_bytes=10 * 2**20),
    ])  # fmt: skip
    edge = graph.nodes["out"].inbound
    report = run_graph(graph, timeout=60)
    assert report.error is None
    assert sink.indices == list(range(count))  # nothing lost: the source waited
    queue = report.metrics.snapshot()["stages"]["out"]["queue"]
    assert queue["max_depth"] == 3 and queue["capacity"] == 64
    assert queue["peak_bytes"] == 3 * side * side * 3 <= queue["max_bytes"]
