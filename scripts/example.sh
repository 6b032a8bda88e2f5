#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run thead's main job on the shipped example, writing to out/example/:
# the astronaut photo animated by a moving, speaking clip, an edited photo, a free-view orbit, and the
# evaluation of the animation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
python examples/make_example.py examples/data
work=out/example/work
thead reenact examples/data/astronaut.png examples/data/astronaut_moving.mp4 -o out/example -w "$work"
thead edit examples/data/astronaut.png --yaw 20 --smile 0.8 --paste-back -o out/example -w "$work"
thead edit examples/data/astronaut.png --orbit -o out/example -w "$work"
thead evaluate --pairs out/example/manifest.csv -w "$work" --report out/example/evaluate.json --grid out/example/grid
# The photo speaks an espeak-ng sentence (lip sync, blinks, head motion; the audio muxed in).
if command -v espeak-ng >/dev/null; then
  espeak-ng -w out/example/sentence.wav "Hello, I am the astronaut. Maybe we will fly to the moon before lunch."
  thead audio-drive examples/data/astronaut.png out/example/sentence.wav -o out/example/speech -w "$work" \
    --export-motion out/example/speech/motion
fi
echo "results in out/example/: astronaut__astronaut_moving.mp4, astronaut_edit.png, astronaut_orbit.mp4, grid/," \
  "evaluate.json, speech/astronaut__sentence.mp4"
