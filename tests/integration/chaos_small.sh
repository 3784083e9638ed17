#!/usr/bin/env bash
# A short scripts/chaos run in the suite: random SIGKILLs of workers and the broker while
# 40 tasks run; every acknowledged task must end exactly once and no agent may be left.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 "$here/../../scripts/chaos" --tasks 40 --workers 3 --kills 5 --duration 0.6 --seed 42
