#!/usr/bin/env bash
# The device side of bench/gpu.py, on the lent GPU machine (its docstring has the run calls;
# tools/device_packages.sh makes what they carry). /tmp outlives a call while the machine stays
# warm, so part 1's packages and PyAV's first half wait there for the pipeline call.
#
#   bash bench/gpu_device.sh models     # carry .device/part1: install it under /tmp/fg_site,
#                                       # keep av.tar.xz.1 in /tmp/fg_device, run the models section
#   bash bench/gpu_device.sh pipeline   # carry .device/part2: join PyAV's halves, unpack, run the
#                                       # pipeline section, merged with the models section's results
#   bash bench/gpu_device.sh stash      # carry .device/part1: only install and keep (when the
#                                       # pipeline call found the machine cold)
#
# Options after the section go to bench/gpu.py (e.g. --cases retinaface; --smoke to rehearse on a
# CPU: PY_VERSION=3.11 AV=av==18.1.0 bash tools/device_packages.sh makes parts for Python 3.11).
#
# Results go to $OUT (else out/gpu): gpu.json, gpu.md, pipeline/; a copy stays in /tmp/fg_device.
# Time boxes: BUDGET_MODELS (default 270 s), BUDGET_PIPELINE (default 180 s); PYTHON: the
# interpreter (default python3, the device's Python 3.12 with torch).
set -uo pipefail
cd "$(dirname "$0")/.."

section=${1:?usage: bash bench/gpu_device.sh models|pipeline|stash [bench/gpu.py options]}
shift
extra=("$@") # e.g. --cases retinaface, or --smoke for a rehearsal without a GPU
python=${PYTHON:-python3}
root=$(pwd)
site=/tmp/fg_site
stash=/tmp/fg_device
out=${OUT:-out/gpu}
mkdir -p "$site" "$stash" "$out"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

install_part1() {
  if [ ! -d .device/part1 ]; then
    echo "gpu_device: no .device/part1 here (carry it); going on without it"
    return 0
  fi
  "$python" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" \
    .device/part1/*.whl || echo "gpu_device: installing part 1 failed; going on without it"
  cp .device/part1/av.tar.xz.1 "$stash/"
  echo "gpu_device: part 1 installed in $site; PyAV's first half kept in $stash"
}

join_av() { # sets note when PyAV cannot be put together
  if "$python" -c "import av" 2>/dev/null; then return 0; fi
  local first=$stash/av.tar.xz.1
  [ -f "$first" ] || first=.device/part1/av.tar.xz.1
  if [ ! -f "$first" ]; then
    note="PyAV's first half is not on this machine: it was given back after the models call;"
    note+=" run 'bash bench/gpu_device.sh stash' carrying .device/part1, then this call again"
    return 1
  fi
  if [ ! -f .device/part2/av.tar.xz.2 ]; then
    note="PyAV's second half is missing: carry .device/part2"
    return 1
  fi
  cat "$first" .device/part2/av.tar.xz.2 >/tmp/av.tar.xz
  if ! (cd /tmp && sha256sum -c --quiet "$root/.device/part2/av.sha256"); then
    note="PyAV's two halves do not make the archive of .device/part2/av.sha256 (rerun tools/device_packages.sh)"
    return 1
  fi
  tar -xJf /tmp/av.tar.xz -C "$site" ||
    "$python" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
      /tmp/av.tar.xz "$site"
  rm -f /tmp/av.tar.xz
  echo "gpu_device: PyAV unpacked into $site"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
case "$section" in
  stash)
    install_part1
    ;;
  models)
    install_part1
    "$python" bench/gpu.py --section models --out "$out" --budget-s "${BUDGET_MODELS:-270}" "${extra[@]}"
    status=$?
    cp "$out/gpu.json" "$stash/gpu.json" 2>/dev/null
    exit "$status"
    ;;
  pipeline)
    note=""
    if ! "$python" -c "import pydantic, pycocotools" 2>/dev/null; then install_part1; fi
    join_av
    merge=()
    if [ -f "$stash/gpu.json" ]; then merge=(--merge "$stash/gpu.json"); fi
    "$python" bench/gpu.py --section pipeline --out "$out" --budget-s "${BUDGET_PIPELINE:-180}" \
      ${note:+--pipeline-note "$note"} "${merge[@]}" "${extra[@]}"
    status=$?
    cp "$out/gpu.json" "$stash/gpu-pipeline.json" 2>/dev/null
    exit "$status"
    ;;
  *)
    echo "usage: bash bench/gpu_device.sh models|pipeline|stash" >&2
    exit 2
    ;;
esac
