#!/usr/bin/env bash
# keyftpd over FTPS against stock clients, with a self-signed certificate
# (keyftpd gen-cert) given to each as its CA: curl (explicit --ssl-reqd and
# implicit ftps://), lftp (ssl-force, protected data) and python's ftplib
# FTP_TLS (PROT P) upload, download and resume; every file is checked by
# sha256. Refusals: --require-tls refuses a plain login (530) and a PROT C
# transfer (521); a data connection that does not resume the control
# connection's TLS session is refused (522). Builds nothing: the binary
# comes from $KEYFTPD (default target/debug/keyftpd).
set -euo pipefail

KEYFTPD=${KEYFTPD:-target/debug/keyftpd}
[ -x "$KEYFTPD" ] || { echo "keyftpd binary not found: $KEYFTPD" >&2; exit 2; }
for tool in curl lftp python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; echo "--- server log" >&2; tail -n 30 "$WORK"/*.log >&2; exit 1; }
same() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$(sha256sum <"$2" | cut -d' ' -f1)" ] || fail "$3: $1 != $2"; }

# start NAME ARGS...: starts keyftpd, sets PORT (and IPORT when implicit).
start() {
    local name=$1
    shift
    mkdir -p "$WORK/$name"
    "$KEYFTPD" --root "$WORK/$name" --listen 127.0.0.1:0 --user tester \
        --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
    PORT="" IPORT=""
    for _ in $(seq 1 100); do
        PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/$name.out" 2>/dev/null || true)
        IPORT=$(sed -n 's/^implicit TLS on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/$name.out" 2>/dev/null || true)
        [ -n "$PORT" ] && break
        sleep 0.1
    done
    [ -n "$PORT" ] || fail "keyftpd $name did not report its port"
}

"$KEYFTPD" gen-cert --host localhost --out-cert "$WORK/cert.pem" --out-key "$WORK/key.pem" >/dev/null
[ "$(stat -c %a "$WORK/key.pem")" = 600 ] || fail "key file is not 0600"
export KEYFTPD_PASSWORD=tls-clients-pw
start root --implicit-tls-listen 127.0.0.1:0
[ -n "$IPORT" ] || fail "no implicit TLS port reported"
URL="ftp://tester:$KEYFTPD_PASSWORD@localhost:$PORT"
IURL="ftps://tester:$KEYFTPD_PASSWORD@localhost:$IPORT"
mkdir -p "$WORK/local"
head -c 5000000 /dev/urandom >"$WORK/local/big.bin"
head -c 1234567 "$WORK/local/big.bin" >"$WORK/local/part.bin"

# curl, explicit TLS (curl protects data by default): upload, download, resume.
CURL=(curl -sS --fail --max-time 60 --ssl-reqd --cacert "$WORK/cert.pem")
"${CURL[@]}" -T "$WORK/local/big.bin" "$URL/curl/big.bin" --ftp-create-dirs || fail "curl upload"
same "$WORK/local/big.bin" "$WORK/root/curl/big.bin" "curl upload"
"${CURL[@]}" -o "$WORK/local/down.bin" "$URL/curl/big.bin" || fail "curl download"
same "$WORK/local/big.bin" "$WORK/local/down.bin" "curl download"
"${CURL[@]}" "$URL/curl/" | grep -q 'big.bin' || fail "curl list"
"${CURL[@]}" -T "$WORK/local/part.bin" "$URL/curl/resume.bin" || fail "curl partial upload"
"${CURL[@]}" -C - -T "$WORK/local/big.bin" "$URL/curl/resume.bin" || fail "curl resume upload"
same "$WORK/local/big.bin" "$WORK/root/curl/resume.bin" "curl resumed upload"
grep -q 'APPE /curl/resume.bin offset=1234567' "$WORK/root.log" || fail "curl -C - did not resume"
cp "$WORK/local/part.bin" "$WORK/local/resumed-down.bin"
"${CURL[@]}" -C - -o "$WORK/local/resumed-down.bin" "$URL/curl/big.bin" || fail "curl resume download"
same "$WORK/local/big.bin" "$WORK/local/resumed-down.bin" "curl resumed download"
# A wrong CA is refused by curl: the certificate is really checked.
head -c 0 /dev/null >"$WORK/empty.pem"
"$KEYFTPD" gen-cert --host localhost --out-cert "$WORK/other.pem" --out-key "$WORK/other-key.pem" >/dev/null
curl -sS --max-time 20 --ssl-reqd --cacert "$WORK/other.pem" "$URL/curl/" >/dev/null 2>&1 && fail "curl trusted a wrong CA"

# curl, implicit TLS.
curl -sS --fail --max-time 60 --cacert "$WORK/cert.pem" -o "$WORK/local/implicit.bin" "$IURL/curl/big.bin" ||
    fail "curl implicit download"
same "$WORK/local/big.bin" "$WORK/local/implicit.bin" "curl implicit download"
curl -sS --fail --max-time 60 --cacert "$WORK/cert.pem" -T "$WORK/local/big.bin" "$IURL/curl/implicit-up.bin" ||
    fail "curl implicit upload"
same "$WORK/local/big.bin" "$WORK/root/curl/implicit-up.bin" "curl implicit upload"

# lftp: put, put -c (REST + STOR), get, get -c, all with protected data.
lf() {
    timeout 120 lftp -c "set cmd:fail-exit yes; set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; set ssl:ca-file $WORK/cert.pem; set net:max-retries 1; set net:timeout 20; set xfer:clobber yes; open $URL; $1"
}
lf "mkdir -p lftp; put -O lftp $WORK/local/big.bin" >/dev/null || fail "lftp put"
same "$WORK/local/big.bin" "$WORK/root/lftp/big.bin" "lftp put"
cp "$WORK/local/part.bin" "$WORK/root/lftp/resume.bin"
lf "put -c $WORK/local/big.bin -o lftp/resume.bin" >/dev/null || fail "lftp put -c"
same "$WORK/local/big.bin" "$WORK/root/lftp/resume.bin" "lftp resumed upload"
grep -q 'STOR /lftp/resume.bin offset=1234567' "$WORK/root.log" || fail "lftp put -c did not resume"
lf "get lftp/big.bin -o $WORK/local/lftp-down.bin" >/dev/null || fail "lftp get"
same "$WORK/local/big.bin" "$WORK/local/lftp-down.bin" "lftp get"
cp "$WORK/local/part.bin" "$WORK/local/lftp-resumed.bin"
lf "get -c lftp/big.bin -o $WORK/local/lftp-resumed.bin" >/dev/null || fail "lftp get -c"
same "$WORK/local/big.bin" "$WORK/local/lftp-resumed.bin" "lftp resumed download"
lf "cls -1 lftp" | grep -q 'big.bin' || fail "lftp ls"

# python ftplib FTP_TLS with PROT P. ftplib does not pass the control
# session to its data connections; `reuse` does, as the server requires.
cat >"$WORK/ftps.py" <<'PY'
import ftplib, io, ssl, sys
mode, port, ca, local = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
class Reuse(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size
ctx = ssl.create_default_context(cafile=ca)
f = (Reuse if mode != "noreuse" else ftplib.FTP_TLS)(context=ctx, timeout=30)
f.connect("localhost", port)
if mode == "plain":
    # Plain login on a --require-tls server: USER must be refused.
    try:
        ftplib.FTP.login(f, "tester", "tls-clients-pw")
    except ftplib.error_perm as e:
        print(str(e)[:3]); sys.exit(0)
    print("logged in"); sys.exit(1)
f.login("tester", "tls-clients-pw")
if mode == "protc":
    f.prot_c()
    try:
        f.retrlines("LIST", lambda l: None)
    except ftplib.error_perm as e:
        print(str(e)[:3]); sys.exit(0)
    print("transferred"); sys.exit(1)
f.prot_p()
data = open(local, "rb").read()
if mode == "noreuse":
    try:
        f.storbinary("STOR thief.bin", io.BytesIO(data))
    except (ftplib.all_errors + (ssl.SSLError,)) as e:
        print("refused"); sys.exit(0)
    print("accepted"); sys.exit(1)
f.storbinary("STOR py.bin", io.BytesIO(data[:1234567]))
f.storbinary("STOR py.bin", io.BytesIO(data[1234567:]), rest=1234567)
out = io.BytesIO(); f.retrbinary("RETR py.bin", out.write)
assert out.getvalue() == data, "download differs"
out = io.BytesIO(); f.retrbinary("RETR py.bin", out.write, rest=1234567)
assert out.getvalue() == data[1234567:], "resumed download differs"
f.quit()
print("ok")
PY
py() { timeout 60 python3 "$WORK/ftps.py" "$1" "$2" "$WORK/cert.pem" "$WORK/local/big.bin"; }
[ "$(py reuse "$PORT")" = ok ] || fail "python FTP_TLS upload/download/resume"
same "$WORK/local/big.bin" "$WORK/root/py.bin" "python resumed upload"
grep -q 'STOR /py.bin offset=1234567' "$WORK/root.log" || fail "python did not resume"

# Refusal: a data connection that does not resume the session.
[ "$(py noreuse "$PORT")" = refused ] || fail "a data connection without session reuse was accepted"
grep -q 'refused a TLS data connection that did not resume the session' "$WORK/root.log" ||
    fail "no refusal logged"
[ ! -s "$WORK/root/thief.bin" ] || fail "bytes of a refused data connection were stored"

# Refusals of --require-tls: a plain login (530), a PROT C transfer (521).
start strict --require-tls
[ "$(py plain "$PORT")" = 530 ] || fail "--require-tls let a plain USER through"
curl -sS --max-time 20 "ftp://tester:$KEYFTPD_PASSWORD@127.0.0.1:$PORT/" >/dev/null 2>&1 &&
    fail "--require-tls let plain curl log in"
[ "$(py protc "$PORT")" = 521 ] || fail "--require-tls let a PROT C transfer through"
"${CURL[@]}" -o "$WORK/local/strict.bin" "ftp://tester:$KEYFTPD_PASSWORD@localhost:$PORT/" >/dev/null ||
    fail "--require-tls refused a TLS client"

echo "keyftpd_tls_clients: ok (curl $(curl --version | head -1 | cut -d' ' -f2), lftp, python ftplib)"
