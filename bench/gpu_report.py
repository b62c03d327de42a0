"""bench/gpu.py's results as text: ``gpu.md`` (tables for the README) and the compact table it
prints last (the device tool returns only the last 12,000 characters of a call's output).

Cells: a number, ``skip`` (not run: no CUDA, no TensorRT, the time box) or ``ERR`` (it failed);
the notes under the tables say why, one line per reason.
"""

from __future__ import annotations

import json
import math
from typing import Any

VARIANTS = {  # timing key -> what it is, for the video-mode table
    "fp32": "torch fp32",
    "half": "torch {half}",
    "half_cl": "torch {half} NHWC",
    "half_graph": "torch {half} + CUDA graph",
    "trt_half": "TensorRT fp16",
}

SHORT = {"fp32": "fp32", "half": "{half}", "half_cl": "{half} NHWC", "half_graph": "{half}+graph",
         "trt_half": "TensorRT fp16"}  # fmt: skip


def describe(error: BaseException) -> str:
    """``Type: first line of the message``, short enough for a table."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def fmt(value: Any, kind: str = "ms") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if kind == "rel":
        return f"{value:.1e}"
    if kind == "rate":
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def cell(entry: dict[str, Any] | None, key: str = "ms", kind: str = "ms") -> str:
    if not entry:
        return "–"
    if "error" in entry:
        return "ERR"
    if "skipped" in entry:
        return "skip"
    return fmt(entry.get(key), kind)


def parity_cell(entry: dict[str, Any] | None, with_max: bool = False) -> str:
    text = cell(entry, "rel_l2", "rel")
    if entry and "rel_l2" in entry:
        if with_max:
            text = f"{fmt(entry['max_abs'], 'rel')} / {text}"
        if not entry.get("finite", True):
            text += " NaN/inf"
    return text


def sweep_cell(graph: dict[str, Any]) -> str:
    sweep = graph.get("sweep")
    if not sweep or "best_batch" not in sweep:
        return cell(sweep)
    return f"{fmt(sweep['best_images_per_s'], 'rate')} (b{sweep['best_batch']})"


def notes(models: dict[str, Any]) -> list[str]:
    """Why cells say ERR or skip, which outputs were not finite, which sweeps stopped early:
    one line per reason, with where."""
    found: dict[str, list[str]] = {}
    for case in models["cases"]:
        key = case["key"]
        items = [(key, note) for note in case.get("notes", [])]
        items += [(key, case[k]) for k in ("skipped", "error") if k in case]
        for graph in case.get("graphs", []):
            where = f"{key}/{graph['name']}"
            steps = [*graph["timings"].items(), *graph["parity"].items()]
            steps.append(("sweep", graph.get("sweep")))
            for name, value in steps:
                if not isinstance(value, dict):
                    continue
                if "error" in value or "skipped" in value:
                    items.append((f"{where} {name}", value.get("error") or value.get("skipped")))
                elif value.get("finite") is False:
                    items.append((f"{where} {name}", "outputs not finite (NaN or inf)"))
                elif value.get("stopped"):
                    items.append((f"{where} {name}", f"stopped: {value['stopped']}"))
        full = case.get("full")
        if isinstance(full, dict) and ("error" in full or "skipped" in full):
            items.append((f"{key}/full", full.get("error") or full.get("skipped")))
        for where, reason in items:
            found.setdefault(reason, []).append(where)
    lines = []
    for reason, places in found.items():
        shown = ", ".join(places[:4]) + (f" and {len(places) - 4} more" if len(places) > 4 else "")
        lines.append(f"{shown}: {reason}")
    return lines


def job_line(job: dict[str, Any]) -> str:
    """One pipeline job in a line."""
    if "skipped" in job or "error" in job:
        return job.get("skipped") or job["error"]
    slowest = max(job["stages"].items(), key=lambda kv: kv[1]["p50_ms"] or 0)
    video = job.get("video", {})
    written = ""
    if "frames" in video:
        written = f", {video['frames']} frames {video['codec']} read back"
    elif video:
        written = f", output: {video['error']}"
    return (
        f"{job['frames_out']} frames, {job['fps']:.1f} fps, e2e p50 {fmt(job['e2e_p50_ms'])} ms, "
        f"slowest {slowest[0]} p50 {fmt(slowest[1]['p50_ms'])} ms{written}"
    )


def header_line(results: dict[str, Any]) -> str:
    h = results["header"]
    gpu = h["gpu"]
    if "capability" in h:
        gpu += f" (compute capability {h['capability']}, {h['memory_gib']} GiB)"
    text = (
        f"`{results['command']}` on {gpu}; torch {h['torch']}, CUDA {h['cuda']}, "
        f"cuDNN {h['cudnn']}, TensorRT {h['tensorrt']}, onnxruntime {h['onnxruntime']}, "
        f"Python {h['python']}, {h['cpu_count']} CPU cores"
    )
    if h.get("nvidia_smi"):
        text += f"; nvidia-smi (driver, power limit, max SM clock): {h['nvidia_smi']}"
    tf32 = h["tf32"]
    return text + (
        f". cuDNN autotuning on; TF32 matmul {tf32['matmul']}, cuDNN {tf32['cudnn']} (torch's "
        "defaults)."
    )


def models_markdown(models: dict[str, Any], half: str, device: str) -> list[str]:
    top = max(models.get("batches", [32]))
    lines = [
        "",
        f"Models: batch-1 latency in ms (median), parity on one synthetic frame; {half}: "
        f"TorchBackend half precision; NHWC: channels_last; best batch: the highest {half} "
        f"images/s of batches 1..{top}.",
        "",
        f"| model | graph | input | {device} fp32 vs CPU: max abs / rel L2 | {half} vs fp32 "
        f"rel L2 | fp32 | {half} | {half} NHWC | {half} + CUDA graph | TensorRT fp16 "
        "| best batch: images/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in models["cases"]:
        label = case.get("label", case["key"])
        if "skipped" in case or ("error" in case and not case.get("graphs")):
            reason = case.get("skipped") or case.get("error")
            lines.append(f"| {label} | – | – | {reason} | | | | | | | |")
        for graph in case.get("graphs", []):
            p, t = graph["parity"], graph["timings"]
            cells = [
                label,
                graph["name"],
                graph["input"],
                parity_cell(p.get("fp32_vs_cpu"), True),
                parity_cell(p.get("half_vs_fp32")),
            ]
            cells += [cell(t.get(k)) for k in ("fp32", "half", "half_cl", "half_graph", "trt_half")]
            lines.append("| " + " | ".join([*cells, sweep_cell(graph)]) + " |")
    for case in models["cases"]:
        video = case.get("video")
        if not video or not video.get("rows"):
            continue
        lines += [
            "",
            f"{case['label']}, video mode (a keyframe every 5th frame, the others warped from it;"
            " the network alone): FPS = 5 / (t_key + 4 t_nonkey)",
            "",
            "| backend | keyframe ms | non-keyframe ms | FPS |",
            "|---|---|---|---|",
        ]
        for name, row in video["rows"].items():
            what = VARIANTS[name].format(half=half)
            fps = fmt(row["fps"], "rate")
            lines.append(
                f"| {what}, batch 1 | {fmt(row['key_ms'])} | {fmt(row['nonkey_ms'])} | {fps} |"
            )
        if "best" in video:
            best = video["best"]
            what = f"torch {half}, batch {best['batch']} (frames/s over the batch)"
            lines.append(f"| {what} | | | {fmt(best['fps'], 'rate')} |")
        if "published" in video:
            published = video["published"]
            lines.append(
                f"| published: TensorRT, RTX 2080 Ti | | | {published['tensorrt_rtx2080ti']} |"
            )
            lines.append(f"| published: without TensorRT | | | {published['no_tensorrt']} |")
    fulls = [case for case in models["cases"] if isinstance(case.get("full"), dict)]
    if fulls:
        lines += [
            "",
            "Full per-frame tests (the model's own `inference`: proposals, NMS, masks), fp32, "
            "batch 1:",
            "",
            "| model | test | ms | device against the CPU |",
            "|---|---|---|---|",
        ]
        for case in fulls:
            full = case["full"]
            versus = json.dumps(full["cpu_vs_device"]) if "cpu_vs_device" in full else "–"
            name = full.get("name", "inference")
            lines.append(f"| {case.get('label', case['key'])} | {name} | {cell(full)} | {versus} |")
    found = notes(models)
    if found:
        lines += ["", "Notes:", "", *(f"- {note}" for note in found)]
    return lines


def pipeline_markdown(pipe: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Pipeline end to end (`run.py configs/JOB.yaml --device DEVICE --max-frames N`, H.264 "
        "encoded on the CPU; fps over the run, model loading excluded):",
        "",
    ]
    if "skipped" in pipe:
        return [*lines, f"pipeline: skipped ({pipe['skipped']})"]
    lines += [
        "| job | frames | fps | end-to-end p50 ms | per-stage p50 ms | output | changes |",
        "|---|---|---|---|---|---|---|",
    ]
    for job in pipe["jobs"]:
        if "skipped" in job or "error" in job:
            lines.append(f"| {job['job']} | {job.get('skipped') or job['error']} | | | | | |")
            continue
        stages = ", ".join(f"{name} {fmt(s['p50_ms'])}" for name, s in job["stages"].items())
        video = job.get("video", {})
        written = f"{video['frames']} frames {video['codec']}" if "frames" in video else None
        cells = [
            job["job"],
            str(job["frames_out"]),
            fmt(job["fps"]),
            fmt(job["e2e_p50_ms"]),
            stages,
            written or video.get("error", "–"),
            "; ".join(job["changes"]) or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """gpu.md: the header, then a table per section (ready to paste into the README)."""
    h = results["header"]
    lines = [f"### GPU check: {h['gpu']}, {h['date'][:10]}", "", header_line(results)]
    for name, section in results["sections"].items():
        if "merged_from" in section:
            lines += ["", f"The {name} section comes from {section['merged_from']}."]
    models = results["sections"].get("models")
    if models:
        lines += models_markdown(models, h["half"], h["device"].split(":")[0])
    pipe = results["sections"].get("pipeline")
    if pipe:
        lines += pipeline_markdown(pipe)
    return "\n".join(lines) + "\n"


def summary(results: dict[str, Any], sections: list[str]) -> str:
    """The compact table of the sections this run ran."""
    h = results["header"]
    half = h["half"]
    lines = [
        f"== {h['gpu']} | torch {h['torch']} | CUDA {h['cuda']} | TensorRT {h['tensorrt']} "
        f"| {h['date']} =="
    ]
    models = results["sections"].get("models") if "models" in sections else None
    if models:
        lines.append(
            f"{'case/graph':30} {'fp32~cpu':>8} {half + '~32':>8} {'fp32':>6} {half:>6} "
            f"{'NHWC':>6} {'graph':>6} {'trt':>5} {'best img/s':>13}"
        )
        for case in models["cases"]:
            if "skipped" in case or ("error" in case and not case.get("graphs")):
                lines.append(f"{case['key']:30} {case.get('skipped') or case.get('error')}"[:200])
            for graph in case.get("graphs", []):
                p, t = graph["parity"], graph["timings"]
                times = [f"{cell(t.get(k)):>6}" for k in ("fp32", "half", "half_cl", "half_graph")]
                parities = [f"{parity_cell(p.get(k)):>8}" for k in ("fp32_vs_cpu", "half_vs_fp32")]
                lines.append(
                    f"{case['key'] + '/' + graph['name']:30.30} {' '.join(parities)} "
                    f"{' '.join(times)} {cell(t.get('trt_half')):>5} {sweep_cell(graph):>13}"
                )
            full = case.get("full")
            if isinstance(full, dict):
                versus = json.dumps(full.get("cpu_vs_device", {}))
                text = f"{case['key'] + '/full':30.30} fp32 {cell(full)} ms; vs cpu {versus}"
                lines.append(text[:200])
            video = case.get("video")
            if video and video.get("rows"):
                rows = ", ".join(
                    f"{SHORT[k].format(half=half)} {fmt(v['fps'], 'rate')}"
                    for k, v in video["rows"].items()
                )
                text = f"  video-mode FPS (key + 4 warped), batch 1: {rows}"
                if "best" in video:
                    text += f"; batch {video['best']['batch']}: {fmt(video['best']['fps'], 'rate')}"
                if "published" in video:
                    published = video["published"]
                    text += (
                        f" | published {published['tensorrt_rtx2080ti']} FPS (TensorRT, "
                        f"RTX 2080 Ti), {published['no_tensorrt']} FPS without TensorRT"
                    )
                lines.append(text)
        found = notes(models)
        lines += [f"  note: {note}"[:240] for note in found[:12]]
        if len(found) > 12:
            lines.append(f"  ... {len(found) - 12} more notes in gpu.md")
    pipe = results["sections"].get("pipeline") if "pipeline" in sections else None
    if pipe and "skipped" in pipe:
        lines.append(f"pipeline: skipped ({pipe['skipped']})")
    elif pipe:
        lines += [f"pipeline {job['job']:10} {job_line(job)}"[:240] for job in pipe["jobs"]]
    return "\n".join(lines)
