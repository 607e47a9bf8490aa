#!/usr/bin/env bash
# close() does not wait for the network, and the namespace answers while a
# large upload runs (the uploader has its own connection): cp of 8 MiB at
# --bwlimit 1M returns long before the upload ends, and ls/stat/mkdir in the
# mount answer within a second meanwhile. Over ftp:// and http://.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

scenario() {
    kf_setup_transport
    local size=$((8 << 20)) mnt=$WORK/mnt t0 ms i s
    kf_mkfile "$WORK/f.bin" "$size"
    kf_mount "$URL" "$mnt" --spool "$WORK/spool" --bwlimit 1M

    t0=$(date +%s%N)
    cp "$WORK/f.bin" "$mnt/f.bin" || kf_fail "cp"
    ms=$((($(date +%s%N) - t0) / 1000000))
    kf_log "cp returned after ${ms} ms"
    kf_assert_le "$ms" 4000 "cp (close) waited for the upload"

    kf_wait_size_between "$ROOT/f.bin" 0 "$size" 30 || kf_fail "upload did not start"
    for i in 1 2 3; do
        t0=$(date +%s%N)
        timeout 5 ls -l "$mnt" >"$WORK/ls.out" || kf_fail "ls hung or failed during the upload"
        timeout 5 stat "$mnt/f.bin" >/dev/null || kf_fail "stat failed during the upload"
        timeout 5 mkdir "$mnt/dir$i" || kf_fail "mkdir failed during the upload"
        ms=$((($(date +%s%N) - t0) / 1000000))
        kf_log "ls+stat+mkdir took ${ms} ms"
        kf_assert_le "$ms" 1500 "namespace blocked behind the upload"
        grep -q "f.bin" "$WORK/ls.out" || kf_fail "ls does not list f.bin"
        [[ $(kf_size "$mnt/f.bin") == "$size" ]] || kf_fail "pending file does not show its local size"
        sleep 0.5
    done
    s=$(kf_size "$ROOT/f.bin")
    ((s < size)) || kf_fail "upload already finished; the checks did not overlap it"
    [[ -d $ROOT/dir1 ]] || kf_fail "mkdir did not reach the server"

    kf_wait_uploaded "$ROOT/f.bin" "$WORK/f.bin" 60 || kf_fail "upload did not finish"
    kf_unmount "$mnt"
}

kf_each_transport scenario
kf_log "ok"
