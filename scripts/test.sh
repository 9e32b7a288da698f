#!/usr/bin/env bash
# The whole test, what CI runs after scripts/install-deps.sh: the suite on the debug build (every
# check), and the shipped release binary through thousands of bad inputs
# (scripts/release-robustness.py).
#
# The suite and the robustness harness run side by side. The suite keeps about one core busy
# (`swift test --skip-build --no-parallel`: 3m56s of CPU in 4m02s, 2-core AMD EPYC VM, 2026-12-01),
# so run one after the other they left a core idle for four minutes. Side by side, in a CI run
# from a fresh clone (2026-12-01 23:30 UTC, campaign running niced), the suite took 5m46s and the
# harness (then two cases at a time) 4m06s within it, against ~4 + ~3 minutes one after the
# other: CI took 16m16s against 17m48s the evening before. One case at a time (e7ed405), the
# harness took 5m19s beside the suite's 5m03s, and CI 15m20s. (Building release and debug side
# by side too, in two scratch folders, saved 53 s more of 10 minutes: within this VM's noise, not
# worth a second checkout of every dependency.) The harness is niced so that the suite's own time
# bounds see the machine they were written for, and its report is printed after the suite's.
set -euo pipefail
cd "$(dirname "$0")/.."

swift build -c release --product resnet
swift build --build-tests

harness_log=$(mktemp) harness=""
# An interrupted test stops the harness too (a background job of a script ignores SIGINT).
trap '[ -z "$harness" ] || kill "$harness" 2>/dev/null || true; rm -f "$harness_log"' EXIT
trap 'exit 130' INT TERM
# One case at a time: the core the suite leaves idle.
nice -n 5 python3 scripts/release-robustness.py --resnet .build/release/resnet --jobs 1 > "$harness_log" 2>&1 &
harness=$!

suite=0
swift test --skip-build --no-parallel || suite=$?
robustness=0
wait "$harness" || robustness=$?
harness=""

echo "--- scripts/release-robustness.py --resnet .build/release/resnet"
cat "$harness_log"
if [ "$suite" -ne 0 ] || [ "$robustness" -ne 0 ]; then
  echo "Error: the suite exited $suite and the robustness harness $robustness" >&2
  exit 1
fi
