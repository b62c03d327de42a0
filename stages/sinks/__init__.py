"""Frame sinks: video files, JSON lines, a display window, nothing."""

from stages.sinks import discard, display, jsonl, rtsp_push, rtsp_server, video_file  # noqa: F401  (registers)
