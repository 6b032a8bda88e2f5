#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with what the GPU machine lacks, for `device run` with carry [".whl"]: its image has
# Python 3.12, torch (CUDA), numpy 2, scikit-image, typer, rich, safetensors, scipy and pytest, but no mediapipe
# (0.10.21 works with numpy 2 there), no protobuf < 5 and no ffmpeg. dlib and pocketsphinx are left out (the
# identity metric and the speech tests then skip or are not run), to stay under the 64 MiB a run may carry.
# Then on the device: `bash tools/device_check.sh` (see there). Maintenance script: not part of the package.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl/m
pip download -q mediapipe==0.10.21 protobuf==4.25.8 --no-deps --python-version 3.12 --only-binary=:all: -d .whl
ffmpeg_bin=$(.venv/bin/python -c "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())")
[ -f .whl/ffmpeg.xz ] || xz -9 -T2 -c "$ffmpeg_bin" > .whl/ffmpeg.xz
data=${THEAD_TEST_DATA:-../shared/data}
cp "$data"/images/{s0,s1,s5}.jpg "$data"/videos/{d3,d12}.mp4 .whl/m/
cp "$data"/videos/WDA_AlexandriaOcasioCortez_000.mp4 .whl/m/WDA.mp4
du -sh .whl
