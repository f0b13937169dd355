#!/usr/bin/env bash
# stress/scale.sh [OUT.csv] - the scaling sweep of `make stress-scale` (and of
# build/bundle/scale.sh on a machine without the packages).
#
# Runs lfpool-stress as a driver: thread counts 1, 2, 4, ... up to the PUs,
# then 2x and 8x oversubscription; the hot and random (batch) workloads; for
# lfpool (uncached and cached) and every peer present (glibc, jemalloc,
# mimalloc, tcmalloc, each re-executed with its library in LD_PRELOAD);
# SCALE_REPS measurements of SCALE_DURATION s per point, medians reported.
# Writes OUT.csv (default docs/scale-<host>.csv) and OUT.machine.txt (the
# machine's description, load before and after, the exact command).
#
# Time: points = workloads x thread counts x allocators x reps; each costs
# the duration plus ~0.1 s of process start. 16 PUs: 2 x 7 x 6 x 5 = 420
# runs x ~0.5 s = ~3.5 min. Override with SCALE_REPS, SCALE_DURATION,
# SCALE_WORKLOADS, SCALE_THREADS, SCALE_ALLOCATORS.
set -eu
: "${PATH:=/usr/local/bin:/usr/bin:/bin}"
export PATH
here=$(cd "$(dirname "$0")" && pwd)
BIN=${ST_BIN:-}
if [ -z "$BIN" ]; then
	if [ -x "$here/lfpool-stress" ]; then BIN="$here/lfpool-stress"; else BIN=build/lfpool-stress; fi
fi
# A bundle carries its libraries (hwloc, the peers) in lib/ next to it.
if [ -d "$here/lib" ]; then
	export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# If this host's C library is too old for the binary, run it (and every
# child it starts) through the bundle's own loader and libc in lib/glibc/.
# Only lfpool-stress sees that LD_LIBRARY_PATH: host tools keep their libc.
RUN=("$BIN")
if { [ -n "${SCALE_FORCE_LOADER:-}" ] || ! "$BIN" --help >/dev/null 2>&1; } &&
   [ -x "$here/lib/glibc/ld-linux-x86-64.so.2" ]; then
	echo "scale: using the bundled C library (lib/glibc)" >&2
	RUN=(env "LD_LIBRARY_PATH=$here/lib/glibc:$LD_LIBRARY_PATH"
	     "LFP_STRESS_LOADER=$here/lib/glibc/ld-linux-x86-64.so.2"
	     "$here/lib/glibc/ld-linux-x86-64.so.2" "$BIN")
fi
if ! "${RUN[@]}" --help >/dev/null 2>&1; then
	echo "scale: $BIN does not start here:" >&2
	"${RUN[@]}" --help 2>&1 | head -3 >&2
	exit 4
fi
host=$(uname -n | cut -d. -f1)
OUT=${1:-docs/scale-$host.csv}
REPS=${SCALE_REPS:-5}
DUR=${SCALE_DURATION:-0.4}
WL=${SCALE_WORKLOADS:-hot,random}
THR=${SCALE_THREADS:-sweep}
ALLOC=${SCALE_ALLOCATORS:-all}
mkdir -p "$(dirname "$OUT")"
desc="${OUT%.csv}.machine.txt"
cmd=("${RUN[@]}" --threads "$THR" --workload "$WL" --compare "$ALLOC" --reps "$REPS" --duration "$DUR" --csv="$OUT" --progress)
{
	echo "host: $host"
	echo "date: $(date -u +%FT%TZ)"
	echo "kernel: $(uname -srm)"
	echo "cpus online: $(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)"
	if command -v lscpu >/dev/null; then lscpu | grep -E '^(Model name|Socket|Core|Thread|NUMA node\(s\)|L[123])' | sed 's/  */ /g'; fi
	echo "load before: $(cat /proc/loadavg)"
	"${RUN[@]}" --plan --policy compact --threads 1 2>&1 | grep '^topology:' || true
	echo "command: ${cmd[*]}"
} >"$desc"
echo "scale: writing $OUT (machine description in $desc)" >&2
start=$(date +%s)
status=0
"${cmd[@]}" || status=$?
echo "load after: $(cat /proc/loadavg)" >>"$desc"
echo "sweep seconds: $(( $(date +%s) - start )), driver exit status: $status" >>"$desc"
echo "scale: done in $(( $(date +%s) - start )) s, status $status; plot with: make stress-plot CSV=$OUT" >&2
exit "$status"
