"""Edge: bounded queue, flow-control policies, end of stream, close."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.edges import Edge, EdgeClosed, Policy
from pipeline.frame import EndOfStream
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
    assert snap == {"depth": 0, "max_depth": 1, "capacity": 1, "policy": "latest", "drops": 4}


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
