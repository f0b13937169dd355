#!/usr/bin/env bash
# tests/stress_selftest.sh - lfpool-stress --self-test must catch the broken
# build (ABA tag cut to 2 bits, built in its own folder): exit 0 with
# "SUMMARY result=PASS mode=self-test caught=1". A harness that cannot catch
# it, or that flags the good build in the control run, fails this step.
set -u
BIN=${ST_BIN:-build/lfpool-stress}
SEED=${LFP_SEED:-$(date +%s)}
echo "stress_selftest: seed $SEED (rerun with LFP_SEED=$SEED)"
out=$(timeout 180 "$BIN" --self-test --seed "$SEED" --duration 30); rc=$?
echo "$out" | tail -1
if [ "$rc" -ne 0 ]; then echo "FAIL: --self-test exited $rc: the broken build was not caught"; exit 1; fi
echo "$out" | tail -1 | grep -q '^SUMMARY result=PASS mode=self-test caught=1 ' || { echo "FAIL: unexpected SUMMARY"; exit 1; }
echo "stress_selftest: the broken build was caught"
