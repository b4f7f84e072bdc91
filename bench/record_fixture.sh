#!/usr/bin/env bash
# Record the committed replay fixture from the real local model (SmolLM2 via llama-server):
#
#   bench/record_fixture.sh                       # the whole spec -> specs/fixtures/rotten_tomatoes.jsonl
#   LIMIT=40 OUT=/tmp/rt40.jsonl bench/record_fixture.sh   # a small one (replays with --limit 40 or less:
#                                                          # samples are nested prefixes of one order)
#
# Every response comes from this recording: the run uses a fresh, empty cache folder (CACHE_DIR=DIR
# reuses a folder instead, e.g. to finish an interrupted recording without paying twice). The
# fixture holds exactly the requests the spec makes (`harness cache export --spec`), sorted by key:
# label-likelihood prompts' calibration requests (validation sample, content-free inputs) included.
# A fresh recording runs in `write` mode, which never reads the cache, so prompts that share
# requests (bare_label and the likelihood prompts) pay for them again; CACHE_DIR=DIR (mode rw)
# answers those from the cache.
# Then the fixture is replayed with no model and its metrics must equal the recorded run's, and the
# spec's checks are run on the replay (reported; adjust the thresholds if they fail).
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC=${SPEC:-specs/rotten_tomatoes.yaml}
OUT=${OUT:-specs/fixtures/rotten_tomatoes.jsonl}
export HARNESS_DATA_DIR=${HARNESS_DATA_DIR:-../shared/datasets}
HARNESS=${HARNESS:-harness}
limit=()
if [ -n "${LIMIT:-}" ]; then limit=(--limit "$LIMIT"); fi
if [ -n "${CACHE_DIR:-}" ]; then
  cache=$CACHE_DIR; mode=rw
else
  cache=$(mktemp -d); mode=write
  trap 'rm -rf "$cache"' EXIT
fi
stamp=$(date +%Y%m%d-%H%M%S)
recorded=runs/fixture-recording/$stamp-recorded
replayed=runs/fixture-recording/$stamp-replayed

set -x
"$HARNESS" eval "$SPEC" "${limit[@]}" --no-baselines --cache "$mode" --cache-dir "$cache" --out "$recorded"
"$HARNESS" cache export "$OUT" --cache-dir "$cache" --spec "$SPEC" "${limit[@]}"
"$HARNESS" eval "$SPEC" "${limit[@]}" --no-baselines --cache replay --fixture "$OUT" --quiet --out "$replayed"
set +x
"${PYTHON:-python}" - "$recorded" "$replayed" <<'PY'
import json, sys
def figures(run):
    results = json.load(open(f"{run}/metrics.json"))["results"]
    return [{k: v for k, v in m.items() if k not in ("cached", "wall_s")} for m in results]
a, b = figures(sys.argv[1]), figures(sys.argv[2])
if a != b:
    sys.exit(f"replayed metrics differ from the recorded run's: {sys.argv[1]} vs {sys.argv[2]}")
print(f"replay reproduces the recorded metrics ({len(a)} model x prompt rows)")
PY
"$HARNESS" check "$replayed" --spec "$SPEC" || echo "WARNING: the spec's checks fail on this recording; adjust specs/*.yaml checks:" >&2
echo "fixture: $OUT ($(wc -l < "$OUT") responses)"
