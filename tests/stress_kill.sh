#!/usr/bin/env bash
# tests/stress_kill.sh - process mode on the shared-memory pool must survive
# at least 10 SIGKILLs of worker processes in a short run: every kill is
# recovered exactly (checked by the harness after each one), the run ends
# with every block free and the region valid, and no violation is seen.
set -u
BIN=${ST_BIN:-build/lfpool-stress}
FEAT=$(cat "$(dirname "$BIN")/obj/stress/features" 2>/dev/null || true)
if ! grep -q ST_HAVE_SHM <<<"$FEAT"; then
	echo "FAIL: the harness was built without the shared-memory pool (pool/shm.c not in the library)"
	exit 1
fi
SEED=${LFP_SEED:-$(date +%s)}
echo "stress_kill: seed $SEED (rerun with LFP_SEED=$SEED)"
fails=0
for cfg in "--threads 1 --workload chaos" "--threads 2 --workload lifo --backend lfpool-cached"; do
	# shellcheck disable=SC2086
	last=$(timeout 120 "$BIN" --procs 3 $cfg --kill-every 0.15 --duration 4 --seed "$SEED" --no-progress | tail -1); rc=$?
	echo "$last"
	kills=$(echo "$last" | tr ' ' '\n' | sed -n 's/^kills=//p')
	rec=$(echo "$last" | tr ' ' '\n' | sed -n 's/^recovered=//p')
	case "$last" in "SUMMARY result=PASS "*) ;; *) echo "FAIL ($cfg): not a PASS"; fails=$((fails + 1)); continue ;; esac
	[ "$rc" -eq 0 ] || { echo "FAIL ($cfg): exit $rc"; fails=$((fails + 1)); }
	[ "${kills:-0}" -ge 10 ] || { echo "FAIL ($cfg): only ${kills:-0} kills"; fails=$((fails + 1)); }
	[ "${rec:-0}" -gt 0 ] || { echo "FAIL ($cfg): no block recovered from ${kills:-0} kills"; fails=$((fails + 1)); }
done
[ "$fails" -eq 0 ] && echo "stress_kill: passed"
[ "$fails" -eq 0 ]
