#!/usr/bin/env bash
# A full spool disk (a 4 MiB tmpfs): write() fails with ENOSPC and files
# already spooled are intact (read back through the mount, and on the
# server). Over ftp:// and http://.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

scenario() {
    kf_setup_transport
    local spool=$WORK/spool mnt=$WORK/mnt
    kf_tmpfs "$spool" 4m
    # Slow uploads keep the first file in the spool while the second one fills it.
    kf_mount "$URL" "$mnt" --spool "$spool" --bwlimit 256K

    kf_mkfile "$WORK/one.bin" 1M
    cp "$WORK/one.bin" "$mnt/one.bin" || kf_fail "cp one.bin"

    if dd if=/dev/urandom of="$mnt/big.bin" bs=1M count=8 2>"$WORK/dd.err"; then
        kf_fail "writing 8 MiB into a 4 MiB spool succeeded"
    fi
    grep -q "No space left on device" "$WORK/dd.err" || { cat "$WORK/dd.err" >&2; kf_fail "write did not fail with ENOSPC"; }
    kf_log "dd failed with ENOSPC as expected"

    [[ $(kf_sha "$mnt/one.bin") == $(kf_sha "$WORK/one.bin") ]] || kf_fail "one.bin damaged in the mount"
    rm -f "$mnt/big.bin" || true
    kf_wait_uploaded "$ROOT/one.bin" "$WORK/one.bin" 60 || kf_fail "one.bin not uploaded intact"
    kf_unmount "$mnt"
}

kf_each_transport scenario
kf_log "ok"
