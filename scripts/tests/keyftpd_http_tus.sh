#!/usr/bin/env bash
# keyftpd's tus 1.0.0 against tuspy (PyPI, installed by this test into a
# cache directory outside the repository): an upload with crc32 checksums
# is cut mid-PATCH by a proxy; a new uploader that lost every local state
# creates the upload again with the same `key` metadata, gets the partial
# back and finishes it, re-sending only what was missing. Then, with curl:
# the creation's Upload-Offset, a wrong checksum (460, nothing appended),
# a different key replacing the partial, termination. Builds nothing: the
# binary comes from $KF_BIN (default target/debug).
set -euo pipefail

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/clients.sh"
kf_trap_cleanup
kc_need curl sha256sum python3
HERE=$(cd "$(dirname "$0")/.." && pwd)
PIPDIR=${KEYFS_PIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyfs-tests/pip}
if ! PYTHONPATH=$PIPDIR python3 -c 'import tusclient' 2>/dev/null; then
    echo "installing tuspy into $PIPDIR"
    mkdir -p "$PIPDIR"
    python3 -m pip install -q --disable-pip-version-check --target "$PIPDIR" tuspy ||
        { echo "cannot install tuspy" >&2; exit 1; }
fi

kc_keyftpd --http 127.0.0.1:0
mkdir -p "$WORK/root/up"
PORT=$HPORT

# The proxy cuts the first upload after 3.5 MiB (mid-way through a 1 MiB PATCH).
python3 "$HERE/lib/cutproxy.py" --upstream "127.0.0.1:$PORT" --cut-after 3670016 \
    --stats "$WORK/proxy.stats" --max-seconds 200 >"$WORK/proxy.out" &
PROXY_PID=$!
kf_register pids "$PROXY_PID"
PPORT=""
for _ in $(seq 1 100); do
    PPORT=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$WORK/proxy.out" 2>/dev/null || true)
    [ -n "$PPORT" ] && break
    sleep 0.1
done
[ -n "$PPORT" ] || fail "proxy did not start"

head -c 8388608 /dev/urandom >"$WORK/big.bin"
KEY=$(python3 -c 'import sys, zlib; print("0x%08X" % zlib.crc32(open(sys.argv[1], "rb").read()))' "$WORK/big.bin")
AUTH="Basic $(printf 'tester:%s' "$KEYFTPD_PASSWORD" | base64)"

cat >"$WORK/tus.py" <<'EOF'
import base64, struct, sys, zlib
from tusclient import client
from tusclient.uploader import Uploader

class Crc32:
    def __init__(self, data):
        self.v = zlib.crc32(data)
    def digest(self):
        return struct.pack(">I", self.v)

class CrcUploader(Uploader):
    CHECKSUM_ALGORITHM_PAIR = ("crc32", Crc32)

url, path, key, auth, phase = sys.argv[1:6]
c = client.TusClient(url, headers={"Authorization": auth})
up = CrcUploader(file_path=path, client=c, chunk_size=1 << 20, upload_checksum=True,
                 metadata={"filename": "big.bin", "key": key},
                 retries=2 if phase == "resume" else 0, retry_delay=0.2)
if phase == "cut":
    try:
        up.upload()
    except Exception as e:
        print("cut at offset %d: %s" % (up.offset, type(e).__name__))
        sys.exit(0)
    print("the upload was not cut")
    sys.exit(1)
up.upload()
print("done at offset %d" % up.offset)
EOF
PY() { PYTHONPATH=$PIPDIR python3 "$WORK/tus.py" "$@"; }

PY "http://127.0.0.1:$PPORT/up/" "$WORK/big.bin" "$KEY" "$AUTH" cut || fail "tuspy cut phase"
grep -q 'cuts=1' "$WORK/proxy.stats" || fail "the proxy did not cut: $(cat "$WORK/proxy.stats")"
# Wait until the server has recorded the cut PATCH.
for _ in $(seq 1 100); do
    [ "$(grep -c 'http: upload /up/big.bin' "$KEYFTPD_LOG")" -ge 4 ] && break
    sleep 0.1
done
KEPT=$(stat -c %s "$WORK/root/up/big.bin")
# tus checksums cover a whole PATCH: the cut one (unverifiable) was
# dropped, the three before it kept.
[ "$KEPT" = 3145728 ] || fail "kept $KEPT bytes after the cut"
cmp -n "$KEPT" "$WORK/big.bin" "$WORK/root/up/big.bin" || fail "the kept part differs"

# A new uploader with no local state: the key finds the partial.
before=$(grep -o 'bytes=[0-9]*' "$KEYFTPD_LOG" | awk -F= '{s+=$2} END {print s+0}')
PY "http://127.0.0.1:$PORT/up/" "$WORK/big.bin" "$KEY" "$AUTH" resume || fail "tuspy resume"
same "$WORK/big.bin" "$WORK/root/up/big.bin" "tus upload"
after=$(grep -o 'bytes=[0-9]*' "$KEYFTPD_LOG" | awk -F= '{s+=$2} END {print s+0}')
[ $((after - before)) = $((8388608 - KEPT)) ] || fail "re-sent $((after - before)), missing was $((8388608 - KEPT))"
st=$(curl -sS --fail -H "Authorization: $AUTH" "http://127.0.0.1:$PORT/up/big.bin?state")
[ "$st" = "{\"size\": 8388608, \"key\": \"$KEY\", \"complete\": true}" ] || fail "state: $st"

# curl: creation with a key that matches a partial answers its offset.
T=(curl -sS -H "Authorization: $AUTH" -H 'Tus-Resumable: 1.0.0')
head -c 100000 "$WORK/big.bin" >"$WORK/part.bin"
PKEY=$(python3 -c 'import sys, zlib; print("0x%08X" % zlib.crc32(open(sys.argv[1], "rb").read()[:300000]))' "$WORK/big.bin")
b64() { printf '%s' "$1" | base64 -w0; }
META="filename $(b64 p.bin),key $(b64 "$PKEY")"
code=$("${T[@]}" -o /dev/null -w '%{http_code}' -X POST -H 'Upload-Length: 300000' -H "Upload-Metadata: $META" "http://127.0.0.1:$PORT/up/")
[ "$code" = 201 ] || fail "creation gave $code"
code=$("${T[@]}" -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/offset+octet-stream' \
    -H 'Upload-Offset: 0' --data-binary "@$WORK/part.bin" "http://127.0.0.1:$PORT/up/p.bin")
[ "$code" = 204 ] || fail "PATCH gave $code"
"${T[@]}" -D "$WORK/h" -o /dev/null -X POST -H 'Upload-Length: 300000' -H "Upload-Metadata: $META" "http://127.0.0.1:$PORT/up/"
grep -qi '^upload-offset: 100000' "$WORK/h" || fail "re-creation did not find the partial: $(cat "$WORK/h")"
grep -qi '^location: /up/p.bin' "$WORK/h" || fail "location: $(cat "$WORK/h")"
"${T[@]}" -I "http://127.0.0.1:$PORT/up/p.bin" >"$WORK/h"
grep -qi '^upload-offset: 100000' "$WORK/h" || fail "HEAD: $(cat "$WORK/h")"
grep -qi '^upload-length: 300000' "$WORK/h" || fail "HEAD length: $(cat "$WORK/h")"

# A wrong checksum: 460 and nothing appended.
code=$("${T[@]}" -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/offset+octet-stream' \
    -H 'Upload-Offset: 100000' -H 'Upload-Checksum: crc32 AAAAAA==' --data-binary "@$WORK/part.bin" "http://127.0.0.1:$PORT/up/p.bin")
[ "$code" = 460 ] || fail "wrong checksum gave $code"
[ "$(stat -c %s "$WORK/root/up/p.bin")" = 100000 ] || fail "a failed checksum appended bytes"
# A wrong offset: 409.
code=$("${T[@]}" -o /dev/null -w '%{http_code}' -X PATCH -H 'Content-Type: application/offset+octet-stream' \
    -H 'Upload-Offset: 5' --data-binary "@$WORK/part.bin" "http://127.0.0.1:$PORT/up/p.bin")
[ "$code" = 409 ] || fail "wrong offset gave $code"

# A different key replaces the partial.
META2="filename $(b64 p.bin),key $(b64 0x0BADF00D)"
"${T[@]}" -D "$WORK/h" -o /dev/null -X POST -H 'Upload-Length: 300000' -H "Upload-Metadata: $META2" "http://127.0.0.1:$PORT/up/"
grep -qi '^upload-offset: 0' "$WORK/h" || fail "a different key did not replace: $(cat "$WORK/h")"
[ "$(stat -c %s "$WORK/root/up/p.bin")" = 0 ] || fail "the partial was not replaced"

# Termination.
code=$("${T[@]}" -o /dev/null -w '%{http_code}' -X DELETE "http://127.0.0.1:$PORT/up/p.bin")
[ "$code" = 204 ] || fail "termination gave $code"
[ ! -e "$WORK/root/up/p.bin" ] || fail "termination left the file"
code=$("${T[@]}" -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$PORT/up/p.bin")
[ "$code" = 404 ] || fail "HEAD after termination gave $code"

echo "keyftpd_http_tus: ok"
