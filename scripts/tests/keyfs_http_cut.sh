#!/usr/bin/env bash
# A connection cut mid-upload over http:// (ftpfault --tcp between keyfs
# and the server): against a stock WebDAV server (rclone serve webdav) the
# upload starts again from zero; against keyftpd's HTTP face (when this
# keyftpd has --http) it resumes, re-sending only the missing part. Either
# way the server's copy ends byte-identical.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

size=$((8 << 20)) cut=$((3 << 20))
WORK=$(kf_tmpdir)
KEYFS_PASSWORD=$(kf_password)
export KEYFS_PASSWORD
kf_mkfile "$WORK/big.bin" 8M

# run_cut NAME UPSTREAM_PORT ROOT: mounts through a cutting proxy, copies,
# waits for the server copy; prints the upload bytes that crossed.
run_cut() {
    local name=$1 up=$2 root=$3 mnt=$WORK/mnt-$1
    shift 3
    kf_start_ftpfault "$up" --tcp --cut-after "$cut" --cuts 1
    kf_mount "http://tester@127.0.0.1:$FTPFAULT_PORT/" "$mnt" --spool "$WORK/spool-$name" "$@"
    cp "$WORK/big.bin" "$mnt/big.bin" || kf_fail "$name: cp"
    kf_wait_uploaded "$root/big.bin" "$WORK/big.bin" 90 || kf_fail "$name: not uploaded byte-identical"
    [[ $(kf_fault_stat cuts) == 1 ]] || kf_fail "$name: the proxy made $(kf_fault_stat cuts) cuts, not 1"
    kf_unmount "$mnt"
    kf_fault_stat up_data
}

mkdir -p "$WORK/rroot"
kf_start_rclone_webdav "$WORK/rroot" tester "$KEYFS_PASSWORD"
# Even told to trust the size, keyfs cannot resume where the server cannot append.
up=$(run_cut rclone "$RCLONE_PORT" "$WORK/rroot" --resume=trust-size)
kf_log "stock WebDAV: $up bytes up for $size (cut at $cut)"
# Restarted from zero: the cut part and then the whole file.
((up >= size + cut)) || kf_fail "stock WebDAV: only $up bytes went up; a restart sends the whole file again"

if "$KF_BIN/keyftpd" --help 2>&1 | grep -q -- '--http'; then
    mkdir -p "$WORK/kroot"
    kf_start_keyftpd "$WORK/kroot" tester "$KEYFS_PASSWORD" 0 --http 127.0.0.1:0
    KEYFTPD_HTTP_PORT=$(kf_keyftpd_http_port) || kf_fail "keyftpd did not say its HTTP port"
    up=$(run_cut keyftpd "$KEYFTPD_HTTP_PORT" "$WORK/kroot")
    kf_log "keyftpd HTTP: $up bytes up for $size (cut at $cut)"
    kf_assert_le "$up" $((size + 256 * 1024)) "keyftpd HTTP: the resume re-sent more than the missing part"
else
    kf_log "this keyftpd has no --http: the resumed case is not run"
fi
kf_log "ok"
