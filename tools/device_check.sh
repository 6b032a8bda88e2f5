#!/usr/bin/env bash
# The CUDA path on the GPU machine, in one run (`device run`, carry [".whl"] filled by tools/device_carry.sh,
# timeout ~480 s): installs what was carried, renders the same jobs with --device cuda and --device cpu on the
# same caches and compares them (tools/compare_renders.py), times `thead reenact s0.jpg d3.mp4` on both, then runs
# the render tests on CUDA one worker at a time with each result printed as it comes (8 xdist workers of 16 torch
# threads each did not finish in 280 s there, and a cut run printed no names). Results go to $OUT.
# Maintenance script: not part of the package.
set -u
T0=$(date +%s); t() { echo "[t+$(( $(date +%s) - T0 ))s] $*"; }
OUT=${OUT:-/tmp/device_check}; mkdir -p "$OUT"
xz -dc .whl/ffmpeg.xz > /usr/local/bin/ffmpeg && chmod +x /usr/local/bin/ffmpeg
python3 -m pip install -q --no-deps --no-index .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=$PWD
printf '#!/bin/sh\nexec python3 -m thead "$@"\n' > /usr/local/bin/thead && chmod +x /usr/local/bin/thead
nvidia-smi -L; uptime
python3 -c "import torch, numpy, mediapipe; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'mediapipe', mediapipe.__version__)"
M=.whl/m; W=/tmp/w; mkdir -p $W
for dev in cuda cpu; do
  o=$W/$dev
  thead reenact $M/s1.jpg $M/d12.mp4 -w $W -o $o --crf 8 --device $dev > $OUT/reenact_$dev.txt 2>&1; t "s1 x d12 $dev rc $?"
  thead reenact $M/WDA.mp4 $M/WDA.mp4 --source-frame 0 --paste-back -w $W -o $o --crf 8 --device $dev > $OUT/self_$dev.txt 2>&1; t "WDA self $dev rc $?"
  thead edit $M/s5.jpg --blink-left 1 --yaw 20 --paste-back -w $W -o $o/edit.png --device $dev > $OUT/edit_$dev.txt 2>&1; t "edit $dev rc $?"
done
for f in $(cd $W/cuda && ls *.mp4 *.png); do python3 tools/compare_renders.py $W/cuda/$f $W/cpu/$f $OUT/cmp_${f%.*}.png; done 2>&1 | tee $OUT/compare.txt
thead reenact $M/s0.jpg $M/d3.mp4 -w $W -o $W/speed --device cuda > /dev/null 2>&1
for dev in cuda cpu cuda cpu; do
  s=$(date +%s.%N); thead reenact $M/s0.jpg $M/d3.mp4 -w $W -o $W/speed --device $dev --force > /dev/null 2>&1; rc=$?; e=$(date +%s.%N)
  python3 -c "print('speed $dev rc $rc', f'{$e - $s:.2f} s, {354 / ($e - $s):.1f} frames/s')"
done 2>&1 | tee $OUT/speed.txt
uptime
OMP_NUM_THREADS=4 timeout 250 python3 -m pytest -p no:cacheprovider -p no:xdist -p no:benchmark -v -rfE --timeout 120 \
  tests/test_render.py tests/test_engine.py tests/test_reenact_command.py tests/test_reenact_group.py > $OUT/pytest.txt 2>&1
t "pytest rc $?"; grep -E "PASSED|FAILED|ERROR" $OUT/pytest.txt | awk '{print $NF}' | sort | uniq -c; tail -25 $OUT/pytest.txt
