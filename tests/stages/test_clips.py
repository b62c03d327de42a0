"""Event clips: pre-roll to post-roll around bursts of events, remuxed from packets encoded once.

Every clip is read back by PyAV (frame times, the synthetic source's burned-in counter) and by
ffprobe (decodes every frame without an error). Times are the source's: frame ``i`` of a
synthetic source at ``FPS`` is at ``i / FPS`` seconds.
"""

from __future__ import annotations

import itertools
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import pytest

from pipeline.config import build_stage
from pipeline.errors import ConfigError
from pipeline.frame import Frame
from pipeline.graph import Graph, NodeSpec
from pipeline.per_source import PerSource
from pipeline.results import Analytics, Event
from pipeline.stage import Stage
from stages.sinks.clips import ClipEncoder, ClipRecord, EventClipsSink, Packet, PacketRing
from stages.sources.synthetic import SyntheticSource, read_counter
from tests.conftest import ffprobe_frame_count, needs_ffprobe

FPS = 10
SIZE = (160, 120)


def event(index: int, source: str = "cam", kind: str = "enter", where: str = "door") -> Event:
    return Event(kind, source, index / FPS, 1_700_000_000.0 + index / FPS, index, 1, "person",
                 where)  # fmt: skip


def frame(scene: SyntheticSource, index: int, source: str = "cam", events=(),
          pts: int | None = None, tb: Fraction = Fraction(1, FPS)) -> Frame:  # fmt: skip
    results = {"zones": Analytics(list(events))} if events else {}
    pts = index if pts is None else pts
    return Frame(scene.render(index), pts, tb, index, source, results=results)


def run(sink: EventClipsSink, count: int, events_at: set[int], source: str = "cam") -> None:
    """``count`` frames of one source through ``sink``, events at ``events_at``; the source
    then ends."""
    scene = SyntheticSource(width=SIZE[0], height=SIZE[1], frames=count)
    sink.open()
    for i in range(count):
        sink.write(frame(scene, i, source, [event(i, source)] if i in events_at else ()))
    sink.on_source_end(source)
    sink.close()


def read_clip(path: Path) -> tuple[list[float], list[int], dict[str, str]]:
    """A clip's frame times in the file (s), its frames' counters, and its tags."""
    with av.open(str(path)) as container:
        tags = dict(container.metadata)
        times, counters = [], []
        for video in container.decode(video=0):
            times.append(float(video.pts * video.time_base))
            counters.append(read_counter(video.to_ndarray(format="bgr24")))
    return times, counters, tags


def ffprobe_errors(path: Path) -> str:
    """What ffprobe complains about while decoding every frame (empty: nothing)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=nb_read_frames", str(path)],
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return out.stderr


def check_clip(record: ClipRecord) -> list[int]:
    """Checks what every clip must be; returns its frames' counters (source frame indices).

    It plays (ffprobe decodes every frame, silently), it holds consecutive source frames, each
    once, from a keyframe, its timestamps increase strictly and are the source's less the
    tagged start, and its record matches the file.
    """
    assert record.finished
    times, counters, tags = read_clip(record.path)
    assert ffprobe_frame_count(record.path) == len(counters) == record.frames
    assert ffprobe_errors(record.path) == ""
    assert counters == list(range(counters[0], counters[0] + len(counters)))  # none lost or twice
    assert all(b > a for a, b in itertools.pairwise(times))
    start = float(tags["framegraph_start_s"])
    assert start == pytest.approx(counters[0] / FPS)
    assert Fraction(tags["framegraph_time_base"]) * int(tags["framegraph_start_pts"]) == (
        Fraction(counters[0], FPS)
    )
    assert [start + t for t in times] == pytest.approx([c / FPS for c in counters], abs=1e-3)
    assert record.start_s == pytest.approx(counters[0] / FPS)
    assert record.end_s == pytest.approx(counters[-1] / FPS)
    return counters


@needs_ffprobe
def test_a_clip_spans_the_pre_roll_to_the_post_roll_with_every_frame_once(tmp_path: Path) -> None:
    """The acceptance: defaults (5 s pre-roll, 5 s post-roll, a keyframe every second)."""
    sink = EventClipsSink(str(tmp_path / "clip.mp4"))
    run(sink, 25 * FPS, {120})
    (record,) = sink.clips
    counters = check_clip(record)
    event_s, first_s, last_s = 12.0, counters[0] / FPS, counters[-1] / FPS
    assert first_s <= event_s - 5.0  # at least the pre-roll before the event
    assert first_s >= event_s - 5.0 - 1.0 - 1 / FPS  # but no more than a keyframe interval more
    assert event_s + 5.0 <= last_s < event_s + 5.0 + 1 / FPS  # the post-roll, and no more
    assert record.first_event_s == record.last_event_s == pytest.approx(event_s)
    assert record.events == 1
    assert read_clip(record.path)[2]["framegraph_event_s"] == "12.000000"
    assert read_clip(record.path)[2]["framegraph_source"] == "cam"
    data = record.path.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")  # faststart: plays while downloading


@needs_ffprobe
def test_bursts_close_together_make_one_clip_far_apart_two(tmp_path: Path) -> None:
    """pre 2 s, post 1 s: events 2 s apart share a clip; 8 s apart get their own; one at
    0.5 s starts at the first frame; no frame is in two clips."""
    sink = EventClipsSink(str(tmp_path / "{n}.mp4"), pre_roll=2, post_roll=1,
                          keyframe_seconds=0.5)  # fmt: skip
    run(sink, 200, {5, 50, 70, 150})
    assert [Path(r.path).name for r in sink.clips] == ["0.mp4", "1.mp4", "2.mp4"]
    ranges = [check_clip(r) for r in sink.clips]
    early, burst, late = ranges
    assert early[0] == 0  # less history than the pre-roll: from the first frame
    assert early[-1] == 5 + 10
    assert 50 - 20 - 5 <= burst[0] <= 50 - 20 and burst[-1] == 70 + 10
    assert 150 - 20 - 5 <= late[0] <= 150 - 20 and late[-1] == 150 + 10
    assert [r.events for r in sink.clips] == [1, 2, 1]
    assert sink.clips[1].first_event_s == pytest.approx(5.0)
    assert sink.clips[1].last_event_s == pytest.approx(7.0)
    assert early[-1] < burst[0] and burst[-1] < late[0]
    assert sink.status() == {"clips": 3, "open": [], "ring_trims": 0}


@needs_ffprobe
def test_an_event_whose_pre_roll_reaches_into_the_last_clip_extends_it(tmp_path: Path) -> None:
    """Event at 3 s (its clip ends at 4 s), the next at 6.2 s: that one's clip would start at
    the keyframe at 4 s, inside the first, so both are one clip, the frames between included.
    At 6.5 s (keyframe at 4.5 s) they are two."""
    for second, clips in ((62, [(10, 72)]), (65, [(10, 40), (45, 75)])):
        sink = EventClipsSink(str(tmp_path / f"{second}.mp4"), pre_roll=2, post_roll=1,
                              keyframe_seconds=0.5)  # fmt: skip
        run(sink, 120, {30, second})
        assert [(c[0], c[-1]) for c in map(check_clip, sink.clips)] == clips


@needs_ffprobe
def test_a_clip_open_at_the_source_end_is_finished_with_its_last_frame(tmp_path: Path) -> None:
    sink = EventClipsSink(str(tmp_path / "c.mp4"), pre_roll=1, post_roll=5)
    run(sink, 60, {55})
    (record,) = sink.clips
    assert check_clip(record)[-1] == 59  # the encoder's delayed frames came out too


@needs_ffprobe
def test_close_without_the_source_ending_finishes_the_open_clip(tmp_path: Path) -> None:
    scene = SyntheticSource(width=SIZE[0], height=SIZE[1])
    sink = EventClipsSink(str(tmp_path / "c.mp4"), pre_roll=1, post_roll=10)
    sink.open()
    for i in range(60):
        sink.write(frame(scene, i, events=[event(i)] if i == 5 else ()))
    # the clip opens once the event's frame is out of the encoder (its delay is a few frames)
    assert sink.status()["open"] == ["cam"]
    sink.close()  # Ctrl-C, or the graph stopping
    (record,) = sink.clips
    assert check_clip(record)[-1] == 59


def test_each_frame_is_encoded_once_however_many_clips(tmp_path: Path, monkeypatch) -> None:
    calls = 0
    encode = ClipEncoder.encode

    def counted(self: ClipEncoder, *args, **kwargs) -> list[av.Packet]:
        nonlocal calls
        calls += 1
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(ClipEncoder, "encode", counted)
    for name, events in (("none", set()), ("many", set(range(0, 200, 30)))):
        calls = 0
        sink = EventClipsSink(str(tmp_path / name / "c.mp4"), pre_roll=0.5, post_roll=0.2,
                              keyframe_seconds=0.3)  # fmt: skip
        run(sink, 200, events)
        assert calls == 200 and sink.frames_encoded == {"cam": 200}
        assert len(sink.clips) == (0 if name == "none" else len(events))


@needs_ffprobe
def test_variable_frame_rate_keeps_the_source_spacing(tmp_path: Path) -> None:
    steps = (40 + 37 * (i % 4) for i in range(99))
    pts = list(itertools.accumulate(steps, initial=0))  # in 1/1000 s
    scene = SyntheticSource(width=SIZE[0], height=SIZE[1])
    sink = EventClipsSink(str(tmp_path / "c.mkv"), pre_roll=1, post_roll=1)
    sink.open()
    for i, p in enumerate(pts):
        found = [event(i)] if i == 50 else ()
        sink.write(frame(scene, i, events=found, pts=p, tb=Fraction(1, 1000)))
    sink.on_source_end("cam")
    (record,) = sink.clips
    times, counters, tags = read_clip(record.path)
    start = float(tags["FRAMEGRAPH_START_S"])  # Matroska's tags are upper case
    assert start * 1000 == pytest.approx(pts[counters[0]])
    assert start <= pts[50] / 1000 - 1
    assert [start + t for t in times] == pytest.approx([pts[c] / 1000 for c in counters], abs=1e-3)
    assert counters == list(range(counters[0], counters[-1] + 1))
    assert pts[counters[-1]] >= pts[50] + 1000


def test_kinds_and_where_choose_the_events_that_make_clips(tmp_path: Path) -> None:
    scene = SyntheticSource(width=SIZE[0], height=SIZE[1])
    sink = EventClipsSink(str(tmp_path / "{kind}-{where}-{wall:%Y%m%d}.mp4"), pre_roll=0.5,
                          post_roll=0.5, kinds=["cross"], where=["gate"])  # fmt: skip
    sink.open()
    chosen = {10: ("enter", "gate"), 40: ("cross", "door"), 70: ("cross", "gate")}
    for i in range(100):
        found = [event(i, kind=chosen[i][0], where=chosen[i][1])] if i in chosen else []
        sink.write(frame(scene, i, events=found))
    sink.close()
    assert [r.path.name for r in sink.clips] == ["cross-gate-20231114.mp4"]
    assert sink.clips[0].first_event_s == pytest.approx(7.0)


def test_an_existing_file_is_never_replaced(tmp_path: Path) -> None:
    taken = tmp_path / "clip-12.000.mp4"
    taken.write_bytes(b"someone else's")
    sink = EventClipsSink(str(tmp_path / "clip-{time}.mp4"), pre_roll=1, post_roll=1)
    run(sink, 150, {120})
    assert taken.read_bytes() == b"someone else's"
    assert sink.written() == [str(tmp_path / "clip-12.000-1.mp4")]


@needs_ffprobe
def test_max_clip_seconds_cuts_a_long_burst_into_clips_that_lose_nothing(tmp_path: Path) -> None:
    sink = EventClipsSink(str(tmp_path / "c-{n}.mp4"), pre_roll=1, post_roll=1,
                          keyframe_seconds=1, max_clip_seconds=3)  # fmt: skip
    run(sink, 150, set(range(20, 120, 5)))
    ranges = [check_clip(r) for r in sink.clips]
    assert len(ranges) >= 3
    joined = [c for r in ranges for c in r]
    assert joined == list(range(joined[0], joined[-1] + 1))  # each frame once, in order
    assert joined[0] <= 10 and joined[-1] == 125
    assert all(len(r) <= 3 * FPS + 1 for r in ranges[:-1])
    assert sink.clips[1].first_event_s is not None  # carries on with the burst's events


@needs_ffprobe
def test_a_small_ring_cap_shortens_the_pre_roll_but_keeps_clips_playable(tmp_path: Path) -> None:
    sink = EventClipsSink(str(tmp_path / "c.mp4"), pre_roll=5, post_roll=1,
                          keyframe_seconds=0.5, max_ring_bytes=20_000)  # fmt: skip
    run(sink, 150, {120})
    (record,) = sink.clips
    counters = check_clip(record)
    assert counters[0] > 120 - 5 * FPS  # later than the pre-roll: the cap dropped the rest
    assert sink.status()["ring_trims"] > 0


def test_the_ring_holds_whole_keyframe_intervals_within_its_cap() -> None:
    ring = PacketRing(max_bytes=1000)
    for seq in range(20):
        ring.append(Packet(seq, seq * 10, seq % 5 == 0, b"x" * 100))
        ring.enforce_cap()
    assert ring.bytes == 1000 and ring.trims == 2
    first = next(ring.since(0))
    assert first.keyframe and first.seq == 10  # whole intervals, the newest ones
    assert ring.start_for(170).seq == 15
    ring.append(Packet(20, 200, False, b"x" * 2000))
    ring.enforce_cap()
    assert ring.bytes == 2500  # over the cap, but the newest interval stays whole
    ring = PacketRing(max_bytes=10**6)
    ring.append(Packet(0, 0, False, b"x"))  # undecodable without a keyframe before it
    assert len(ring) == 0
    for seq in range(12):
        ring.append(Packet(seq, seq * 10, seq % 4 == 0, b"x"))
    assert ring.start_for(75).seq == 4 and ring.start_for(80).seq == 8
    assert ring.start_for(-5).seq == 0  # less history: the oldest packet
    ring.trim_before(8)
    assert [p.seq for p in ring.since(0)] == [8, 9, 10, 11]


class Emit(Stage):
    """Puts an event into the frames at given indices of each source."""

    produces = (Analytics,)

    def __init__(self, at: dict[str, set[int]]) -> None:
        self.at = at

    def process(self, frame: Frame) -> Frame:
        if frame.index in self.at.get(frame.source_id, set()):
            frame.results[self.name] = Analytics([event(frame.index, frame.source_id)])
        return frame


@needs_ffprobe
def test_sources_are_independent_in_a_graph(tmp_path: Path) -> None:
    """Two sources of different sizes into one sink: each its own encoder, ring and clips."""
    sink = EventClipsSink(str(tmp_path / "{source}-{n}.mp4"), pre_roll=1, post_roll=1,
                          keyframe_seconds=0.5)  # fmt: skip
    sources = [
        SyntheticSource(width=160, height=120, fps=FPS, frames=100, source_id="a"),
        SyntheticSource(width=192, height=144, fps=FPS, frames=80, source_id="b", seed=1),
    ]
    specs = [NodeSpec(s.source_id, s) for s in sources]
    specs.append(NodeSpec("zones", Emit({"a": {30, 80}, "b": {50}}), ["a", "b"], join=False))
    specs.append(NodeSpec("clips", sink, ["zones"]))
    report = Graph(specs).run()
    assert report.error is None, report.error
    by_source: dict[str, list[list[int]]] = {"a": [], "b": []}
    for record in sink.clips:
        by_source[record.source].append(check_clip(record))
        with av.open(str(record.path)) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == ((160, 120) if record.source == "a"
                                                     else (192, 144))  # fmt: skip
    assert sorted(Path(p).name for p in sink.written()) == ["a-0.mp4", "a-1.mp4", "b-0.mp4"]
    (a0, a1), (b0,) = by_source["a"], by_source["b"]
    assert 15 <= a0[0] <= 20 and a0[-1] == 40
    assert 65 <= a1[0] <= 70 and a1[-1] == 90
    assert 35 <= b0[0] <= 40 and b0[-1] == 60
    assert sink.frames_encoded == {"a": 100, "b": 80}


@needs_ffprobe
def test_source_in_the_path_makes_a_sink_per_source_through_the_config(tmp_path: Path) -> None:
    args = {"path": str(tmp_path / "{source}" / "clip-{n}.mp4"), "pre_roll": 1, "post_roll": 1}
    sink = PerSource("event_clips", args, lambda filled: build_stage("event_clips", filled))
    sink.name = "clips"
    scene = SyntheticSource(width=SIZE[0], height=SIZE[1])
    for i in range(60):
        for source in ("lobby", "door"):
            sink.write(frame(scene, i, source, [event(i, source)] if i == 20 else ()))
    sink.on_source_end("lobby")
    sink.close()
    for source in ("lobby", "door"):
        (path,) = sink.outputs_of(source)
        assert path == str(tmp_path / source / "clip-0.mp4")
        assert ffprobe_frame_count(Path(path)) >= 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"path": "c/{camera}.mp4"}, r"unknown placeholder \{camera\}"),
        ({"path": "c.mp4", "pre_roll": -1}, "pre_roll must be 0 or more"),
        ({"path": "c.mp4", "keyframe_seconds": 0}, "keyframe_seconds must be above 0"),
        ({"path": "c.mp4", "post_rol": 1}, "post_rol"),
    ],
)
def test_config_mistakes_are_one_line_errors(args: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_stage("event_clips", args)
