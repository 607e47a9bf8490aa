#!/usr/bin/env bash
# A same-name partial on the server left by an earlier, killed upload, seen
# by a fresh spool (so only the server's key state can tell):
#  - a partial of the SAME file is resumed (upload bytes ~ the missing part);
#  - a partial of a DIFFERENT file is replaced (never mixed: sha256 of B).
# Over ftp:// (KEY NULL), http:// and https:// (GET ?state) to keyftpd. Against a
# stock WebDAV server (rclone serve webdav, which keeps the partial of a
# cut PUT but cannot append) both are replaced: the same file is sent whole
# again.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

# make_partial NAME SRC: starts a slow upload of SRC as NAME and kills the
# daemon mid-way, leaving a partial with SRC's key on the server.
make_partial() {
    local name=$1 src=$2 mnt=$WORK/mnt-kill-$1
    KF_FOREGROUND=1 kf_mount "$URL" "$mnt" --spool "$WORK/spool-kill-$name" --bwlimit 1M
    cp "$src" "$mnt/$name" || kf_fail "cp $name"
    kf_wait_size_between "$ROOT/$name" $((1 << 20)) "$size" 30 || kf_fail "upload of $name did not start"
    kf_kill9 "$KEYFS_PID"
    kf_unmount "$mnt"
    PARTIAL=$(kf_settled_size "$ROOT/$name")
    ((PARTIAL > 0 && PARTIAL < size)) || kf_fail "no partial of $name ($PARTIAL)"
    kf_log "partial of $name: $PARTIAL bytes"
}

scenario() {
    kf_setup_transport
    size=$((6 << 20))
    local mnt=$WORK/mnt same_partial up missing before
    kf_mkfile "$WORK/a.bin" "$size"
    kf_mkfile "$WORK/b.bin" "$size"

    make_partial same.bin "$WORK/a.bin"
    same_partial=$PARTIAL
    make_partial other.bin "$WORK/a.bin"

    kf_start_proxy
    kf_mount "$PROXY_URL" "$mnt" --spool "$WORK/spool-fresh"

    # Same file again: resumed.
    cp "$WORK/a.bin" "$mnt/same.bin" || kf_fail "cp same.bin"
    kf_wait_uploaded "$ROOT/same.bin" "$WORK/a.bin" 60 || kf_fail "same.bin not uploaded"
    sleep 0.5
    up=$(kf_fault_stat up_data)
    missing=$((size - same_partial))
    kf_log "same file: up_data=$up missing=$missing"
    if [[ $KF_TRANSPORT == webdav ]]; then
        ((up >= size)) || kf_fail "only $up bytes went up; a stock WebDAV server needs the whole file"
    else
        # (over http the proxy also counts the request heads)
        kf_assert_le "$up" $((missing + 65536)) "same-name partial of the same file was not resumed"
    fi

    # A different file under the partial's name: replaced, not appended.
    before=$up
    cp "$WORK/b.bin" "$mnt/other.bin" || kf_fail "cp other.bin"
    kf_wait_uploaded "$ROOT/other.bin" "$WORK/b.bin" 60 || kf_fail "other.bin is not file B (mixed or missing)"
    sleep 0.5
    up=$(kf_fault_stat up_data)
    kf_log "different file: sent $((up - before)) bytes for $size"
    (((up - before) >= size)) || kf_fail "file B was not sent whole"
    kf_unmount "$mnt"
}

kf_each_transport scenario ftp http https webdav
kf_log "ok"
