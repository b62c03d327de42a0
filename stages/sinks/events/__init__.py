"""Event outputs: what the ``zones`` stage's :class:`~pipeline.results.Analytics` saw, one
message per :class:`~pipeline.results.Event` (not per frame).

- ``event_log``: JSON lines in a file, flushed per event.
- ``webhook``: an HTTP POST per event (or per batch) to a URL.
- ``mqtt``: a message per event on an MQTT broker, on a topic made from the event.

The webhook and MQTT outputs never make the graph wait on their receiver: ``write`` puts
the frame's events into a bounded queue that a thread of the sink's own empties (see
:mod:`stages.sinks.events.outbox`).
"""

from stages.sinks.events import jsonl, mqtt, webhook  # noqa: F401  (registers)
