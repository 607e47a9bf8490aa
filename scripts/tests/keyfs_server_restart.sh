#!/usr/bin/env bash
# kill -9 of the server mid-upload, restarted on the same port: keyfs
# reconnects by itself and the upload completes byte-identical. keyftpd,
# over ftp://, http:// and https://, lets it resume (about the file size in upload
# bytes through the counting proxy); a stock WebDAV server (rclone serve
# webdav) cannot append, so the file is sent whole again.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

scenario() {
    kf_setup_transport
    local size=$((8 << 20)) mnt=$WORK/mnt partial up
    kf_start_proxy --throttle 1M
    kf_mount "$PROXY_URL" "$mnt" --spool "$WORK/spool"

    kf_mkfile "$WORK/f.bin" "$size"
    cp "$WORK/f.bin" "$mnt/f.bin" || kf_fail "cp"
    kf_wait_size_between "$ROOT/f.bin" $((1 << 20)) "$size" 30 || kf_fail "upload did not start"
    kf_kill9_server
    partial=$(kf_settled_size "$ROOT/f.bin")
    kf_log "server killed with $partial of $size bytes on disk"
    sleep 2 # keyfs sees the failure and backs off
    kf_restart_server

    kf_wait_uploaded "$ROOT/f.bin" "$WORK/f.bin" 90 || kf_fail "not completed after server restart"
    sleep 0.5
    up=$(kf_fault_stat up_data)
    kf_log "up_data=$up size=$size partial=$partial"
    if [[ $KF_TRANSPORT == webdav ]]; then
        ((up >= size + partial)) || kf_fail "only $up bytes went up; a stock WebDAV server needs the whole file again"
    else
        # A restart from zero would add `partial` bytes; a resume at most
        # what was in flight when the server died (socket buffers): 1 MiB.
        kf_assert_le "$up" $((size + (1 << 20))) "re-sent more than in-flight data"
    fi
    kf_unmount "$mnt"
}

kf_each_transport scenario ftp http https webdav
kf_log "ok"
