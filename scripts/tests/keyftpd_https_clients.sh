#!/usr/bin/env bash
# keyftpd's HTTP face over TLS (--https, a `keyftpd gen-cert` certificate
# given to each client as its CA) against stock clients: curl --cacert
# (the seed's flow with -F: a partial upload, the state, the rest from its
# offset; a Range GET; a resumed download) and rclone's webdav backend
# with --ca-cert (copy up, ls, check, copy down). Under --require-tls the
# plain HTTP face refuses credentials (403, the reason in one line, no
# 401 prompt) while HTTPS takes them; curl without the CA refuses the
# server. Every file is checked by sha256. Builds nothing: the binary
# comes from $KF_BIN (default target/debug).
set -euo pipefail

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/clients.sh"
kf_trap_cleanup
kc_need curl rclone sha256sum python3
kc_work
mkdir -p "$WORK/up/sub" "$WORK/down"
"$KF_BIN/keyftpd" gen-cert --host localhost --out-cert "$WORK/cert.pem" --out-key "$WORK/key.pem" >/dev/null
kc_keyftpd --http 127.0.0.1:0 --https 127.0.0.1:0 --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" --require-tls
URL="https://localhost:$SPORT"
PLAIN="http://127.0.0.1:$HPORT"

C=(curl -sS --fail --max-time 60 --cacert "$WORK/cert.pem" -u "tester:$KEYFTPD_PASSWORD")

head -c 5000000 /dev/urandom >"$WORK/local/big.bin"
KEY=$(crc "$WORK/local/big.bin")

# Trust: curl without the CA refuses the server; with it, TLS 1.2+ and HTTP/1.1.
if curl -sS --max-time 20 -o /dev/null "$URL/" 2>"$WORK/nocacert.err"; then
    fail "curl trusted a self-signed server without --cacert"
fi
grep -qi 'certificate' "$WORK/nocacert.err" || fail "curl without the CA: $(cat "$WORK/nocacert.err")"
"${C[@]}" -o /dev/null -w '%{http_version} %{ssl_verify_result}\n' "$URL/" >"$WORK/v.txt" || fail "HTTPS GET /"
[ "$(cat "$WORK/v.txt")" = "1.1 0" ] || fail "HTTP version and verification: $(cat "$WORK/v.txt")"

# --require-tls: the plain face refuses credentials, in one line, no prompt.
code=$(curl -sS -D "$WORK/h.txt" -o "$WORK/403.txt" -w '%{http_code}' \
    -u "tester:$KEYFTPD_PASSWORD" "$PLAIN/big.bin?state")
[ "$code" = 403 ] || fail "credentials over plain HTTP gave $code"
[ "$(wc -l <"$WORK/403.txt")" = 1 ] && grep -q 'HTTPS only' "$WORK/403.txt" || fail "403 reason: $(cat "$WORK/403.txt")"
grep -qi '^www-authenticate' "$WORK/h.txt" && fail "plain HTTP asked for a password"
code=$(curl -sS -o /dev/null -w '%{http_code}' "$PLAIN/big.bin?state")
[ "$code" = 403 ] || fail "no credentials over plain HTTP gave $code"
# Over HTTPS, no credentials: the ordinary 401 challenge.
code=$(curl -sS --cacert "$WORK/cert.pem" -o /dev/null -w '%{http_code}' "$URL/big.bin?state")
[ "$code" = 401 ] || fail "no credentials over HTTPS gave $code"

# The seed's flow with curl -F: the state of a new file, a partial upload
# under the whole file's key, then the rest from the state's offset.
st=$("${C[@]}" "$URL/big.bin?state") || fail "state query"
[ "$st" = '{"size": 0, "key": null, "complete": false}' ] || fail "state of a new file: $st"
head -c 1800000 "$WORK/local/big.bin" >"$WORK/local/head.bin"
out=$("${C[@]}" -F offset=0 -F "key=$KEY" -F "file=@$WORK/local/head.bin" "$URL/big.bin") || fail "partial upload"
[ "$(echo "$out" | json complete)" = False ] || fail "a partial is not complete: $out"
N=$("${C[@]}" "$URL/big.bin?state" | json size)
[ "$N" = 1800000 ] || fail "state size $N"
tail -c +$((N + 1)) "$WORK/local/big.bin" >"$WORK/local/rest.bin"
out=$("${C[@]}" -F "offset=$N" -F "key=$KEY" -F "file=@$WORK/local/rest.bin" "$URL/big.bin") || fail "resume"
[ "$(echo "$out" | json complete)" = True ] || fail "resumed upload not complete: $out"
same "$WORK/local/big.bin" "$WORK/root/big.bin" "curl -F resume over HTTPS"
st=$("${C[@]}" "$URL/big.bin?state")
[ "$st" = "{\"size\": 5000000, \"key\": \"$KEY\", \"complete\": true}" ] || fail "final state: $st"
# A whole upload with -F.
out=$("${C[@]}" -F "file=@$WORK/local/head.bin" "$URL/whole.bin") || fail "curl -F upload"
[ "$(echo "$out" | json complete)" = True ] || fail "whole upload not complete: $out"
same "$WORK/local/head.bin" "$WORK/root/whole.bin" "curl -F upload over HTTPS"

# Range GET and a resumed download (-C -).
"${C[@]}" -r 1000-1999 -o "$WORK/local/range.bin" "$URL/big.bin" || fail "range GET"
dd if="$WORK/local/big.bin" of="$WORK/local/range.want" bs=1000 skip=1 count=1 status=none
same "$WORK/local/range.want" "$WORK/local/range.bin" "range GET over HTTPS"
head -c 1234567 "$WORK/local/big.bin" >"$WORK/local/down.bin"
"${C[@]}" -C - -o "$WORK/local/down.bin" "$URL/big.bin" || fail "curl -C - download"
same "$WORK/local/big.bin" "$WORK/local/down.bin" "resumed download over HTTPS"

# rclone's webdav backend over HTTPS, trusting the certificate by --ca-cert.
head -c 3000000 /dev/urandom >"$WORK/up/a.bin"
head -c 70000 /dev/urandom >"$WORK/up/sub/b.bin"
R=":webdav,url='$URL/',user=tester,pass=$(rclone obscure "$KEYFTPD_PASSWORD"):"
rc() { rclone --config /dev/null --low-level-retries 1 --retries 1 "$@"; }
if rc ls "${R}" >/dev/null 2>"$WORK/rclone-noca.err"; then
    fail "rclone trusted a self-signed server without --ca-cert"
fi
rc --ca-cert "$WORK/cert.pem" copy "$WORK/up" "${R}tree" || fail "rclone copy up"
same "$WORK/up/a.bin" "$WORK/root/tree/a.bin" "rclone copy a.bin"
same "$WORK/up/sub/b.bin" "$WORK/root/tree/sub/b.bin" "rclone copy sub/b.bin"
rc --ca-cert "$WORK/cert.pem" ls "${R}tree" >"$WORK/ls.txt" || fail "rclone ls"
[ "$(wc -l <"$WORK/ls.txt")" = 2 ] || fail "rclone ls: $(cat "$WORK/ls.txt")"
grep -q ' 3000000 a.bin$' "$WORK/ls.txt" || fail "ls size: $(cat "$WORK/ls.txt")"
rc --ca-cert "$WORK/cert.pem" check "$WORK/up" "${R}tree" || fail "rclone check"
rc --ca-cert "$WORK/cert.pem" copy "${R}tree" "$WORK/down" || fail "rclone copy down"
same "$WORK/up/a.bin" "$WORK/down/a.bin" "rclone copy down"

grep -q 'failed login' "$KEYFTPD_LOG" && fail "a password was checked and refused"
echo "keyftpd_https_clients: ok"
