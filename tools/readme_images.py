#!/usr/bin/env python3
"""Regenerate the README's pictures from real outputs.

Runs the default job (python run.py, faces) and the motion job if their outputs
are missing, then saves one output frame of each under docs/; renders a few frames
of the synthetic annotated video with their ground truth side by side.

    python tools/readme_images.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.results import Detections, PanopticSegmentation  # noqa: E402
from stages.render.annotators import (  # noqa: E402
    DetectionAnnotator,
    PanopticAnnotator,
    render_iuv,
)
from synthetic.categories import BY_ID, CATEGORIES  # noqa: E402
from synthetic.generator import SyntheticFrame, generate  # noqa: E402

JOBS = {  # picture: (config, its video output, frame index)
    "default_job.jpg": ("configs/faces.yaml", "out/faces.mp4", 125),
    "motion_job.jpg": ("configs/motion.yaml", "out/motion.mp4", 120),
    "counting_job.jpg": ("configs/counting.yaml", "out/counting.mp4", 200),
    "instances_job.jpg": ("configs/instances.yaml", "out/instances.mp4", 62),
    "translate_people_job.jpg": ("configs/translate_people.yaml", "out/translate_people.mp4", 51),
    "panoptic_job.jpg": ("configs/panoptic.yaml", "out/panoptic.mp4", 60),
    "densepose_job.jpg": ("configs/densepose.yaml", "out/densepose.mp4", 40),
}
TRANSLATION = ("translation.jpg", 60)  # picture, frame of the street clip
TRANSLATIONS = (("input", None, 0), ("multistyle26, style 7", "multistyle26", 7),
                ("style 19", "multistyle26", 19),
                ("styles 3 + 12 mixed", "multistyle26", {3: 1, 12: 1}),
                ("vintagify CycleGAN", "vintagify", 0))  # fmt: skip


SYNTHETIC = ("synthetic_ground_truth.jpg", 11, (0, 45, 90))  # picture, seed, frames shown
COLUMNS = ("frame", "instances (COCO)", "panoptic", "IUV: part I", "IUV: U, V lines")


def ground_truth_panels(frame: SyntheticFrame) -> list[np.ndarray]:
    """The frame and its instance, panoptic and IUV ground truth, drawn by our annotators."""
    things = frame.things()
    instances = Detections(
        boxes=[(x, y, x + w, y + h) for x, y, w, h in (s.bbox for s in things)],
        scores=np.ones(len(things)),
        class_ids=[s.category_id for s in things],
        track_ids=[s.track_id for s in things],
        masks=np.stack([frame.mask(s.id) for s in things]) if things else None,
        class_names=tuple(BY_ID[i].name if i in BY_ID else "" for i in range(len(CATEGORIES) + 1)),
    )
    segments = {
        sid: {"class": s.category_id, "is_thing": s.isthing, "track_id": s.track_id,
              "area": s.area}
        for sid, s in frame.segments.items()
    }  # fmt: skip
    panoptic = PanopticSegmentation(frame.panoptic, segments)
    stuff = {c.id: c.colour for c in CATEGORIES if not c.isthing}
    dim = (frame.image * 0.45).astype(np.uint8)
    return [
        frame.image.copy(),
        DetectionAnnotator(thickness=1, mask_alpha=0.6).annotate(frame.image.copy(), instances),
        PanopticAnnotator(alpha=0.85, stuff_colours=stuff).annotate(frame.image.copy(), panoptic),
        render_iuv(dim.copy(), frame.iuv, "parts", alpha=1.0),
        render_iuv(render_iuv(dim.copy(), frame.iuv, "u", 0.5), frame.iuv, "contours", 1.0),
    ]


def synthetic_picture() -> Path:
    """docs/synthetic_ground_truth.jpg: rows of frames, columns of ground truth."""
    picture, seed, shown = SYNTHETIC
    rows = []
    for frame in generate(seed, max(shown) + 1, 320, 320):
        if frame.index in shown:
            rows.append(np.hstack(ground_truth_panels(frame)))
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    for i, title in enumerate(COLUMNS):
        cv2.putText(header, title, (i * 320 + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    target = ROOT / "docs" / picture
    cv2.imwrite(str(target), np.vstack([header, *rows]), [cv2.IMWRITE_JPEG_QUALITY, 82])
    return target


def translation_picture() -> Path:
    """docs/translation.jpg: one street frame through the packaged translation networks."""
    from stages.translate import Translate

    picture, index = TRANSLATION
    with av.open(str(ROOT / "media" / "pedestrians.mp4")) as container:
        for i, decoded in enumerate(container.decode(video=0)):
            if i == index:
                image = cv2.resize(decoded.to_ndarray(format="bgr24"), (384, 288),
                                   interpolation=cv2.INTER_AREA)  # fmt: skip
                break
    panels = []
    for title, network, style in TRANSLATIONS:
        panel = image.copy()
        if network is not None:
            stage = Translate(network=network, style=style, consistency="off")
            stage.open()
            panel = stage.translate(image)
        cv2.putText(panel, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 3,
                    cv2.LINE_AA)  # fmt: skip
        cv2.putText(panel, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                    cv2.LINE_AA)  # fmt: skip
        panels.append(panel)
    target = ROOT / "docs" / picture
    cv2.imwrite(str(target), np.hstack(panels), [cv2.IMWRITE_JPEG_QUALITY, 82])
    return target


def service_picture() -> Path:
    """docs/service_page.jpg: the service's web page, taken by headless Chromium (Debian's,
    driven by Playwright) from a real run: the faces job serving two looped clips, each tile
    playing its annotated stream over WebRTC."""
    import signal
    import socket
    import time
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = ROOT / "out" / "service"
    job = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), str(ROOT / "configs" / "faces.yaml"),
         "--source", f"door={ROOT / 'media' / 'faces.mp4'}",
         "--source", f"street={ROOT / 'media' / 'pedestrians.mp4'}",
         "--realtime", "--loop", "--output", str(out / "{source}.mp4"),
         "--set", f"events.path={out / 'events.jsonl'}", "--serve", "rtsp://127.0.0.1:0/{source}",
         "--api", f"127.0.0.1:{port}", "--no-progress"],
        cwd=ROOT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    target = ROOT / "docs" / "service_page.jpg"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{url}/readyz") as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True,
                args=["--no-sandbox", "--disable-features=WebRtcHideLocalIpsWithMdns"],
            )  # fmt: skip
            page = browser.new_page(viewport={"width": 1360, "height": 820})
            page.goto(url)
            page.wait_for_function(
                "() => [...document.querySelectorAll('video')].filter(v => v.videoWidth > 0)"
                ".length == 2", timeout=60000,
            )  # fmt: skip
            page.wait_for_timeout(4000)  # rates and the stage table filled in
            page.screenshot(path=str(target), type="jpeg", quality=80)
            browser.close()
    finally:
        job.send_signal(signal.SIGINT)
        job.wait(60)
    return target


def main() -> None:
    for picture, (config, output, index) in JOBS.items():
        video = ROOT / output
        if not video.exists():
            subprocess.run([sys.executable, str(ROOT / "run.py"), config, "--no-progress"],
                           cwd=ROOT, check=True)  # fmt: skip
        target = ROOT / "docs" / picture
        target.parent.mkdir(exist_ok=True)
        with av.open(str(video)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i == index:
                    frame.to_image().save(target, quality=80)
                    break
        print(f"wrote {target.relative_to(ROOT)}")
    print(f"wrote {synthetic_picture().relative_to(ROOT)}")
    print(f"wrote {translation_picture().relative_to(ROOT)}")
    print(f"wrote {service_picture().relative_to(ROOT)}")


if __name__ == "__main__":
    main()
