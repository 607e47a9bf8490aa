#!/usr/bin/env bash
# Keeps scripts/bench working: a smoke run (a few MiB, debug build) must
# complete and write its report. Timings are not asserted.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup
out=$(kf_tmpdir)/BENCH.md
# Its own registry, nested in ours: its cleanup must not take our files.
KF_STATE=$KF_STATE/bench "$KF_ROOT/scripts/bench" --smoke --out "$out" >/dev/null || kf_fail "scripts/bench --smoke failed"
grep -q '^| write:' "$out" || kf_fail "no results table in the report"
grep -q '^| keyfs |' "$out" || kf_fail "no resume table in the report"
grep -q '^| upload, keyftpd HTTP PUT |' "$out" || kf_fail "no HTTP table in the report"
grep -q '^| until verified on the server |' "$out" || kf_fail "no keyfs over http:// table in the report"
grep -q '^| lftp loop |' "$out" || kf_fail "no outage table in the report"
kf_log "ok"
