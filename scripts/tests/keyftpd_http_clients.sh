#!/usr/bin/env bash
# keyftpd's HTTP face against curl: the seed's flow with `curl -F` (a whole
# upload, one posted to a directory, then a resume from the state's offset), a Range GET, a resumed
# download (`-C -`), PUT and a resumed PUT (`-C N -T`, Content-Range), the
# WebDAV namespace methods (MKCOL, PROPFIND, MOVE, COPY, DELETE), and an
# upload started over FTP (curl) and finished over HTTP (curl -F). Every
# file is checked by sha256. Builds nothing: the binary comes from $KF_BIN
# (default target/debug). Exits non-zero on failure.
set -euo pipefail

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/clients.sh"
kf_trap_cleanup
kc_need curl sha256sum python3
kc_keyftpd --http 127.0.0.1:0
URL="http://127.0.0.1:$HPORT"
FTP="ftp://tester:$KEYFTPD_PASSWORD@127.0.0.1:$FPORT"

C=(curl -sS --fail --max-time 60 -u "tester:$KEYFTPD_PASSWORD")

head -c 5000000 /dev/urandom >"$WORK/local/big.bin"
KEY=$(crc "$WORK/local/big.bin")

# Without credentials: 401 with a Basic challenge.
code=$(curl -sS -o /dev/null -w '%{http_code}' "$URL/big.bin?state")
[ "$code" = 401 ] || fail "no credentials gave $code"

# The seed's flow with curl -F: the state of a new file, a whole upload.
st=$("${C[@]}" "$URL/new.bin?state") || fail "state query"
[ "$st" = '{"size": 0, "key": null, "complete": false}' ] || fail "state of a new file: $st"
out=$("${C[@]}" -F offset=0 -F "key=$KEY" -F "file=@$WORK/local/big.bin" "$URL/big.bin") || fail "curl -F upload"
[ "$(echo "$out" | json complete)" = True ] || fail "upload not complete: $out"
same "$WORK/local/big.bin" "$WORK/root/big.bin" "curl -F upload"
# A form posted to a directory, as an HTML form with a file input does:
# the file takes the part's filename (curl sends the base name).
"${C[@]}" -X MKCOL "$URL/drop" >/dev/null || fail "MKCOL drop"
cp "$WORK/local/big.bin" "$WORK/local/form.bin"
out=$("${C[@]}" -F "file=@$WORK/local/form.bin" "$URL/drop/") || fail "curl -F to a directory"
[ "$(echo "$out" | json complete)" = True ] || fail "form upload not complete: $out"
same "$WORK/local/big.bin" "$WORK/root/drop/form.bin" "curl -F to a directory"

# A partial upload under the whole file's key, then the rest from the
# state's offset (what a client does after a cut).
head -c 1800000 "$WORK/local/big.bin" >"$WORK/local/head.bin"
out=$("${C[@]}" -F offset=0 -F "key=$KEY" -F "file=@$WORK/local/head.bin" "$URL/resumed.bin") || fail "partial upload"
[ "$(echo "$out" | json complete)" = False ] || fail "a partial is not complete: $out"
N=$("${C[@]}" "$URL/resumed.bin?state" | json size)
[ "$N" = 1800000 ] || fail "state size $N"
tail -c +$((N + 1)) "$WORK/local/big.bin" >"$WORK/local/rest.bin"
# A wrong key at that offset: 409 and the state.
code=$(curl -sS -u "tester:$KEYFTPD_PASSWORD" -o "$WORK/409.json" -w '%{http_code}' \
    -F "offset=$N" -F key=0x12345678 -F "file=@$WORK/local/rest.bin" "$URL/resumed.bin")
[ "$code" = 409 ] || fail "wrong key gave $code"
grep -q "\"size\": $N" "$WORK/409.json" || fail "409 body: $(cat "$WORK/409.json")"
out=$("${C[@]}" -F "offset=$N" -F "key=$KEY" -F "file=@$WORK/local/rest.bin" "$URL/resumed.bin") || fail "resume"
[ "$(echo "$out" | json complete)" = True ] || fail "resumed upload not complete: $out"
same "$WORK/local/big.bin" "$WORK/root/resumed.bin" "curl -F resume"

# Range GET and a resumed download (-C -).
"${C[@]}" -r 1000-1999 -o "$WORK/local/range.bin" "$URL/big.bin" || fail "range GET"
dd if="$WORK/local/big.bin" of="$WORK/local/range.want" bs=1000 skip=1 count=1 status=none
same "$WORK/local/range.want" "$WORK/local/range.bin" "range GET"
head -c 1234567 "$WORK/local/big.bin" >"$WORK/local/down.bin"
"${C[@]}" -C - -o "$WORK/local/down.bin" "$URL/big.bin" || fail "curl -C - download"
same "$WORK/local/big.bin" "$WORK/local/down.bin" "resumed download"
code=$(curl -sS -u "tester:$KEYFTPD_PASSWORD" -o /dev/null -w '%{http_code}' -r 6000000- "$URL/big.bin")
[ "$code" = 416 ] || fail "range past the end gave $code"

# PUT, and a resumed PUT (curl -C N -T sends Content-Range from N).
"${C[@]}" -T "$WORK/local/head.bin" "$URL/put.bin" || fail "PUT"
"${C[@]}" -C 1800000 -T "$WORK/local/big.bin" "$URL/put.bin" || fail "resumed PUT"
same "$WORK/local/big.bin" "$WORK/root/put.bin" "resumed PUT"

# WebDAV namespace methods.
"${C[@]}" -X MKCOL "$URL/dir" || fail "MKCOL"
"${C[@]}" -X COPY -H "Destination: $URL/dir/copy.bin" "$URL/big.bin" || fail "COPY"
same "$WORK/local/big.bin" "$WORK/root/dir/copy.bin" "COPY"
"${C[@]}" -X MOVE -H "Destination: $URL/dir/moved.bin" "$URL/resumed.bin" || fail "MOVE"
[ ! -e "$WORK/root/resumed.bin" ] || fail "MOVE left the source"
st=$("${C[@]}" "$URL/dir/moved.bin?state") || fail "state after MOVE"
[ "$st" = "{\"size\": 5000000, \"key\": \"$KEY\", \"complete\": true}" ] || fail "MOVE lost the key: $st"
"${C[@]}" -X PROPFIND -H 'Depth: 1' "$URL/dir/" >"$WORK/propfind.xml" || fail "PROPFIND"
grep -q '<D:href>/dir/moved.bin</D:href>' "$WORK/propfind.xml" || fail "PROPFIND lists moved.bin"
grep -q "<K:key>$KEY</K:key><K:state>complete</K:state>" "$WORK/propfind.xml" || fail "PROPFIND key and state"
code=$(curl -sS -u "tester:$KEYFTPD_PASSWORD" -o /dev/null -w '%{http_code}' -X MOVE \
    -H 'Overwrite: F' -H "Destination: $URL/dir/copy.bin" "$URL/put.bin")
[ "$code" = 412 ] || fail "MOVE onto an existing file with Overwrite: F gave $code"
"${C[@]}" -X DELETE "$URL/dir" || fail "DELETE"
[ ! -e "$WORK/root/dir" ] || fail "DELETE left the directory"

# Started over FTP, finished over HTTP: curl's FTP upload of the first
# part (a plain STOR), then the rest by the seed's POST without a key.
"${C[@]}" -T "$WORK/local/head.bin" "$FTP/cross.bin" || fail "FTP upload"
N=$("${C[@]}" "$URL/cross.bin?state" | json size)
[ "$N" = 1800000 ] || fail "state after FTP: $N"
"${C[@]}" -F "offset=$N" -F "file=@$WORK/local/rest.bin" "$URL/cross.bin" >/dev/null || fail "HTTP finish"
same "$WORK/local/big.bin" "$WORK/root/cross.bin" "FTP then HTTP"
"${C[@]}" -o "$WORK/local/cross.ftp" "$FTP/cross.bin" || fail "FTP download"
same "$WORK/local/big.bin" "$WORK/local/cross.ftp" "FTP download of the HTTP upload"

echo "keyftpd_http_clients: ok"
