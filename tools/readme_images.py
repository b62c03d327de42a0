#!/usr/bin/env python3
"""Regenerate the README's pictures from real outputs.

Runs the default job (python run.py, faces) and the motion job if their outputs
are missing, then saves one output frame of each under docs/.

    python tools/readme_images.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]


JOBS = {  # picture: (config, its video output, frame index)
    "default_job.jpg": ("configs/faces.yaml", "out/faces.mp4", 125),
    "motion_job.jpg": ("configs/motion.yaml", "out/motion.mp4", 120),
}


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


if __name__ == "__main__":
    main()
