#!/usr/bin/env bash
# keyfs over ftpes:// against a stock server with TLS: pure-ftpd with
# `-Y 2` (TLS required for logins) and a self-signed certificate given to
# keyfs as its CA. cp then a byte-identical server copy and read back; then
# kill -9 of the keyfs daemon mid-upload and a remount with the same spool:
# the upload completes byte-identical over TLS.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

WORK=$(kf_tmpdir)
ROOT=$WORK/root
mkdir -p "$ROOT"
FTP_USER=tester
KEYFS_PASSWORD=$(kf_password)
export KEYFS_PASSWORD
"$KF_BIN/keyftpd" gen-cert --host localhost --out-cert "$WORK/cert.pem" --out-key "$WORK/key.pem" >/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/both.pem"
kf_start_pureftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" -Y 2 -2 "$WORK/both.pem"
URL="ftpes://$FTP_USER@localhost:$PUREFTPD_PORT/"

# The server really refuses a plain login.
mkdir -p "$WORK/mnt"
out=$(timeout 60 "$KF_BIN/keyfs" mount "ftp://$FTP_USER@127.0.0.1:$PUREFTPD_PORT/" "$WORK/mnt" \
    --spool "$WORK/spool-plain" 2>&1) && kf_fail "plain login to pure-ftpd -Y 2 mounted"
grep -Eq "(530|421).*TLS" <<<"$out" || kf_fail "plain login: expected a refusal naming TLS: $out"
kf_log "plain refused: $out"

mnt=$WORK/mnt
spool=$WORK/spool
kf_mount "$URL" "$mnt" --spool "$spool" --ca-file "$WORK/cert.pem"
kf_mkfile "$WORK/a.bin" $((5 << 20))
cp "$WORK/a.bin" "$mnt/a.bin" || kf_fail "cp over ftpes to pure-ftpd"
kf_wait_uploaded "$ROOT/a.bin" "$WORK/a.bin" 60 || kf_fail "not uploaded to pure-ftpd over TLS"
cmp "$WORK/a.bin" "$mnt/a.bin" || kf_fail "read back from pure-ftpd over TLS differs"
kf_unmount "$mnt"

# kill -9 mid-upload (1 MiB/s), remount with the same spool.
size=$((8 << 20))
kf_mkfile "$WORK/f.bin" "$size"
KF_FOREGROUND=1 kf_mount "$URL" "$mnt" --spool "$spool" --ca-file "$WORK/cert.pem" --bwlimit 1M
pid=$KEYFS_PID
cp "$WORK/f.bin" "$mnt/f.bin" || kf_fail "cp"
kf_wait_size_between "$ROOT/f.bin" 0 "$size" 30 || kf_fail "upload did not start"
sleep 1
kf_kill9 "$pid"
partial=$(kf_settled_size "$ROOT/f.bin")
kf_log "daemon killed; server holds $partial of $size bytes"
((partial < size)) || kf_fail "upload finished before the kill; test timing is off"
kf_unmount "$mnt"
kf_mount "$URL" "$mnt" --spool "$spool" --ca-file "$WORK/cert.pem"
kf_wait_uploaded "$ROOT/f.bin" "$WORK/f.bin" 60 || kf_fail "not completed after remount"
[[ $(kf_sha "$mnt/f.bin") == $(kf_sha "$WORK/f.bin") ]] || kf_fail "mount shows different content"
kf_unmount "$mnt"
kf_log "ok"
