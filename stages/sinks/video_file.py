"""Annotated video to a file through PyAV: H.264 yuv420p, written with the source PTS
(variable frame rate survives), in one of two layouts.

**Faststart MP4 (the default).** The index (``moov``) is written by ``close()`` and moved in
front of the media, so the finished file plays while downloading and seeks at once in every
player. ``close()`` always flushes the encoder and writes the index, so Ctrl-C, SIGTERM or an
error still leave a playable file holding every frame written. A process that is killed
(SIGKILL, out of memory, power loss) never gets there: its file has no index, and nothing in
it plays.

**Crash-safe, fragmented MP4 (``fragmented: true``).** The header goes first, then one
fragment (``moof`` + ``mdat``) per keyframe, each handed to the kernel as soon as the muxer
cuts it, so a killed process leaves a file that plays up to its last complete fragment. The
file is only ever appended to, also by ``close()``. The muxer options (``CRASH_SAFE_MUXER``):

- ``frag_keyframe``: cut a fragment at every keyframe, so the keyframe interval
  (``keyframe_seconds``, 2 s by default in this mode) bounds what one fragment holds.
- ``empty_moov``: write the header (codec setup, no samples) before any media, so every
  fragment after it plays without anything written later.
- ``default_base_moof``: sample offsets count from each fragment's own ``moof``, not from
  the start of the file (what browsers' MSE and DASH players expect).
- ``negative_cts_offsets``: with B-frames, signed composition offsets (``trun`` version 1)
  let the file state the source PTS exactly, as there is no edit list in an empty ``moov``.
  FFmpeg's demuxer still reports the file later by the encoder's B-frame delay (2 frames for
  x264 at ``veryfast``); the spacing of the frames is exact either way.
- ``flush_packets=1``: flush FFmpeg's 32 KiB write buffer after every packet. Without it a
  finished fragment can wait there: a writer killed after 110 frames at 320x240 left 28
  bytes (``ftyp`` only), not a single fragment (measured). After each fragment the file is
  also fsynced, on a thread of its own (``stages.sinks.durable.Syncer``), so a power loss
  keeps it too.
- Not ``faststart``, ``global_sidx`` or ``hybrid_fragmented``: each rewrites bytes already
  written when the file is closed (faststart moves all of it; hybrid_fragmented turns the
  first ``moov`` into an ``mdat`` header before it appends the final index), so a kill
  during ``close()`` would lose the whole recording.

What a kill loses: the fragment being filled (up to ``keyframe_seconds`` of frames) and
the frames still inside the encoder (x264's lookahead and frame threads: 11 frames at
``veryfast`` on 2 cores, more with more threads). ``frames_flushed`` counts the frames in
complete fragments, ``frames_muxed`` those out of the encoder.

What it costs is keyframes, not fragments: ``configs/transcode.yaml`` on the bundled
pedestrians clip (a fixed camera, 10 fps, 30 s) writes 1.34 MB as faststart with x264's own
interval, 2.60 MB both fragmented and as faststart with a keyframe every 2 s, 4.00 MB
fragmented at 1 s and 1.72 MB at 5 s. Still scenes cost most, as their other frames are small.

Crash-safe mode is opt-in, not the default for live inputs: faststart makes the better
finished file (duration and index up front, instant seeking in every player, far fewer
keyframes); a sink does not know whether its input is live (the graph settles that once the
sources have opened); and whoever runs cameras where a process may be killed (the service's
workers on a cluster) turns it on there.

**Segments (``segment_seconds``).** A new file every N seconds of source time, each
starting with a keyframe and its own timestamps from 0, named ``<stem>-00000<suffix>``,
``<stem>-00001<suffix>``, ... A kill then loses at most the segment being written (or, with
``fragmented: true`` too, its last fragment).

**Never overwriting (``on_exists: number``, the default in the two modes above).** An
existing file is never replaced: the first free name of ``cam.mp4``, ``cam-1.mp4``,
``cam-2.mp4``, ... is created atomically (``O_EXCL``, see ``stages.sinks.durable``), so a
camera restarted after a crash, here or on another node sharing the storage, continues in a
new file; segments continue at the first free index. ``on_exists: overwrite`` (the plain
mode's default, as always) replaces the file.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av

from pipeline.config import register
from pipeline.errors import ConfigError, SinkError
from pipeline.frame import Frame
from pipeline.stage import Sink
from stages.sinks.durable import Syncer, claim, create, numbered, segment
from stages.sinks.fit import even_size, fit

log = logging.getLogger("framegraph")
CODEC_PREFERENCE = ("libx264", "h264", "libopenh264", "mpeg4", "mjpeg")
"""Tried in order by ``codec: auto``; the first encoder FFmpeg has wins."""
MP4_SUFFIXES = (".mp4", ".mov", ".m4v")
"""Suffixes FFmpeg writes with its mov muxer (faststart and fragments apply)."""
CRASH_SAFE_MUXER = {
    "movflags": "+frag_keyframe+empty_moov+default_base_moof+negative_cts_offsets",
    "flush_packets": "1",
}
"""Muxer options of ``fragmented: true`` (each one's reason in the module doc)."""
CRASH_SAFE_KEYFRAME_SECONDS = 2.0
"""Default keyframe interval of ``fragmented: true`` (the usual one of live streaming): what a
kill may lose, against the size keyframes cost."""


def pick_encoder(codec: str = "auto") -> str:
    """Name of the encoder to use: ``codec`` itself, or the best one available.

    Raises:
        SinkError: the requested encoder (or every fallback) is missing.
    """
    candidates = CODEC_PREFERENCE if codec == "auto" else (codec,)
    for name in candidates:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.error.FFmpegError, ValueError):
            continue
    raise SinkError(f"no usable video encoder among {', '.join(candidates)}")


@register("video_file")
class VideoFileSink(Sink):
    """Writes frames to a video file (or to segments); layouts and trade-offs in the module doc.

    The file opens on the first frame (its size sets the stream's); later frames of another
    size are resized to it. Odd sizes are cropped to even for yuv420p.

    Args:
        path: output file; the container follows the suffix (.mp4, .mkv, .mov, ...).
        codec: encoder name or ``auto`` (libx264, else the best available).
        crf: quality for x264 (lower = better, bigger).
        preset: x264 speed preset.
        fps: nominal frame rate for the encoder's rate control (PTS still decide timing).
        faststart: put the mp4 index at the front (plays while downloading); ignored with
            ``fragmented``.
        threads: encoder threads (0 = FFmpeg's choice, usually one per core).
        fragmented: crash-safe fragmented MP4 (.mp4, .mov, .m4v): a killed process leaves a
            file that plays up to its last complete fragment.
        keyframe_seconds: force a keyframe on the first frame this many seconds of source
            time after the last one (by PTS, so a source slower than ``fps`` or one that
            drops frames still gets one per interval); it bounds what a kill loses in
            ``fragmented`` mode. None: ``CRASH_SAFE_KEYFRAME_SECONDS`` when ``fragmented``,
            else the encoder's own interval (x264: 250 frames).
        segment_seconds: start a new file every this many seconds of source time (None: one
            file).
        on_exists: ``number`` never replaces a file (writes ``<stem>-1<suffix>``, ... or the
            next free segment instead); ``overwrite`` replaces it. None: ``number`` when
            ``fragmented`` or ``segment_seconds`` is set, else ``overwrite``.
    """

    def __init__(
        self,
        path: str,
        codec: str = "auto",
        crf: int = 23,
        preset: str = "veryfast",
        fps: float = 30.0,
        faststart: bool = True,
        threads: int = 0,
        fragmented: bool = False,
        keyframe_seconds: float | None = None,
        segment_seconds: float | None = None,
        on_exists: Literal["overwrite", "number"] | None = None,
    ) -> None:
        self.path = Path(path)
        if fragmented and self.path.suffix.lower() not in MP4_SUFFIXES:
            raise ConfigError(
                f"video_file: fragmented needs an MP4 file ({', '.join(MP4_SUFFIXES)}), "
                f"got {self.path.name!r}"
            )
        for key, value in (("keyframe_seconds", keyframe_seconds),
                           ("segment_seconds", segment_seconds)):  # fmt: skip
            if value is not None and not value > 0:
                raise ConfigError(f"video_file: {key} must be above 0, got {value}")
        self.codec = codec
        self.crf, self.preset = crf, preset
        self.fps = fps
        self.faststart = faststart
        self.threads = threads
        self.fragmented = fragmented
        self.keyframe_seconds = keyframe_seconds
        if keyframe_seconds is None and fragmented:
            self.keyframe_seconds = CRASH_SAFE_KEYFRAME_SECONDS
        self.segment_seconds = segment_seconds
        if on_exists is None:
            on_exists = "number" if fragmented or segment_seconds is not None else "overwrite"
        self.on_exists = on_exists
        self.files: list[Path] = []
        """Every file written or being written, in order (one per segment)."""
        self.frames_written = 0
        self.frames_flushed = 0
        """Frames in the kernel's hands: in complete fragments, or in files already closed."""
        self.frames_muxed = 0
        """Frames out of the encoder and into the muxer (the others wait in the encoder)."""
        self._file_first = 0  # ``frames_muxed`` when the current file opened
        self._number = 0  # next name number (or segment index) to try
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._syncer: Syncer | None = None
        self._size: tuple[int, int] | None = None
        # set by the first frame:
        self._time_base = Fraction(1)  # the output's, the first frame's time base
        self._origin = 0  # PTS (in ``_time_base``) that becomes 0 in the current file
        self._file_start = Fraction(0)  # source time (s) of the current file's first frame
        self._last_key = Fraction(0)  # source time (s) of the last keyframe made
        self._last_pts: int | None = None

    def written(self) -> list[str]:
        """Every file opened so far (a new one per segment; ``name-1.mp4`` where
        ``on_exists: number`` found the name taken)."""
        return [str(path) for path in self.files]

    @property
    def current(self) -> Path | None:
        """The file being written (None before the first frame and after close)."""
        return self.files[-1] if self._container is not None else None

    def open(self) -> None:
        self.encoder = pick_encoder(self.codec)
        parent = self.path.parent
        if not parent.exists():
            try:
                parent.mkdir(parents=True)
            except OSError as error:
                raise SinkError(f"cannot create output folder {parent}: {error.strerror}") from None
        if self.path.is_dir():
            raise SinkError(f"output path is a directory: {self.path}")

    def _name(self, number: int) -> Path:
        if self.segment_seconds is not None:
            return segment(self.path, number)
        return numbered(self.path, number)

    def _create(self) -> tuple[Path, int]:
        """Create the next file by the ``on_exists`` policy; its path and a descriptor."""
        if self.on_exists == "overwrite":
            path = self._name(self._number)
            fd = create(path)
        else:
            first = self._number
            self._number, path, fd = claim(self._name, first)
            if self._number != first:  # a restart, or another writer of the same name
                log.warning(
                    "%s: %s exists; writing %s", self.name or self.kind, self._name(first), path
                )
        self._number += 1
        return path, fd

    def _start(self, frame: Frame) -> None:
        if self._size is None:
            self._size = even_size(frame.image)
            self._time_base = Fraction(frame.time_base)
        path, fd = self._create()
        if self.fragmented:
            options = dict(CRASH_SAFE_MUXER)
        elif self.faststart and path.suffix.lower() in MP4_SUFFIXES:
            options = {"movflags": "+faststart"}
        else:
            options = {}
        try:
            # FFmpeg opens the file by name again (truncating the empty file just created);
            # the descriptor kept here is for fsync, which covers every descriptor of a file.
            self._container = av.open(str(path), mode="w", options=options)
        except (av.error.FFmpegError, OSError) as error:
            os.close(fd)
            raise SinkError(f"cannot write {path}: {error}") from None
        if self.fragmented:
            self._syncer = Syncer(fd, path)
        else:
            os.close(fd)
        self.files.append(path)
        log.info("writing %s", path)
        stream = self._container.add_stream(
            self.encoder, rate=Fraction(self.fps).limit_denominator(1001)
        )
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = self.threads
        stream.codec_context.time_base = self._time_base
        stream.time_base = self._time_base
        if self.encoder == "libx264":
            stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream
        self._file_first = self.frames_muxed
        self._last_pts = None
        seconds = frame.pts * frame.time_base
        self._file_start = self._last_key = seconds  # a new encoder starts with a keyframe
        # a segment is a file of its own: its timestamps start at 0 (an MP4 starting at 60 s
        # would open on 60 s of nothing in most players)
        self._origin = round(seconds / self._time_base) if self.segment_seconds else 0

    def write(self, frame: Frame) -> None:
        seconds = frame.pts * frame.time_base
        if self._container is None:
            self._start(frame)
        elif self.segment_seconds and seconds - self._file_start >= self.segment_seconds:
            self._finish()
            self._start(frame)
        image = fit(frame.image, self._size)  # type: ignore[arg-type]
        pts = round(seconds / self._time_base) - self._origin
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # muxers need strictly increasing PTS
        self._last_pts = pts
        video = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        video.pts = pts
        video.time_base = self._time_base
        if self.keyframe_seconds and seconds - self._last_key >= self.keyframe_seconds:
            video.pict_type = av.video.frame.PictureType.I  # an IDR frame from libx264
            self._last_key = seconds
        self._mux(self._stream.encode(video))  # type: ignore[union-attr]
        self.frames_written += 1

    def _mux(self, packets: list[av.Packet]) -> None:
        # The mov muxer cuts a fragment when a keyframe arrives after other packets of the file:
        # everything muxed before that keyframe is then in the file.
        flushed = None
        if self.fragmented:
            for offset, packet in enumerate(packets):
                if packet.is_keyframe and self.frames_muxed + offset > self._file_first:
                    flushed = self.frames_muxed + offset
        try:
            self._container.mux(packets)  # type: ignore[union-attr]
        except (av.error.FFmpegError, OSError) as error:
            raise SinkError(f"writing {self.current} failed: {error}") from None
        self.frames_muxed += len(packets)
        if flushed is not None:
            self.frames_flushed = flushed
            self._syncer.request()  # type: ignore[union-attr]

    def _finish(self) -> None:
        """Flush the encoder into the current file and close it (finalised, synced)."""
        path = self.files[-1]
        try:
            self._mux(self._stream.encode(None))  # type: ignore[union-attr]
        finally:
            try:
                self._container.close()  # type: ignore[union-attr]
            finally:
                self._container = None
                if self._syncer is not None:
                    self._syncer.close()
                    self._syncer = None
        self.frames_flushed = self.frames_muxed
        log.info("wrote %d frames to %s", self.frames_muxed - self._file_first, path)

    def close(self) -> None:
        if self._container is not None:
            self._finish()
