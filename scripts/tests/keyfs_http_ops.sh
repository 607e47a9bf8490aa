#!/usr/bin/env bash
# keyfs over http://, against a stock WebDAV server (rclone serve webdav)
# and, when this keyftpd has --http, keyftpd's HTTP face: cp, then the
# server's copy is byte-identical; mkdir, mv, rm; rmdir of a non-empty
# directory refused; reading back after the upload (GET with Range).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

WORK=$(kf_tmpdir)
KEYFS_PASSWORD=$(kf_password)
export KEYFS_PASSWORD
kf_mkfile "$WORK/big.bin" 5M
printf 'hello keyfs over http\n' >"$WORK/small.txt"
: >"$WORK/empty"

# run_ops NAME PORT ROOT
run_ops() {
    local name=$1 port=$2 ROOT=$3 mnt=$WORK/mnt-$1 f
    kf_mount "http://tester@127.0.0.1:$port/" "$mnt" --spool "$WORK/spool-$name"
    mkdir "$mnt/d" || kf_fail "$name: mkdir d"
    [[ -d $ROOT/d ]] || kf_fail "$name: mkdir did not reach the server"
    cp "$WORK/big.bin" "$mnt/d/big.bin" || kf_fail "$name: cp big.bin"
    cp "$WORK/small.txt" "$mnt/small.txt" || kf_fail "$name: cp small.txt"
    cp "$WORK/empty" "$mnt/empty" || kf_fail "$name: cp empty"
    for f in d/big.bin small.txt empty; do
        kf_wait_uploaded "$ROOT/$f" "$WORK/${f#d/}" 60 || kf_fail "$name: $f not uploaded byte-identical"
    done
    kf_log "$name: all files on the server, sha256 identical"

    # Read back once the spooled copies are gone: GET with Range.
    "$KF_BIN/keyfs" wait "$mnt" >/dev/null 2>&1 || true
    [[ $(kf_sha "$mnt/d/big.bin") == $(kf_sha "$WORK/big.bin") ]] || kf_fail "$name: read after upload differs"
    tail -c 1000 "$mnt/d/big.bin" | cmp - <(tail -c 1000 "$WORK/big.bin") || kf_fail "$name: ranged read differs"
    ls "$mnt/d" | grep -qx big.bin || kf_fail "$name: ls d does not show big.bin"

    rmdir "$mnt/d" 2>/dev/null && kf_fail "$name: rmdir of a non-empty directory succeeded"
    [[ -f $ROOT/d/big.bin ]] || kf_fail "$name: rmdir removed the server's files"
    mv "$mnt/small.txt" "$mnt/d/moved.txt" || kf_fail "$name: mv"
    [[ -f $ROOT/d/moved.txt && ! -e $ROOT/small.txt ]] || kf_fail "$name: mv did not reach the server"
    rm "$mnt/d/moved.txt" "$mnt/d/big.bin" || kf_fail "$name: rm"
    rmdir "$mnt/d" || kf_fail "$name: rmdir of the emptied directory"
    [[ ! -e $ROOT/d ]] || kf_fail "$name: rmdir did not reach the server"
    kf_unmount "$mnt"
}

mkdir -p "$WORK/rroot"
kf_start_rclone_webdav "$WORK/rroot" tester "$KEYFS_PASSWORD"
run_ops rclone "$RCLONE_PORT" "$WORK/rroot"

if "$KF_BIN/keyftpd" --help 2>&1 | grep -q -- '--http'; then
    mkdir -p "$WORK/kroot"
    kf_start_keyftpd "$WORK/kroot" tester "$KEYFS_PASSWORD" 0 --http 127.0.0.1:0
    hport=$(kf_keyftpd_http_port) || kf_fail "keyftpd did not say its HTTP port"
    run_ops keyftpd "$hport" "$WORK/kroot"
else
    kf_log "this keyftpd has no --http: only the stock server is run"
fi
kf_log "ok"
