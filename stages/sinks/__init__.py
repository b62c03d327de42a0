"""Frame sinks: video files, JSON lines, a display window, nothing."""

from stages.sinks import discard, display, jsonl, video_file  # noqa: F401  (registers)
