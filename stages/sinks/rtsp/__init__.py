"""An RTSP/1.0 server and an H.264 RTP packetiser (RFC 2326, RFC 3550, RFC 6184),
used by the ``rtsp_server`` sink; written on PyAV (libx264) and the standard library."""
