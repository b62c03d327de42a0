"""Runs the app with uvicorn on a thread of its own, beside the graph."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from pipeline.errors import ConfigError


class ApiServer:
    """``app`` served on ``host:port`` until :meth:`stop`.

    Raises:
        ConfigError: from :meth:`start`, when the address cannot be bound.
    """

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host, self.port = host, port
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self.thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not self.server.started:
            raise ConfigError(f"--api {self.host}:{self.port}: cannot serve there (in use?)")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
