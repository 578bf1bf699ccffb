#!/usr/bin/env bash
# `make integration`: build the container image, start a single-node SLURM cluster, run every
# test marked `integration` (container: tests/integration/test_container.py, SLURM:
# tests/integration/test_slurm.py, plus any real-data tests), stop SLURM, print the measurements.
#
# Needs root (podman, slurmd) and ../shared/tools (container-build.sh, container-env.sh,
# slurm-up.sh, slurm-down.sh). Environment:
#   PYTHON                        interpreter with the package and test extra (default .venv/bin/python)
#   BIDS_REGIONX_IMAGE            image tag to build and test (default localhost/bids_regionx:dev)
#   BIDS_REGIONX_SHARED_TOOLS     default ../shared/tools
#   BIDS_REGIONX_INTEGRATION_DIR  where data, outputs and timings go (default: a new /tmp dir)
#   BIDS_REGIONX_COLD_BUILD=1     remove the image and podman's build cache first (cold build time)
#   PYTEST_ARGS                   extra pytest arguments (e.g. "-k container")
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
PYTHON=${PYTHON:-$repo/.venv/bin/python}
tools=${BIDS_REGIONX_SHARED_TOOLS:-$(cd "$repo/.." && pwd)/shared/tools}
export BIDS_REGIONX_SHARED_TOOLS=$tools
export BIDS_REGIONX_IMAGE=${BIDS_REGIONX_IMAGE:-localhost/bids_regionx:dev}
export BIDS_REGIONX_INTEGRATION_DIR=${BIDS_REGIONX_INTEGRATION_DIR:-$(mktemp -d /tmp/bids_regionx_integration.XXXXXX)}
export BIDS_REGIONX_TIMINGS=$BIDS_REGIONX_INTEGRATION_DIR/measurements.jsonl
export LOGNAME=${LOGNAME:-$(id -un)}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$BIDS_REGIONX_INTEGRATION_DIR"
: > "$BIDS_REGIONX_TIMINGS"

measure() {  # label value unit
  printf '{"label": "%s", "value": %s, "unit": "%s"}\n' "$1" "$2" "$3" >> "$BIDS_REGIONX_TIMINGS"
}

echo "== integration: results in $BIDS_REGIONX_INTEGRATION_DIR"

# 1. The image, from the source tree (the .dockerignore allow-list makes the build context what
#    a clean clone would give).
if [ "${BIDS_REGIONX_COLD_BUILD:-0}" = 1 ] && command -v podman >/dev/null; then
  # shellcheck source=/dev/null
  (source "$tools/container-env.sh"
   podman rmi -f "$BIDS_REGIONX_IMAGE" >/dev/null 2>&1 || true
   podman image prune -f >/dev/null 2>&1 || true)
fi
echo "== building $BIDS_REGIONX_IMAGE"
start=$SECONDS
"$tools/container-build.sh" "$repo" "$BIDS_REGIONX_IMAGE" > "$BIDS_REGIONX_INTEGRATION_DIR/build.log" 2>&1 \
  || { tail -50 "$BIDS_REGIONX_INTEGRATION_DIR/build.log"; exit 1; }
measure "image build" "$((SECONDS - start))" s

# 2. SLURM, stopped again on exit if this script started it.
started_slurm=0
if ! { [ -n "${SLURM_CONF:-}" ] && sinfo -h >/dev/null 2>&1; }; then
  echo "== starting SLURM"
  eval "$("$tools/slurm-up.sh")"
  started_slurm=1
fi
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ "$started_slurm" = 1 ]; then
    echo "== stopping SLURM"
    scancel -u "$LOGNAME" >/dev/null 2>&1 || true
    "$tools/slurm-down.sh" || true
  fi
}
trap cleanup EXIT

# 3. The tests (the image exists, so test_container.py does not rebuild it).
echo "== pytest -m integration"
status=0
# shellcheck disable=SC2086
"$PYTHON" -m pytest -m integration -p no:cacheprovider -v -rs --timeout 1800 \
  ${PYTEST_ARGS:-} || status=$?

echo "== measurements"
"$PYTHON" - "$BIDS_REGIONX_TIMINGS" <<'EOF'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    m = json.loads(line)
    print(f"  {m['label']:<60} {m['value']:>9.1f} {m['unit']}")
EOF
exit "$status"
