#!/usr/bin/env bash
# cp into the mount, then the server's copy is byte-identical (sha256), the
# mount shows the file at once, and reading it back through the mount gives
# the same bytes. Over ftp:// and http:// to keyftpd.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

scenario() {
    kf_setup_transport
    local mnt=$WORK/mnt ra f
    kf_mount "$URL" "$mnt" --spool "$WORK/spool"
    # The daemon raises the mount's read-ahead window to 1 MiB requests.
    ra=$(cat "/sys/class/bdi/$(mountpoint -d "$mnt")/read_ahead_kb")
    [[ $ra == 1024 ]] || kf_fail "read_ahead_kb of the mount is $ra, not 1024"

    kf_mkfile "$WORK/big.bin" 5M
    printf 'hello keyfs\n' >"$WORK/small.txt"
    : >"$WORK/empty"
    cp "$WORK/big.bin" "$mnt/big.bin" || kf_fail "cp big.bin"
    cp "$WORK/small.txt" "$mnt/small.txt" || kf_fail "cp small.txt"
    cp "$WORK/empty" "$mnt/empty" || kf_fail "cp empty"

    # Visible at once, with its local size and content.
    [[ $(kf_size "$mnt/big.bin") == $((5 << 20)) ]] || kf_fail "stat size in mount: $(kf_size "$mnt/big.bin")"
    ls -l "$mnt" | grep -q 'big.bin' || kf_fail "ls does not show big.bin"
    [[ $(kf_sha "$mnt/big.bin") == $(kf_sha "$WORK/big.bin") ]] || kf_fail "read back through mount differs"

    for f in big.bin small.txt empty; do
        kf_wait_uploaded "$ROOT/$f" "$WORK/$f" 60 || kf_fail "$f not uploaded byte-identical"
    done
    kf_log "all files on the server, sha256 identical"

    # Read back once the spooled copies are gone (a ranged read from the server).
    "$KF_BIN/keyfs" wait "$mnt" >/dev/null 2>&1 || kf_fail "keyfs wait failed"
    [[ $(kf_sha "$mnt/big.bin") == $(kf_sha "$WORK/big.bin") ]] || kf_fail "read after upload differs"
    "$KF_BIN/keyfs" status --spool "$WORK/spool" || kf_fail "keyfs status failed"
    kf_unmount "$mnt"
}

kf_each_transport scenario
kf_log "ok"
