"""Frame sinks: video files, JSON lines, RTSP, the web page's live view, a display, nothing."""

from stages.sinks import discard, display, jsonl, rtsp_push, rtsp_server, video_file, web  # noqa: F401  (registers)
