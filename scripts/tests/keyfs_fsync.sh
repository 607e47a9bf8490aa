#!/usr/bin/env bash
# fsync() returns only once the file is uploaded and verified: right after
# `dd conv=fsync` returns, the server's copy is already byte-identical.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_keyftpd
mnt=$WORK/mnt
kf_mount "$URL" "$mnt" --spool "$WORK/spool"
kf_mkfile "$WORK/f.bin" 3M
timeout 60 dd if="$WORK/f.bin" of="$mnt/f.bin" bs=1M conv=fsync 2>/dev/null || kf_fail "dd conv=fsync failed"
[[ -f $ROOT/f.bin && $(kf_sha "$ROOT/f.bin") == $(kf_sha "$WORK/f.bin") ]] ||
    kf_fail "fsync returned before the server copy was complete"
kf_unmount "$mnt"
kf_log "ok"
