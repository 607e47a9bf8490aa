#!/usr/bin/env bash
# kill -9 of the keyfs daemon mid-upload, then a remount with the same spool:
# the upload completes byte-identical, from the journal alone.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_keyftpd
mnt=$WORK/mnt
spool=$WORK/spool
size=$((8 << 20))
kf_mkfile "$WORK/f.bin" "$size"

# Slow upload (1 MiB/s: about 8 s) so that the kill lands mid-upload.
KF_FOREGROUND=1 kf_mount "$URL" "$mnt" --spool "$spool" --bwlimit 1M
pid=$KEYFS_PID
cp "$WORK/f.bin" "$mnt/f.bin" || kf_fail "cp"
kf_wait_size_between "$ROOT/f.bin" 0 "$size" 30 || kf_fail "upload did not start"
sleep 1
kf_kill9 "$pid"
partial=$(kf_settled_size "$ROOT/f.bin")
kf_log "daemon killed; server holds $partial of $size bytes"
((partial < size)) || kf_fail "upload finished before the kill; test timing is off"
kf_unmount "$mnt"

# Same spool, no bandwidth limit: the journal brings the job back.
kf_mount "$URL" "$mnt" --spool "$spool"
kf_wait_uploaded "$ROOT/f.bin" "$WORK/f.bin" 60 || kf_fail "not completed after remount"
[[ $(kf_sha "$mnt/f.bin") == $(kf_sha "$WORK/f.bin") ]] || kf_fail "mount shows different content"
kf_unmount "$mnt"
kf_log "ok"
