"""Event clips: a short video file around each burst of events, cut from packets encoded once.

Each source's frames are encoded as they arrive, once, into H.264 (libx264, yuv420p), and the
encoded packets are kept in a ring (``PacketRing``) that reaches ``pre_roll`` seconds back. On
an event (an ``Event`` among the frame's ``Analytics`` results, see
``pipeline.results.frame_events``) a clip file is opened, the ring's packets from a keyframe at
least ``pre_roll`` before the event are copied into it, and the packets that follow go to it
until ``post_roll`` after the last event. Nothing is decoded or encoded again: a clip is a remux
of packets the ring already holds, so ten clips cost what one costs, and the pixels in a clip
are bit for bit the ones encoded when the frame went by.

**Timing rules** (all in the source's own time, frame PTS, never the wall clock):

- A clip starts at the newest keyframe at or before ``event - pre_roll`` (so up to one
  keyframe interval earlier; ``keyframe_seconds`` forces a keyframe at least that often), or at
  the oldest frame still held when the source has less history than that (an event in its
  first seconds: the clip starts at the source's first frame).
- It ends with the first frame at or after ``last event + post_roll`` (or the source's last
  frame). An event while a clip is being written extends it.
- No two clips share a frame: an event whose clip would start inside (or right after) the
  previous clip extends the previous clip instead, with the frames between them. So a clip is
  finished only when no later event could extend it any more: once the start of any new
  clip (``pre_roll`` before the newest frame, back to a keyframe) lies past its end, i.e.
  about ``pre_roll`` + one keyframe interval after its post-roll ends. Bursts closer than
  ``post_roll + pre_roll`` (give or take a keyframe interval) make one clip; farther apart,
  two.
- ``max_clip_seconds`` cuts a clip that events keep extending, at a keyframe; the next clip
  carries on from that very frame (no pre-roll, none lost). The frames an extension brings in
  at once (those held since the post-roll ended) are not cut, so a clip may run over by up to
  ``pre_roll`` + one keyframe interval.
- At the source's end (or when the graph closes) the open clip is finished with the frames
  encoded so far, the encoder's last ones included.

**Timestamps.** Packets keep the source PTS (in its time base) all the way; a clip file holds
them less its first frame's PTS, so it starts at 0 (an MP4 starting at 60 s opens on 60 s of
nothing in most players) while the spacing of frames stays the source's (variable frame rate
survives). The source time is recoverable from the file's tags: ``framegraph_start_pts`` (the
first frame's PTS) in ``framegraph_time_base``, or ``framegraph_start_s`` in seconds, so the
source time of a frame is ``framegraph_start_s + its time in the file``. The first event's
source time and the source id are tagged too (``framegraph_event_s``, ``framegraph_source``).

**Encoding choices, and why.** No B-frames: packets then come out in presentation order, so
a cut by time is a cut by packets, and each clip's timestamps increase in decode order without
any composition offsets (files grow a little for it). SPS and PPS are repeated before every
keyframe (``repeat-headers``), so a clip that starts at any keyframe is decodable on its own;
the muxer takes the codec setup from the clip's first packet. The encoder's own delay
(lookahead, frame threads) is no problem: events are acted on when their frame's packet comes
out.

**Files.** MP4 (``.mp4``, ``.mov``, ``.m4v``) with ``faststart``, so a clip plays at once in a
browser; other suffixes (``.mkv``) as FFmpeg writes them. A clip is finalised when it is
finished; a process killed while a clip is open loses that clip (clips are short; the
crash-safe recording is ``video_file``'s ``fragmented`` mode). Names come from ``path`` with
placeholders, and an existing file is never replaced (``stages.sinks.durable.claim``:
``clip.mp4``, ``clip-1.mp4``, ...).

**Memory.** Per source: the packets since the newest keyframe at or before ``pre_roll`` before
the newest frame (``pre_roll`` + one keyframe interval + the encoder's delay), bounded by
``max_ring_bytes``; past it the oldest whole keyframe intervals go first (clips then start
later than their pre-roll; counted in ``status()`` as ``ring_trims``).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from pipeline.config import register
from pipeline.errors import ConfigError, SinkError
from pipeline.frame import Frame
from pipeline.per_source import safe_name
from pipeline.results import Analytics, Event, frame_events
from pipeline.stage import Sink
from stages.sinks.durable import claim, numbered
from stages.sinks.fit import even_size, fit
from stages.sinks.video_file import MP4_SUFFIXES, pick_encoder

log = logging.getLogger("framegraph")

RECENT_CLIPS = 100
"""Clips a sink remembers (what the API lists as its outputs); older ones are on disk only."""
ENCODER = "libx264"
"""The only encoder clips use: cutting at any keyframe needs its in-band SPS/PPS
(``repeat-headers``) and B-frame control."""
PLACEHOLDERS = ("source", "n", "time", "wall", "kind", "where")
"""What ``path`` may name, filled from the clip's first event (see ``EventClipsSink``)."""


class _Seconds(float):
    """A time in seconds that formats with milliseconds unless told otherwise
    (``{time}`` -> ``12.400``, ``{time:.0f}`` -> ``12``)."""

    def __format__(self, spec: str) -> str:
        return super().__format__(spec or ".3f")


class _Wall(datetime.datetime):
    """A UTC wall clock time that formats as ``20240131T120000Z`` unless told otherwise
    (``{wall:%Y-%m-%d}``): no spaces or colons in a file name."""

    def __format__(self, spec: str) -> str:
        return super().__format__(spec or "%Y%m%dT%H%M%SZ")

    @classmethod
    def at(cls, unix: float) -> _Wall:
        """The time ``unix`` seconds after the epoch."""
        return cls.fromtimestamp(unix, datetime.timezone.utc)


def clip_name(template: str, **values: Any) -> str:
    """``template`` with its placeholders filled.

    Raises:
        ConfigError: the template names a placeholder that is not in ``PLACEHOLDERS``.
    """
    try:
        return template.format(**values)
    except (KeyError, IndexError) as error:
        raise ConfigError(
            f"event_clips: path: unknown placeholder {{{error.args[0]}}} "
            f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
        ) from None
    except ValueError as error:
        raise ConfigError(f"event_clips: path: {error}") from None


@dataclass(slots=True)
class Packet:
    """One encoded frame as the ring keeps it.

    Attributes:
        seq: its place among the source's packets (0, 1, 2, ... in output order).
        pts: presentation time in the source's time base (equal to its decode time: no
            B-frames).
        keyframe: an IDR frame, where a clip may start.
        data: the H.264 access unit, Annex B, SPS/PPS in front of keyframes.
    """

    seq: int
    pts: int
    keyframe: bool
    data: bytes


class PacketRing:
    """A source's encoded packets, oldest first; it always starts at a keyframe.

    Args:
        max_bytes: the most packet bytes held (whole keyframe intervals are dropped from the
            front past it; the newest interval always stays).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.trims = 0
        """Times whole keyframe intervals were dropped for ``max_bytes``."""
        self._packets: deque[Packet] = deque()
        self._keys: deque[Packet] = deque()  # the keyframes among them, oldest first

    def __len__(self) -> int:
        return len(self._packets)

    def append(self, packet: Packet) -> None:
        """Add the newest packet (a ring's first packet must be a keyframe)."""
        if not self._packets and not packet.keyframe:
            return  # undecodable without the keyframe before it, which is gone
        self._packets.append(packet)
        self.bytes += len(packet.data)
        if packet.keyframe:
            self._keys.append(packet)

    def start_for(self, pts: int) -> Packet:
        """Where a clip reaching back to ``pts`` starts: the newest keyframe at or before it,
        else the oldest packet held (less history than that)."""
        start = self._keys[0]
        for key in self._keys:
            if key.pts > pts:
                break
            start = key
        return start

    def since(self, seq: int) -> Iterator[Packet]:
        """The packets from ``seq`` on (all of them if ``seq`` is older than the ring)."""
        offset = max(seq - self._packets[0].seq, 0) if self._packets else 0
        for index in range(offset, len(self._packets)):
            yield self._packets[index]

    def trim_before(self, seq: int) -> None:
        """Drop the packets before ``seq`` (which must be a keyframe's)."""
        while self._packets and self._packets[0].seq < seq:
            self._drop_oldest()

    def enforce_cap(self) -> None:
        """Drop the oldest keyframe intervals while over ``max_bytes`` (never the newest)."""
        while self.bytes > self.max_bytes and len(self._keys) > 1:
            self.trim_before(self._keys[1].seq)
            self.trims += 1

    def _drop_oldest(self) -> None:
        packet = self._packets.popleft()
        self.bytes -= len(packet.data)
        if self._keys and self._keys[0] is packet:
            self._keys.popleft()


class ClipEncoder:
    """libx264 for clips: no B-frames, SPS/PPS before every keyframe, packets in PTS order.

    Args:
        size: (width, height), even.
        time_base: the source's time base; PTS in and out are in it.
        fps: nominal frame rate, for rate control only (PTS decide timing).
        crf: x264 quality (lower = better, bigger).
        preset: x264 speed preset.
        threads: encoder threads (0: FFmpeg's choice); each adds a frame of delay.
    """

    def __init__(
        self,
        size: tuple[int, int],
        time_base: Fraction,
        fps: float,
        crf: int,
        preset: str,
        threads: int,
    ) -> None:
        context = av.codec.CodecContext.create(ENCODER, "w")
        context.width, context.height = size
        context.pix_fmt = "yuv420p"
        context.time_base = time_base
        context.framerate = Fraction(fps).limit_denominator(1001)
        context.thread_count = threads
        context.options = {
            "crf": str(crf),
            "preset": preset,
            "x264-params": "repeat-headers=1:bframes=0",
        }
        context.open()
        self._context = context
        self.frames = 0
        """Frames encoded (each frame once, however many clips it ends up in)."""

    def encode(self, image: np.ndarray, pts: int, keyframe: bool) -> list[av.Packet]:
        """Encode a BGR uint8 [H, W, 3] image (of the encoder's size) shown at ``pts``;
        the packets that came out (not necessarily this frame's: the encoder has a delay)."""
        video = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        video.pts = pts
        if keyframe:
            video.pict_type = av.video.frame.PictureType.I  # an IDR frame from libx264
        self.frames += 1
        return self._context.encode(video)

    def flush(self) -> list[av.Packet]:
        """The packets still inside the encoder; it takes no more frames after this."""
        return self._context.encode(None)


@dataclass
class ClipRecord:
    """A clip file, as written.

    Attributes:
        path: the file.
        source: the source id.
        start_s: source time of its first frame, seconds.
        end_s: source time of its last frame, seconds.
        frames: frames in it.
        events: events in it (those that passed the ``kinds`` / ``where`` filters).
        first_event_s: source time of its first event (None for a clip that carries on
            where ``max_clip_seconds`` cut the one before).
        last_event_s: source time of its last event (likewise).
        finished: the file is finalised.
    """

    path: Path
    source: str
    start_s: float
    end_s: float = 0.0
    frames: int = 0
    events: int = 0
    first_event_s: float | None = None
    last_event_s: float | None = None
    finished: bool = False


@dataclass
class _Clip:
    """A clip file being written: its container and where it stands."""

    record: ClipRecord
    container: av.container.OutputContainer
    stream: av.video.stream.VideoStream
    origin: int  # source PTS of its first frame: 0 in the file
    end: int  # source PTS it must reach: last event + post-roll
    last_seq: int = -1
    last_pts: int = -1
    tail: bool = False  # the post-roll is complete; later packets wait in the ring
    event: Event | None = None  # its latest event, to name the clip that carries on after a cut


class _SourceClips:
    """One source's encoder, ring, pending events and open clip."""

    def __init__(self, sink: EventClipsSink, source_id: str, frame: Frame) -> None:
        self.sink, self.source_id = sink, source_id
        self.size = even_size(frame.image)
        self.time_base = Fraction(frame.time_base)
        self.encoder = ClipEncoder(
            self.size, self.time_base, sink.fps, sink.crf, sink.preset, sink.threads
        )
        self.ring = PacketRing(sink.max_ring_bytes)
        self.pre = self._ticks(sink.pre_roll)
        self.post = self._ticks(sink.post_roll)
        self.key_every = self._ticks(sink.keyframe_seconds)
        self.max_ticks = self._ticks(sink.max_clip_seconds) if sink.max_clip_seconds else None
        # events wait here (with their frame's PTS) until that frame's packet is out of the
        # encoder: only then does the ring hold everything their clip starts with
        self.pending: deque[tuple[int, Event]] = deque()
        self.clip: _Clip | None = None
        self.number = 0  # ``{n}``: clips of this source so far
        self._seq = 0
        self._last_pts: int | None = None
        self._last_key: int | None = None

    def _ticks(self, seconds: float) -> int:
        """``seconds`` in the source's time base, rounded up (a roll is at least as asked)."""
        return math.ceil(Fraction(seconds).limit_denominator(1_000_000) / self.time_base)

    # -- frames in ------------------------------------------------------------------------

    def write(self, frame: Frame, events: list[Event]) -> None:
        pts = round(Fraction(frame.pts) * Fraction(frame.time_base) / self.time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # muxers need strictly increasing PTS
        self._last_pts = pts
        self.pending.extend((pts, event) for event in events)
        keyframe = self._last_key is None or pts - self._last_key >= self.key_every
        if keyframe:
            self._last_key = pts
        image = fit(frame.image, self.size)
        for packet in self.encoder.encode(image, pts, keyframe):
            self._take(packet)

    def finish(self) -> None:
        """The source ended: drain the encoder, act on the last events, finish the clip."""
        try:
            for packet in self.encoder.flush():
                self._take(packet)
        finally:
            if self.clip is not None:
                self._finish_clip()

    # -- packets out ----------------------------------------------------------------------

    def _take(self, encoded: av.Packet) -> None:
        packet = Packet(self._seq, int(encoded.pts), bool(encoded.is_keyframe), bytes(encoded))
        self._seq += 1
        self.ring.append(packet)
        if not len(self.ring):
            return  # not a keyframe and nothing before it: libx264 starts with one, never this
        clip = self.clip
        if clip is not None and not clip.tail:
            if clip.last_pts >= clip.end:
                clip.tail = True  # its last frame is at or after its end
            elif (
                self.max_ticks is not None
                and packet.keyframe
                and packet.pts - clip.origin >= self.max_ticks
            ):
                self._cut(packet)
            else:
                self._put(clip, packet)
        while self.pending and self.pending[0][0] <= packet.pts:
            self._on_event(*self.pending.popleft())
        self._settle(packet)

    def _on_event(self, pts: int, event: Event) -> None:
        clip = self.clip
        if clip is not None and not clip.tail:
            clip.end = max(clip.end, pts + self.post)
            self._count(clip, pts, event)
            return
        start = self.ring.start_for(pts - self.pre)
        if clip is not None and start.seq <= clip.last_seq + 1:
            # its pre-roll reaches into the clip still in its tail: one clip, with the frames
            # held since its post-roll ended
            for packet in self.ring.since(clip.last_seq + 1):
                self._put(clip, packet)
            clip.tail = False
            clip.end = max(clip.end, pts + self.post)
            self._count(clip, pts, event)
            return
        if clip is not None:
            self._finish_clip()
        clip = self._open_clip(start.pts, event, pts + self.post)
        for packet in self.ring.since(start.seq):
            self._put(clip, packet)
        self._count(clip, pts, event)

    def _settle(self, newest: Packet) -> None:
        """Trim the ring to what a future event can need, and finish a clip none can extend."""
        # a later event (at the newest frame or after) starts its clip here or later
        self.ring.trim_before(self.ring.start_for(newest.pts - self.pre).seq)
        self.ring.enforce_cap()
        clip = self.clip
        if clip is not None and clip.tail:
            earliest = self.ring.start_for(newest.pts - self.pre)
            if earliest.seq > clip.last_seq + 1:  # no later event can extend it any more
                self._finish_clip()

    def _cut(self, packet: Packet) -> None:
        """End the clip before ``packet`` (a keyframe) and carry on in a new one from it."""
        old = self.clip
        assert old is not None
        self._finish_clip()
        event = old.event
        assert event is not None
        clip = self._open_clip(packet.pts, event, old.end, carried=True)
        self._put(clip, packet)

    # -- clip files -----------------------------------------------------------------------

    def _count(self, clip: _Clip, pts: int, event: Event) -> None:
        seconds = float(pts * self.time_base)
        record = clip.record
        if record.first_event_s is None:
            record.first_event_s = seconds
        record.last_event_s = seconds
        record.events += 1
        clip.event = event

    def _open_clip(self, origin: int, event: Event, end: int, carried: bool = False) -> _Clip:
        sink = self.sink
        template = sink.path
        name = clip_name(
            template,
            source=safe_name(self.source_id),
            n=self.number,
            time=_Seconds(event.pts_s),
            wall=_Wall.at(event.wall_time),
            kind=safe_name(event.kind),
            where=safe_name(event.where),
        )
        self.number += 1
        wanted = Path(name)
        try:
            wanted.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            folder = wanted.parent
            raise SinkError(f"cannot create clip folder {folder}: {error.strerror}") from None
        _, path, fd = claim(lambda number: numbered(wanted, number))
        os.close(fd)  # FFmpeg opens it again by name; the empty file holds the name meanwhile
        options = (
            {"movflags": "+faststart+use_metadata_tags"}
            if path.suffix.lower() in MP4_SUFFIXES
            else {}
        )
        start_s = origin * self.time_base
        tags = {
            "framegraph_source": self.source_id,
            "framegraph_start_pts": str(origin),
            "framegraph_time_base": str(self.time_base),
            "framegraph_start_s": f"{float(start_s):.6f}",
        }
        if not carried:
            tags["framegraph_event_s"] = f"{event.pts_s:.6f}"
        try:
            container = av.open(str(path), mode="w", options=options)
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise SinkError(f"cannot write clip {path}: {error}") from None
        try:
            container.metadata.update(tags)
            stream = container.add_mux_stream(
                "h264", rate=Fraction(sink.fps).limit_denominator(1001),
                width=self.size[0], height=self.size[1],
            )  # fmt: skip
            stream.time_base = self.time_base
        except (av.error.FFmpegError, ValueError) as error:  # a container without H.264
            container.close()
            raise SinkError(f"cannot write clip {path}: {error}") from None
        record = ClipRecord(path, self.source_id, float(start_s))
        clip = _Clip(record, container, stream, origin, end)
        if carried:
            clip.event = event
        self.clip = clip
        sink._opened(record)
        log.info("%s: clip %s opened (%s at %.3f s)", sink.name or sink.kind, path,
                 event.kind, event.pts_s)  # fmt: skip
        return clip

    def _put(self, clip: _Clip, packet: Packet) -> None:
        """Mux one packet into ``clip`` (a copy of the ring's bytes, no re-encode)."""
        out = av.Packet(packet.data)
        out.pts = out.dts = packet.pts - clip.origin
        out.time_base = self.time_base
        out.is_keyframe = packet.keyframe
        out.stream = clip.stream
        try:
            clip.container.mux(out)
        except (av.error.FFmpegError, OSError) as error:
            self._abandon()
            raise SinkError(f"writing clip {clip.record.path} failed: {error}") from None
        clip.last_seq, clip.last_pts = packet.seq, packet.pts
        clip.record.frames += 1
        clip.record.end_s = float(packet.pts * self.time_base)

    def _finish_clip(self) -> None:
        clip = self.clip
        assert clip is not None
        self.clip = None
        try:
            clip.container.close()
        except (av.error.FFmpegError, OSError) as error:
            raise SinkError(f"finishing clip {clip.record.path} failed: {error}") from None
        clip.record.finished = True
        self.sink._finished(clip.record)

    def _abandon(self) -> None:
        """Close a clip that failed to write, keeping whatever FFmpeg managed to finalise."""
        clip, self.clip = self.clip, None
        if clip is not None:
            try:
                clip.container.close()
            except (av.error.FFmpegError, OSError) as error:
                log.warning("clip %s left unfinished: %s", clip.record.path, error)


@register("event_clips")
class EventClipsSink(Sink):
    """Writes a clip per burst of events, per source, from packets encoded once (module doc).

    Args:
        path: clip file template; the container follows the suffix (``.mp4``: faststart MP4).
            Placeholders, from the clip's first event: ``{source}`` (the source id, made safe
            for paths; through a config it also makes one sink per source), ``{n}`` (clips of
            that source so far, from 0), ``{time}`` (its source time in seconds, ``12.400``;
            ``{time:.0f}`` for whole seconds), ``{wall}`` (its wall clock time, UTC,
            ``20240131T120000Z``; any strftime format: ``{wall:%Y%m%d-%H%M%S}``), ``{kind}`` and
            ``{where}`` (the event's kind and zone or line). An existing file is never
            replaced: ``clip-1.mp4``, ... instead.
        pre_roll: seconds of video before the first event (at least; back to a keyframe).
        post_roll: seconds of video after the last event.
        kinds: event kinds that make clips (``enter``, ``leave``, ``cross``; None: all).
        where: zones and lines whose events make clips (None: all).
        keyframe_seconds: force a keyframe at least this often (source time): how far before
            its pre-roll a clip may start.
        max_clip_seconds: cut a clip that events keep extending at the first keyframe this
            long after its start; the next clip carries on from there (None: never cut).
        max_ring_bytes: the most encoded bytes held per source for pre-rolls.
        crf: x264 quality (lower = better, bigger).
        preset: x264 speed preset.
        fps: nominal frame rate for the encoder's rate control (PTS decide timing).
        threads: encoder threads per source (0: FFmpeg's choice).
    """

    consumes = (Analytics,)

    def __init__(
        self,
        path: str,
        pre_roll: float = 5.0,
        post_roll: float = 5.0,
        kinds: list[str] | None = None,
        where: list[str] | None = None,
        keyframe_seconds: float = 1.0,
        max_clip_seconds: float | None = 300.0,
        max_ring_bytes: int = 32 * 2**20,
        crf: int = 23,
        preset: str = "veryfast",
        fps: float = 30.0,
        threads: int = 0,
    ) -> None:
        for key, value in (("pre_roll", pre_roll), ("post_roll", post_roll)):
            if value < 0:
                raise ConfigError(f"event_clips: {key} must be 0 or more, got {value}")
        for key, value in (("keyframe_seconds", keyframe_seconds), ("fps", fps),
                           ("max_clip_seconds", max_clip_seconds)):  # fmt: skip
            if value is not None and not value > 0:
                raise ConfigError(f"event_clips: {key} must be above 0, got {value}")
        if max_ring_bytes <= 0:
            raise ConfigError(f"event_clips: max_ring_bytes must be above 0, got {max_ring_bytes}")
        clip_name(path, source="s", n=0, time=_Seconds(0), wall=_Wall.at(0), kind="k", where="w")
        self.path = path
        self.pre_roll, self.post_roll = pre_roll, post_roll
        self.kinds = set(kinds) if kinds is not None else None
        self.where = set(where) if where is not None else None
        self.keyframe_seconds = keyframe_seconds
        self.max_clip_seconds = max_clip_seconds
        self.max_ring_bytes = max_ring_bytes
        self.crf, self.preset, self.fps, self.threads = crf, preset, fps, threads
        self.clips: deque[ClipRecord] = deque(maxlen=RECENT_CLIPS)
        """The clips opened last, in order (``finished`` once its file is finalised): a
        service runs for months, so only the newest are kept (``finished`` counts all)."""
        self.finished = 0
        self.frames_encoded: dict[str, int] = {}
        """Source id -> frames its encoder took: one per frame, however many clips."""
        self._sources: dict[str, _SourceClips] = {}
        self._trims = 0  # ``ring_trims`` of the sources that ended
        self._lock = threading.Lock()  # ``status()`` reads from another thread

    def open(self) -> None:
        pick_encoder(ENCODER)  # fails here, not on the first event, without libx264

    def wanted(self, event: Event) -> bool:
        """``event`` passes the ``kinds`` and ``where`` filters."""
        return (self.kinds is None or event.kind in self.kinds) and (
            self.where is None or event.where in self.where
        )

    def write(self, frame: Frame) -> None:
        state = self._sources.get(frame.source_id)
        if state is None:
            state = _SourceClips(self, frame.source_id, frame)
            with self._lock:
                self._sources[frame.source_id] = state
        state.write(frame, [e for e in frame_events(frame.results) if self.wanted(e)])
        self.frames_encoded[frame.source_id] = state.encoder.frames

    def on_source_end(self, source_id: str) -> None:
        with self._lock:
            state = self._sources.pop(source_id, None)
            if state is not None:
                self._trims += state.ring.trims
        if state is not None:
            state.finish()

    def close(self) -> None:
        with self._lock:
            remaining, self._sources = self._sources, {}
            self._trims += sum(state.ring.trims for state in remaining.values())
        errors = []
        for state in remaining.values():
            try:
                state.finish()
            except Exception as error:  # finish every source's clip before reporting
                errors.append(error)
        if errors:
            raise errors[0]

    def written(self) -> list[str]:
        with self._lock:
            return [str(record.path) for record in self.clips]

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "clips": self.finished,
                "open": sorted(s.source_id for s in self._sources.values() if s.clip),
                "ring_trims": self._trims + sum(s.ring.trims for s in self._sources.values()),
            }

    def _opened(self, record: ClipRecord) -> None:
        with self._lock:
            self.clips.append(record)

    def _finished(self, record: ClipRecord) -> None:
        with self._lock:
            self.finished += 1
        log.info("%s: wrote clip %s: %d frames, %.3f-%.3f s of %s, %d events",
                 self.name or self.kind, record.path, record.frames, record.start_s,
                 record.end_s, record.source, record.events)  # fmt: skip
