#!/usr/bin/env python3
"""FrameGraph command line: load a config, apply overrides, run the graph, report.

    python run.py                                   # the bundled default job
    python run.py configs/motion.yaml --source street.mp4 --output out.mp4
    python run.py configs/motion.yaml --source rtsp://cam/1 --output events.jsonl

Exit codes: 0 done, 2 config/usage, 3 input, 4 stream, 5 output, 6 stage
failure, 130 interrupted (outputs finalised), 1 unexpected.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "configs" / "faces.yaml"

log = logging.getLogger("framegraph")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run.py", description="Run a FrameGraph video analytics pipeline."
    )
    parser.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG), help="YAML config")
    parser.add_argument(
        "--source",
        action="append",
        metavar="[NAME=]INPUT",
        help="input: video file, image folder/glob, camera index, stream URL, or 'synthetic'; "
        "repeat for several (one process serves them all); NAME= names it (its source id)",
    )
    parser.add_argument(
        "--output", help="output: video file (.mp4, .mkv, ...), .jsonl events, or rtsp:// to push"
    )
    parser.add_argument(
        "--serve", help="also serve the output over RTSP, e.g. rtsp://127.0.0.1:8554/live"
    )
    parser.add_argument(
        "--api",
        metavar="HOST:PORT",
        help="service mode: a control API, /metrics and a web page on HOST:PORT; keeps "
        "running when sources end, until Ctrl-C / SIGTERM",
    )
    parser.add_argument(
        "--api-token",
        default=os.environ.get("FRAMEGRAPH_API_TOKEN"),
        help="bearer token the API's changing calls need (default: $FRAMEGRAPH_API_TOKEN)",
    )
    parser.add_argument(
        "--api-insecure", action="store_true", help="serve beyond this machine without a token"
    )
    parser.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="with --api: run the cameras on a Ray cluster (auto: the one on this machine, "
        "or a new one; else the head's HOST:PORT), moved when a node dies",
    )
    parser.add_argument("--device", help="where models run: cpu, cuda, cuda:N")
    parser.add_argument("--max-frames", type=int, help="stop after N frames per source")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="play file sources at their own pace (cameras and streams are already)",
    )
    parser.add_argument("--loop", action="store_true", help="loop file sources")
    parser.add_argument("--metrics-json", help="also write the final metrics as JSON here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="STAGE.KEY=VALUE",
        help="set a stage's (or pipeline., cluster.) parameter, VALUE read as YAML; repeatable, "
        "e.g. --set people.backend=torch",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar / status line")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser.parse_args(argv)


def apply_overrides(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Fold command-line options into the raw config dict (before validation)."""
    from pipeline.errors import ConfigError
    from pipeline.stage import Source
    from stages.sources import named_sources, source_args_for, split_name

    settings = raw.setdefault("pipeline", {}) or {}
    raw["pipeline"] = settings
    stages = raw.get("stages")
    if not isinstance(stages, list):
        raise ConfigError(f"{args.config}: 'stages' must be a list of stages")
    for key in ("device", "max_frames", "metrics_json"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.no_progress:
        settings["progress"] = False

    source_entries = [e for e in stages if _is_kind_of(e, Source)]
    if args.source is not None:
        if not source_entries:
            raise ConfigError(f"{args.config}: has no source stage to replace with --source")
        entry = source_entries[0]
        keep = {k: entry[k] for k in ("name", "queue", "on_error") if k in entry}
        entry.clear()
        name, uri = split_name(args.source[0])
        if len(args.source) == 1:
            entry.update(keep | source_args_for(uri) | ({"source_id": name} if name else {}))
        else:
            try:
                inputs = named_sources(args.source)
            except ValueError as error:
                raise ConfigError(str(error)) from None
            group = {n: source_args_for(u) for n, u in inputs.items()}
            entry.update(keep | {"kind": "sources", "sources": group})
    if args.realtime or args.loop:
        for entry in source_entries:  # a group's short forms (a list, NAME: "x.mp4") as entries
            if entry.get("kind") == "sources":
                given = entry.get("sources") or {}
                try:
                    named = named_sources(given) if isinstance(given, list) else given
                except ValueError as error:
                    raise ConfigError(f"sources: {error}") from None
                entry["sources"] = {n: source_args_for(u) if isinstance(u, str) else u
                                    for n, u in named.items()}  # fmt: skip
        files = [one for entry in source_entries
                 for one in (entry.get("sources", {}).values() if entry.get("kind") == "sources"
                             else [entry])
                 if isinstance(one, dict) and one.get("kind") == "file"]  # fmt: skip
        if not files:  # cameras and streams are paced and endless already
            raise ConfigError("--realtime and --loop apply to file sources, and none is given")
        for one in files:
            one["realtime"] = one.get("realtime") or args.realtime
            one["loop"] = one.get("loop") or args.loop
    if args.api is not None:  # a service: inputs come and go, the page shows every one
        for entry in source_entries[:1]:
            if entry.get("kind") != "sources":
                keep = {k: entry.pop(k) for k in ("name", "queue", "on_error") if k in entry}
                name = entry.pop("source_id", None) or _input_name(entry)
                single = dict(entry)
                entry.clear()
                entry.update(keep | {"kind": "sources", "sources": {name: single}})
            entry["keep_open"] = True
        _attach_sink(stages, "web", {})
    if args.output is not None:
        _set_output(stages, args.output)
    if args.serve is not None:
        _attach_sink(stages, "rtsp_server", {"url": args.serve})
    for assignment in args.set:
        _set_parameter(raw, assignment)
    return raw


def _set_parameter(raw: dict[str, Any], assignment: str) -> None:
    """Applies one ``--set STAGE.KEY=VALUE`` (or ``pipeline.KEY=VALUE``,
    ``cluster.KEY=VALUE``) to the raw config."""
    import yaml

    from pipeline.errors import ConfigError

    target, equals, text = assignment.partition("=")
    name, dot, key = target.partition(".")
    if not (equals and dot and name and key):
        raise ConfigError(f"--set {assignment}: expected STAGE.KEY=VALUE")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--set {assignment}: the value is not YAML") from None
    if name in ("pipeline", "cluster"):  # the config's own sections
        section = raw.get(name)
        raw[name] = {**(section if isinstance(section, dict) else {}), key: value}
        return
    entries = [e for e in raw["stages"] if isinstance(e, dict) and e.get("name") == name]
    if not entries:
        names = [e.get("name") for e in raw["stages"] if isinstance(e, dict)]
        raise ConfigError(f"--set {assignment}: no stage named {name!r} (stages: {names})")
    entries[0][key] = value


def _input_name(entry: dict[str, Any]) -> str:
    """A readable source id for a config's single source entry."""
    from stages.sources import input_of, readable_id

    return readable_id(input_of(entry))


def _is_kind_of(entry: Any, base: type) -> bool:
    """True if a raw config stage entry names a registered kind derived from ``base``."""
    from pipeline.config import STAGE_KINDS

    cls = STAGE_KINDS.get(entry.get("kind")) if isinstance(entry, dict) else None
    return cls is not None and issubclass(cls, base)


def _set_output(stages: list[dict[str, Any]], output: str) -> None:
    from pipeline.errors import ConfigError

    if output.startswith("rtsp://"):
        _attach_sink(stages, "rtsp_push", {"url": output})
    elif "://" in output:
        raise ConfigError(f"--output {output}: only rtsp:// is supported as a network output")
    elif output.endswith((".jsonl", ".ndjson")) or output == "-":
        _attach_sink(stages, "jsonl", {"path": output})
    else:
        _attach_sink(stages, "video_file", {"path": output})


def _attach_sink(stages: list[dict[str, Any]], kind: str, args: dict[str, Any]) -> None:
    """Point the config's first ``kind`` sink at ``args``, or add one fed by the
    stage that feeds the config's first sink (the last stage if it has none)."""
    from pipeline.stage import Sink

    entries = [e for e in stages if isinstance(e, dict)]
    existing = [e for e in entries if e.get("kind") == kind]
    if existing:
        existing[0].update(args)
        return
    sinks = [e for e in entries if _is_kind_of(e, Sink)]
    if sinks and sinks[0].get("inputs"):
        feeder = sinks[0]["inputs"][0]
    elif sinks:
        feeder = entries[entries.index(sinks[0]) - 1].get("name")
    else:
        feeder = entries[-1].get("name")
    stages.append({"name": f"{kind}_output", "kind": kind, **args, "inputs": [feeder]})


def run(args: argparse.Namespace) -> int:
    import stages  # noqa: F401  (registers the stage kinds)
    from pipeline.config import build_graph, load_yaml, parse_config
    from pipeline.errors import EXIT_INTERRUPTED
    from pipeline.metrics import write_json
    from pipeline.progress import ProgressDisplay

    origin = Path(args.config).name
    raw = load_yaml(args.config)
    parse_config(raw, origin)  # report mistakes in the file itself before overriding
    if args.ray is not None:
        return _serve_cluster(args, apply_overrides(raw, args), origin)
    config = parse_config(apply_overrides(raw, args), origin)
    graph = build_graph(config)
    server = _start_api(args, graph) if args.api is not None else None
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(config.pipeline.threads)

    def on_signal(signum: int, _frame: Any) -> None:
        log.warning(
            "%s: finishing the frames in flight (again to stop at once)",
            signal.Signals(signum).name,
        )
        graph.interrupt()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    progress = None
    if config.pipeline.progress is not False:
        progress = ProgressDisplay(graph.metrics, graph.expected_frames, config.pipeline.progress)
    try:
        report = graph.run()
    finally:
        if progress is not None:
            progress.close()
        if server is not None:
            server.stop()
    if any(stage.processed for stage in report.metrics.stages.values()):
        print(report.metrics.table(), file=sys.stderr)
    if config.pipeline.metrics_json:
        write_json(report.metrics, config.pipeline.metrics_json)
    if report.error is not None:
        raise report.error
    return EXIT_INTERRUPTED if report.interrupted else 0


def _start_api(args: argparse.Namespace, graph: Any) -> Any:
    """The service's HTTP server, started beside the graph (before its stages open, so
    ``/healthz`` answers while models load)."""
    from service.app import check_exposure, create_app, parse_bind
    from service.server import ApiServer

    host, port = parse_bind(args.api)
    check_exposure(host, args.api_token, args.api_insecure)
    server = ApiServer(create_app(graph, args.api_token), host, port)
    server.start()
    log.warning("serving the API and the page on %s", server.url)
    return server


def _serve_cluster(args: argparse.Namespace, raw: dict[str, Any], origin: str) -> int:
    """Service mode on a Ray cluster (``--ray``): the config checked here, the rest in
    ``service.cluster_app``."""
    from pipeline.config import parse_config
    from service.app import check_exposure, parse_bind
    from service.cluster_app import serve_cluster

    parse_config(raw, origin)  # overrides' mistakes reported before joining a cluster
    host, port = parse_bind(args.api)
    check_exposure(host, args.api_token, args.api_insecure)
    return serve_cluster(raw, args.ray, (host, port), args.api_token)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(name)s: %(levelname)s: %(message)s",
    )
    sys.path.insert(0, str(ROOT))
    from pipeline.errors import EXIT_INTERRUPTED, FrameGraphError

    try:
        if args.ray is not None and args.api is None:
            from pipeline.errors import ConfigError

            raise ConfigError("--ray needs --api HOST:PORT (the cluster runs as a service)")
        return run(args)
    except FrameGraphError as error:
        if args.debug:
            log.exception("traceback")
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.debug:
            raise
        print(
            f"error: unexpected {type(error).__name__}: {error} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
