#!/usr/bin/env bash
# keyfs over FTPS against keyftpd --require-tls with a self-signed
# certificate: ftpes:// (explicit) cp and read back byte-identical, ftps://
# (implicit) both ways, --pin-sha256; refusals before mounting (wrong CA,
# wrong host name, wrong pin, plain ftp:// to a TLS-only server) each as one
# line naming the host and the reason; kill -9 of the server mid-upload,
# restarted on the same port: the upload resumes over TLS and completes.
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
"$KF_BIN/keyftpd" gen-cert --host localhost --out-cert "$WORK/other.pem" --out-key "$WORK/other-key.pem" >/dev/null
tls_args=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" --require-tls)
kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" 0 "${tls_args[@]}" --implicit-tls-listen 127.0.0.1:0
port=$KEYFTPD_PORT
iport=$(sed -n 's/^implicit TLS on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "${KEYFTPD_LOG%/err}/out")
[[ -n $iport ]] || kf_fail "no implicit TLS port"

# Refusals before mounting: one line, the host and the reason.
refused() { # WHAT WANT URL [options]
    local what=$1 want=$2 url=$3 out rc=0
    shift 3
    mkdir -p "$WORK/never"
    out=$(timeout 60 "$KF_BIN/keyfs" mount "$url" "$WORK/never" --spool "$WORK/spool-never" "$@" 2>&1) || rc=$?
    ((rc != 0)) || { fusermount3 -u "$WORK/never" 2>/dev/null || true; kf_fail "$what: mounted"; }
    [[ $(wc -l <<<"$out") == 1 ]] || kf_fail "$what: not one line: $out"
    grep -q -- "$want" <<<"$out" || kf_fail "$what: expected '$want' in: $out"
    kf_log "$what refused: $out"
}
refused "wrong CA" "certificate of localhost not trusted.*not signed by a trusted CA" \
    "ftpes://$FTP_USER@localhost:$port/" --ca-file "$WORK/other.pem"
refused "wrong host name" "certificate of 127.0.0.1 not trusted.*another host name" \
    "ftpes://$FTP_USER@127.0.0.1:$port/" --ca-file "$WORK/cert.pem"
refused "wrong pin" "not the pinned" \
    "ftpes://$FTP_USER@127.0.0.1:$port/" --pin-sha256 "$(printf '%064d' 0)"
refused "plain login" "530" "ftp://$FTP_USER@127.0.0.1:$port/"

# ftpes://: cp, then the server copy and a read back are byte-identical.
mnt=$WORK/mnt
kf_mount "ftpes://$FTP_USER@localhost:$port/" "$mnt" --spool "$WORK/spool" --ca-file "$WORK/cert.pem"
kf_mkfile "$WORK/a.bin" $((5 << 20))
cp "$WORK/a.bin" "$mnt/a.bin" || kf_fail "cp over ftpes"
kf_wait_uploaded "$ROOT/a.bin" "$WORK/a.bin" 60 || kf_fail "not uploaded over ftpes"
cmp "$WORK/a.bin" "$mnt/a.bin" || kf_fail "read back over ftpes differs"
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do kf_mkfile "$mnt/s$i.bin" 4096; done
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
    kf_wait_uploaded "$ROOT/s$i.bin" "$mnt/s$i.bin" 30 || kf_fail "small file $i not uploaded"
done
grep -q 'refused a TLS data connection' "$KEYFTPD_LOG" && kf_fail "a keyfs data connection did not resume its session"
kf_unmount "$mnt"

# --pin-sha256 trusts the self-signed certificate by its hash, any name.
pin=$(openssl x509 -in "$WORK/cert.pem" -outform der | sha256sum | cut -d' ' -f1)
kf_mount "ftpes://$FTP_USER@127.0.0.1:$port/" "$mnt" --spool "$WORK/spool-pin" --pin-sha256 "$pin"
cmp "$WORK/a.bin" "$mnt/a.bin" || kf_fail "read over a pinned certificate differs"
kf_unmount "$mnt"

# ftps:// (implicit TLS): read and write.
kf_mount "ftps://$FTP_USER@localhost:$iport/" "$mnt" --spool "$WORK/spool-implicit" --ca-file "$WORK/cert.pem"
cmp "$WORK/a.bin" "$mnt/a.bin" || kf_fail "read over ftps differs"
kf_mkfile "$WORK/b.bin" $((3 << 20))
cp "$WORK/b.bin" "$mnt/b.bin" || kf_fail "cp over ftps"
kf_wait_uploaded "$ROOT/b.bin" "$WORK/b.bin" 60 || kf_fail "not uploaded over ftps"
kf_unmount "$mnt"

# kill -9 of the server mid-upload (slowed by --bwlimit), restarted on the
# same port: keyfs reconnects over TLS and resumes.
size=$((8 << 20))
kf_mount "ftpes://$FTP_USER@localhost:$port/" "$mnt" --spool "$WORK/spool-cut" --ca-file "$WORK/cert.pem" --bwlimit 2M
kf_mkfile "$WORK/c.bin" "$size"
first_log=$KEYFTPD_LOG
cp "$WORK/c.bin" "$mnt/c.bin" || kf_fail "cp"
kf_wait_size_between "$ROOT/c.bin" $((1 << 20)) "$size" 30 || kf_fail "upload did not start"
kf_kill9 "$KEYFTPD_PID"
partial=$(kf_settled_size "$ROOT/c.bin")
kf_log "keyftpd killed with $partial of $size bytes on disk"
sleep 2
kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" "$port" "${tls_args[@]}"
kf_wait_uploaded "$ROOT/c.bin" "$WORK/c.bin" 90 || kf_fail "not completed after the server restart"
grep -Eq 'STOR /c.bin offset=[1-9][0-9]* .*state=complete' "$KEYFTPD_LOG" ||
    kf_fail "the upload did not resume after the restart: $(grep 'c.bin' "$KEYFTPD_LOG" | tail -3)"
grep -q 'refused a TLS data connection' "$first_log" "$KEYFTPD_LOG" && kf_fail "a data connection was refused"
kf_unmount "$mnt"
kf_log "ok"
