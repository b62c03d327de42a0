#!/usr/bin/env python3
"""Regenerate the README's pictures from real outputs.

Runs the default job (python run.py) if its output is missing, then saves one
annotated frame of it as docs/default_job.jpg.

    python tools/readme_images.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    video = ROOT / "out" / "default.mp4"
    if not video.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "--no-progress"], cwd=ROOT, check=True
        )
    target = ROOT / "docs" / "default_job.jpg"
    target.parent.mkdir(exist_ok=True)
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == 120:
                frame.to_image().save(target, quality=80)
                break
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
