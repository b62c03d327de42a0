"""Frame sinks: video files, JSON lines, RTSP, the web page's live view, a display, nothing;
event clips and event outputs (``events``: a JSONL log, webhooks, MQTT)."""

from stages.sinks import (  # noqa: F401  (registers)
    clips,
    discard,
    display,
    events,
    jsonl,
    rtsp_push,
    rtsp_server,
    video_file,
    web,
)
