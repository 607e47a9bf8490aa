#!/usr/bin/env bash
# keyftpd against stock FTP clients: curl and lftp upload, download and
# resume; every file is checked by sha256. Builds nothing: the binary comes
# from $KF_BIN (default target/debug). Exits non-zero on failure.
set -euo pipefail

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/clients.sh"
kf_trap_cleanup
kc_need curl lftp sha256sum
kc_keyftpd
PORT=$FPORT
URL="ftp://tester:$KEYFTPD_PASSWORD@127.0.0.1:$PORT"
CURL=(curl -sS --fail --max-time 60)

head -c 5000000 /dev/urandom >"$WORK/local/big.bin"
head -c 1234567 "$WORK/local/big.bin" >"$WORK/local/part.bin"

# curl: upload, download, list.
"${CURL[@]}" -T "$WORK/local/big.bin" "$URL/curl/big.bin" --ftp-create-dirs || fail "curl upload"
same "$WORK/local/big.bin" "$WORK/root/curl/big.bin" "curl upload"
"${CURL[@]}" -o "$WORK/local/down.bin" "$URL/curl/big.bin" || fail "curl download"
same "$WORK/local/big.bin" "$WORK/local/down.bin" "curl download"
"${CURL[@]}" "$URL/curl/" | grep -q 'big.bin' || fail "curl list"

# curl: resumed upload (-C - asks SIZE, then APPE) and resumed download (REST).
"${CURL[@]}" -T "$WORK/local/part.bin" "$URL/curl/resume.bin" || fail "curl partial upload"
"${CURL[@]}" -C - -T "$WORK/local/big.bin" "$URL/curl/resume.bin" || fail "curl resume upload"
same "$WORK/local/big.bin" "$WORK/root/curl/resume.bin" "curl resumed upload"
cp "$WORK/local/part.bin" "$WORK/local/resumed-down.bin"
"${CURL[@]}" -C - -o "$WORK/local/resumed-down.bin" "$URL/curl/big.bin" || fail "curl resume download"
same "$WORK/local/big.bin" "$WORK/local/resumed-down.bin" "curl resumed download"

# lftp: upload, download, resumed upload (put -c: REST + STOR) and download (get -c).
lf() {
    timeout 120 lftp -c "set cmd:fail-exit yes; set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 20; set xfer:clobber yes; open $URL; $1"
}
lf "mkdir -p lftp; put -O lftp $WORK/local/big.bin" >/dev/null || fail "lftp put"
same "$WORK/local/big.bin" "$WORK/root/lftp/big.bin" "lftp put"
cp "$WORK/local/part.bin" "$WORK/root/lftp/resume.bin"
lf "put -c $WORK/local/big.bin -o lftp/resume.bin" >/dev/null || fail "lftp put -c"
same "$WORK/local/big.bin" "$WORK/root/lftp/resume.bin" "lftp resumed upload"
grep -q 'STOR /lftp/resume.bin offset=1234567' "$KEYFTPD_LOG" || fail "lftp put -c did not resume"
lf "get lftp/big.bin -o $WORK/local/lftp-down.bin" >/dev/null || fail "lftp get"
same "$WORK/local/big.bin" "$WORK/local/lftp-down.bin" "lftp get"
cp "$WORK/local/part.bin" "$WORK/local/lftp-resumed.bin"
lf "get -c lftp/big.bin -o $WORK/local/lftp-resumed.bin" >/dev/null || fail "lftp get -c"
same "$WORK/local/big.bin" "$WORK/local/lftp-resumed.bin" "lftp resumed download"
lf "cls -1 lftp" | grep -q 'big.bin' || fail "lftp ls"
lf "ls -a /" | grep -q '.keyftpd' && fail "metadata visible"

grep -q 'APPE /curl/resume.bin offset=1234567' "$KEYFTPD_LOG" || fail "curl -C - did not resume"
echo "keyftpd_clients: ok (curl $(curl --version | head -1 | cut -d' ' -f2), lftp)"
