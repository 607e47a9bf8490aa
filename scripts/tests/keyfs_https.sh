#!/usr/bin/env bash
# keyfs over https:// against keyftpd --https --require-tls with a
# self-signed certificate: --ca-file (cp, the server copy and a read back
# byte-identical) and --pin-sha256 (any host name); a cut through
# ftpfault --tcp (TLS relayed as opaque bytes) resumes, re-sending only
# the missing part; kill -9 of the keyfs daemon mid-upload, then a
# remount with the same spool finishes the upload from where the server
# stopped.
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
kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" 0 --https 127.0.0.1:0 \
    --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" --require-tls
sport=$(kf_keyftpd_http_port https) || kf_fail "keyftpd did not say its HTTPS port"
mnt=$WORK/mnt

# --ca-file: cp, then the server copy and a read back are byte-identical.
kf_mount "https://$FTP_USER@localhost:$sport/" "$mnt" --spool "$WORK/spool" --ca-file "$WORK/cert.pem"
kf_mkfile "$WORK/a.bin" $((5 << 20))
cp "$WORK/a.bin" "$mnt/a.bin" || kf_fail "cp over https"
kf_wait_uploaded "$ROOT/a.bin" "$WORK/a.bin" 60 || kf_fail "not uploaded over https"
cmp "$WORK/a.bin" "$mnt/a.bin" || kf_fail "read back over https differs"
"$KF_BIN/keyfs" status --json "$mnt" | grep -q '"checksum": *"KEY (the upload state)' ||
    kf_fail "the uploads over https are not verified by the upload state: $("$KF_BIN/keyfs" status "$mnt")"
kf_unmount "$mnt"

# --pin-sha256 trusts the certificate by its hash, whatever the host name.
pin=$(openssl x509 -in "$WORK/cert.pem" -outform der | sha256sum | cut -d' ' -f1)
kf_mount "https://$FTP_USER@127.0.0.1:$sport/" "$mnt" --spool "$WORK/spool-pin" --pin-sha256 "$pin"
cmp "$WORK/a.bin" "$mnt/a.bin" || kf_fail "read over a pinned certificate differs"
kf_mkfile "$WORK/p.bin" $((1 << 20))
cp "$WORK/p.bin" "$mnt/p.bin" || kf_fail "cp over a pinned certificate"
kf_wait_uploaded "$ROOT/p.bin" "$WORK/p.bin" 60 || kf_fail "not uploaded over a pinned certificate"
kf_unmount "$mnt"

# A cut after 3 MiB of the upload stream (TLS records included): the
# upload resumes at the server's size, only the rest is sent again.
size=$((8 << 20)) cut=$((3 << 20))
kf_mkfile "$WORK/c.bin" "$size"
kf_start_ftpfault "$sport" --tcp --cut-after "$cut" --cuts 1
kf_mount "https://$FTP_USER@localhost:$FTPFAULT_PORT/" "$mnt" --spool "$WORK/spool-cut" --ca-file "$WORK/cert.pem"
cp "$WORK/c.bin" "$mnt/c.bin" || kf_fail "cp through the proxy"
kf_wait_uploaded "$ROOT/c.bin" "$WORK/c.bin" 60 || kf_fail "not uploaded byte-identical after the cut"
[[ $(kf_fault_stat cuts) == 1 ]] || kf_fail "the proxy made $(kf_fault_stat cuts) cuts, not 1"
up=$(kf_fault_stat up_data)
kf_log "https through a cut: $up bytes up for $size (cut at $cut)"
# A restart from zero would send size + cut; the TLS overhead is far below 512 KiB.
kf_assert_le "$up" $((size + 512 * 1024)) "the resume re-sent more than the missing part"
grep -Eq 'http: upload /c.bin offset=[1-9][0-9]* .*state=complete' "$KEYFTPD_LOG" ||
    kf_fail "no resumed POST: $(grep 'c.bin' "$KEYFTPD_LOG" | tail -3)"
kf_unmount "$mnt"
kf_stop_pid "$FTPFAULT_PID"

# kill -9 of the keyfs daemon mid-upload (slowed to 1 MiB/s), then a
# remount with the same spool: the journal brings the job back, and it
# resumes over https at the server's size.
kf_mkfile "$WORK/k.bin" "$size"
KF_FOREGROUND=1 kf_mount "https://$FTP_USER@localhost:$sport/" "$mnt" --spool "$WORK/spool-kill" \
    --ca-file "$WORK/cert.pem" --bwlimit 1M
pid=$KEYFS_PID
cp "$WORK/k.bin" "$mnt/k.bin" || kf_fail "cp before the kill"
kf_wait_size_between "$ROOT/k.bin" $((512 << 10)) "$size" 30 || kf_fail "upload did not start"
kf_kill9 "$pid"
partial=$(kf_settled_size "$ROOT/k.bin")
kf_log "daemon killed; server holds $partial of $size bytes"
((partial < size)) || kf_fail "upload finished before the kill; test timing is off"
kf_unmount "$mnt"
kf_mount "https://$FTP_USER@localhost:$sport/" "$mnt" --spool "$WORK/spool-kill" --ca-file "$WORK/cert.pem"
kf_wait_uploaded "$ROOT/k.bin" "$WORK/k.bin" 60 || kf_fail "not completed after the remount"
grep -Eq 'http: upload /k.bin offset=[1-9][0-9]* .*state=complete' "$KEYFTPD_LOG" ||
    kf_fail "the upload did not resume after the remount: $(grep 'k.bin' "$KEYFTPD_LOG" | tail -3)"
cmp "$WORK/k.bin" "$mnt/k.bin" || kf_fail "read back after the remount differs"
kf_unmount "$mnt"
kf_log "ok"
