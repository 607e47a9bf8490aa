#!/usr/bin/env bash
# The server's disk fills up mid-upload (keyftpd on a 16 MiB tmpfs, 10 MiB
# of it taken by another file; an 8 MiB file copied in): over ftp:// and
# http://, `keyfs status` gives the server's refusal as the reason (over
# FTP its 4xx/5xx reply, over HTTP the answer to the POST), not the broken
# pipe or reset the closed connection left; the job keeps retrying, and
# once room is made the upload completes byte-identical.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

last_error() {
    "$KF_BIN/keyfs" status --json "$1" | python3 -c '
import json, sys
f = [f for f in json.load(sys.stdin)["files"] if f["path"].endswith("big.bin")]
print(f[0]["last_error"] or "" if f else "")'
}

scenario() {
    kf_work_dir
    kf_tmpfs "$ROOT" 16m
    head -c $((10 << 20)) /dev/zero >"$ROOT/filler.bin"
    case $KF_TRANSPORT in
        ftp) kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD"; port=$KEYFTPD_PORT ;;
        http)
            kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" 0 --http 127.0.0.1:0
            port=$(kf_keyftpd_http_port) || kf_fail "keyftpd did not say its HTTP port"
            ;;
    esac
    local mnt=$WORK/mnt err=""
    kf_mount "$(kf_proxy_url "$port")" "$mnt" --spool "$WORK/spool"
    kf_mkfile "$WORK/big.bin" 8M
    cp "$WORK/big.bin" "$mnt/big.bin"
    for _ in $(seq 1 100); do
        err=$(last_error "$mnt")
        [[ -n $err ]] && break
        sleep 0.2
    done
    kf_log "last error: $err"
    [[ -n $err ]] || kf_fail "no error reported for a full server disk"
    if [[ $err == *"Broken pipe"* || $err == *"reset by peer"* ]]; then
        kf_fail "the error is the connection's, not the server's: $err"
    fi
    grep -qiE "space|full|HTTP 507|server replied [45][0-9][0-9]" <<<"$err" ||
        kf_fail "the error does not name the server's refusal: $err"
    rm "$ROOT/filler.bin"
    "$KF_BIN/keyfs" wait "$mnt" --timeout 60 || kf_fail "keyfs wait after room was made: exit $?"
    [[ $(kf_sha "$ROOT/big.bin") == $(kf_sha "$WORK/big.bin") ]] || kf_fail "big.bin differs on the server"
    kf_unmount "$mnt"
}

kf_each_transport scenario ftp http
kf_log "ok"
