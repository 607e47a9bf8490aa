#!/usr/bin/env bash
# Certificates keyfs must not trust, over FTPS (ftpes://) and HTTPS
# (https://) alike. Before mounting: a certificate of another CA, an
# expired one (openssl, validity ending before it starts), and one for
# another host name: each a one-line error naming the host and the
# reason, a non-zero exit, nothing mounted. After mounting: the server is
# restarted on the same ports with another certificate mid-upload; the
# reconnect refuses it, the upload fails permanently (keyfs wait exits 1,
# keyfs status shows the reason) and is not retried, nor sent in the clear.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

WORK=$(kf_tmpdir)
ROOT=$WORK/root
mkdir -p "$ROOT" "$WORK/never"
FTP_USER=tester
KEYFS_PASSWORD=$(kf_password)
export KEYFS_PASSWORD
gen() { "$KF_BIN/keyftpd" gen-cert --host localhost --out-cert "$WORK/$1.pem" --out-key "$WORK/$1-key.pem" >/dev/null; }
gen cert
gen other
# Expired: a certificate for localhost whose validity ended a day ago.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$WORK/expired-key.pem" -out "$WORK/expired.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' >"$WORK/san.cnf"
openssl x509 -req -in "$WORK/expired.csr" -signkey "$WORK/expired-key.pem" -days -1 \
    -extfile "$WORK/san.cnf" -out "$WORK/expired.pem" 2>/dev/null
openssl x509 -in "$WORK/expired.pem" -noout -checkend 0 >/dev/null &&
    kf_fail "the test certificate has not expired"

# start CERT [FTP_PORT HTTPS_PORT]: keyftpd with FTPS, HTTPS and plain
# HTTP; sets FPORT SPORT HPORT.
start() {
    kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" "${2:-0}" --https "127.0.0.1:${3:-0}" \
        --http 127.0.0.1:0 --tls-cert "$WORK/$1.pem" --tls-key "$WORK/$1-key.pem" --require-tls
    FPORT=$KEYFTPD_PORT
    SPORT=$(kf_keyftpd_http_port https) && HPORT=$(kf_keyftpd_http_port) ||
        kf_fail "keyftpd did not say its HTTP and HTTPS ports"
}

# refused WHAT WANT URL [options]: one line naming WANT, non-zero, not mounted.
refused() {
    local what=$1 want=$2 url=$3 out rc=0
    shift 3
    out=$(timeout 60 "$KF_BIN/keyfs" mount "$url" "$WORK/never" --spool "$WORK/spool-never" "$@" 2>&1) || rc=$?
    if kf_is_mounted "$WORK/never"; then
        fusermount3 -u "$WORK/never" 2>/dev/null || true
        kf_fail "$what: mounted"
    fi
    ((rc != 0)) || kf_fail "$what: exit status 0"
    [[ $(wc -l <<<"$out") == 1 ]] || kf_fail "$what: not one line: $out"
    grep -q -- "$want" <<<"$out" || kf_fail "$what: expected '$want' in: $out"
    kf_log "$what refused: $out"
}

start expired
for u in "ftpes://$FTP_USER@localhost:$FPORT/" "https://$FTP_USER@localhost:$SPORT/"; do
    refused "expired (${u%%:*})" "certificate of localhost not trusted.*has expired" "$u" --ca-file "$WORK/expired.pem"
done
kf_stop_pid "$KEYFTPD_PID"

start cert
for s in ftpes https; do
    port=$FPORT
    [[ $s == https ]] && port=$SPORT
    refused "wrong CA ($s)" "certificate of localhost not trusted.*not signed by a trusted CA" \
        "$s://$FTP_USER@localhost:$port/" --ca-file "$WORK/other.pem"
    refused "no CA given ($s)" "certificate of localhost not trusted (system roots" \
        "$s://$FTP_USER@localhost:$port/"
    refused "wrong host name ($s)" "certificate of 127.0.0.1 not trusted.*another host name" \
        "$s://$FTP_USER@127.0.0.1:$port/" --ca-file "$WORK/cert.pem"
    refused "wrong pin ($s)" "certificate of 127.0.0.1 not trusted: .*not the pinned" \
        "$s://$FTP_USER@127.0.0.1:$port/" --pin-sha256 "$(printf '%064d' 0)"
done
# Plain logins to a TLS-only server are refused too, each with the server's word.
refused "plain FTP under --require-tls" "530" "ftp://$FTP_USER@127.0.0.1:$FPORT/"
refused "plain HTTP under --require-tls" "HTTP 403 .*HTTPS only" "http://$FTP_USER@127.0.0.1:$HPORT/"

# The certificate replaced while mounted, mid-upload (1 MiB/s): each
# transport's reconnect refuses it, and the job fails for good.
size=$((6 << 20))
kf_mkfile "$WORK/r.bin" "$size"
ftp_port=$FPORT https_port=$SPORT
for s in ftpes https; do
    port=$ftp_port
    [[ $s == https ]] && port=$https_port
    mnt=$WORK/mnt-$s
    kf_mount "$s://$FTP_USER@localhost:$port/" "$mnt" --spool "$WORK/spool-$s" \
        --ca-file "$WORK/cert.pem" --bwlimit 1M
    cp "$WORK/r.bin" "$mnt/$s.bin" || kf_fail "$s: cp"
    kf_wait_size_between "$ROOT/$s.bin" $((256 << 10)) "$size" 30 || kf_fail "$s: upload did not start"
    kf_kill9 "$KEYFTPD_PID"
    start other "$ftp_port" "$https_port"
    rc=0
    timeout 90 "$KF_BIN/keyfs" wait "$mnt" --timeout 60 2>"$WORK/wait-$s.err" || rc=$?
    ((rc == 1)) || kf_fail "$s: keyfs wait exited $rc, not 1 (a permanent failure): $(cat "$WORK/wait-$s.err")"
    grep -q 'not trusted' "$WORK/wait-$s.err" || kf_fail "$s: keyfs wait said: $(cat "$WORK/wait-$s.err")"
    st() { "$KF_BIN/keyfs" status --json "$mnt" | python3 -c '
import json, sys
f = [f for f in json.load(sys.stdin)["files"] if f["path"].endswith(sys.argv[1])][0]
print(f["state"], f["tries"], f["last_error"])' "$s.bin"; }
    first=$(st)
    kf_log "$s: status after the certificate changed: $first"
    [[ $first == "failed "* ]] || kf_fail "$s: not failed: $first"
    grep -q 'certificate of localhost not trusted (system roots and .*cert.pem): bad signature' <<<"$first" ||
        kf_fail "$s: status does not give the reason: $first"
    sleep 3
    [[ $(st) == "$first" ]] || kf_fail "$s: the failed upload was tried again: $(st)"
    # The server never took a login in the clear, nor more bytes.
    grep -q "login $FTP_USER from" "$KEYFTPD_LOG" && kf_fail "$s: the new server took a login"
    [[ $(kf_size "$ROOT/$s.bin") -lt $size ]] || kf_fail "$s: the upload completed anyway"
    kf_unmount "$mnt"
    # Back to the trusted certificate for the next transport.
    kf_stop_pid "$KEYFTPD_PID"
    start cert "$ftp_port" "$https_port"
done
kf_log "ok"
