#!/usr/bin/env bash
# kill -9 of the keyfs daemon mid-upload, then a remount with the same spool:
# the upload completes byte-identical, from the journal alone. Then the same
# for many small files killed right after `cp -r` returns: close syncs
# nothing itself (the syncer commits in the background), yet every closed
# file survives a crash of the daemon and is uploaded after the remount.
# Over ftp://, http:// and https:// to keyftpd, and http:// to a stock WebDAV server
# (rclone serve webdav: the killed upload starts again from zero).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

scenario() {
    kf_setup_transport
    local mnt=$WORK/mnt spool=$WORK/spool size=$((8 << 20)) pid partial n=40 i done_before
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

    # Small files, slow uploads (most still pending at the kill).
    mkdir -p "$WORK/small"
    for ((i = 0; i < n; i++)); do head -c 4096 /dev/urandom >"$WORK/small/s$i"; done
    KF_FOREGROUND=1 kf_mount "$URL" "$mnt" --spool "$spool" --bwlimit 16K
    pid=$KEYFS_PID
    timeout 60 cp -r "$WORK/small" "$mnt/small" || kf_fail "cp -r small"
    kf_kill9 "$pid"
    done_before=$(find "$ROOT/small" -type f 2>/dev/null | wc -l)
    kf_log "daemon killed right after cp -r; $done_before of $n files on the server"
    kf_unmount "$mnt"
    kf_mount "$URL" "$mnt" --spool "$spool"
    for ((i = 0; i < n; i++)); do
        kf_wait_uploaded "$ROOT/small/s$i" "$WORK/small/s$i" 60 || kf_fail "small/s$i not uploaded after remount"
    done
    diff -r "$WORK/small" "$mnt/small" >/dev/null || kf_fail "mount shows different small files"
    kf_unmount "$mnt"
}

kf_each_transport scenario ftp http https webdav
kf_log "ok"
