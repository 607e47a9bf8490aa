#!/usr/bin/env bash
# keyftpd's WebDAV against rclone's webdav backend (an on-the-fly remote,
# no config file): copy a tree up, ls and check it, copy it back down,
# move a file (its key goes with it), delete and purge. Every file is
# checked by sha256. Builds nothing: the binary comes from $KEYFTPD
# (default target/debug/keyftpd). Exits non-zero on failure.
set -euo pipefail

KEYFTPD=${KEYFTPD:-target/debug/keyftpd}
[ -x "$KEYFTPD" ] || { echo "keyftpd binary not found: $KEYFTPD" >&2; exit 2; }
for tool in rclone curl sha256sum python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 2; }
done

WORK=$(mktemp -d)
SRV_PID=""
cleanup() {
    if [ -n "$SRV_PID" ]; then kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/root" "$WORK/up/sub/deeper" "$WORK/down"
export KEYFTPD_PASSWORD=rclone-pw
"$KEYFTPD" --root "$WORK/root" --http 127.0.0.1:0 --user tester \
    >"$WORK/stdout" 2>"$WORK/server.log" &
SRV_PID=$!
PORT=""
for _ in $(seq 1 100); do
    PORT=$(sed -n 's/^http listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/stdout" 2>/dev/null || true)
    [ -n "$PORT" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; echo "keyftpd exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$PORT" ] || { echo "keyftpd did not report its HTTP port" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"

fail() { echo "FAIL: $*" >&2; echo "--- server log" >&2; tail -n 30 "$WORK/server.log" >&2; exit 1; }
same() { [ "$(sha256sum <"$1" | cut -d' ' -f1)" = "$(sha256sum <"$2" | cut -d' ' -f1)" ] || fail "$3: $1 != $2"; }
crc() { python3 -c 'import sys, zlib; print("0x%08X" % zlib.crc32(open(sys.argv[1], "rb").read()))' "$1"; }
R=":webdav,url='$URL/',user=tester,pass=$(rclone obscure "$KEYFTPD_PASSWORD"):"
rc() { rclone --config /dev/null --low-level-retries 1 --retries 1 "$@"; }
C=(curl -sS --fail --max-time 60 -u "tester:$KEYFTPD_PASSWORD")

head -c 3000000 /dev/urandom >"$WORK/up/big.bin"
head -c 70000 /dev/urandom >"$WORK/up/sub/mid.bin"
echo "a name with spaces & ü" >"$WORK/up/sub/deeper/name with spaces & ü.txt"
: >"$WORK/up/sub/empty"

rc copy "$WORK/up" "${R}tree" || fail "rclone copy up"
for f in big.bin sub/mid.bin "sub/deeper/name with spaces & ü.txt" sub/empty; do
    same "$WORK/up/$f" "$WORK/root/tree/$f" "copy up $f"
done
rc ls "${R}tree" >"$WORK/ls.txt" || fail "rclone ls"
[ "$(wc -l <"$WORK/ls.txt")" = 4 ] || fail "rclone ls: $(cat "$WORK/ls.txt")"
grep -q ' 3000000 big.bin$' "$WORK/ls.txt" || fail "ls size: $(cat "$WORK/ls.txt")"
grep -q 'sub/deeper/name with spaces & ü.txt$' "$WORK/ls.txt" || fail "ls names: $(cat "$WORK/ls.txt")"
rc check "$WORK/up" "${R}tree" || fail "rclone check"
rc copy "${R}tree" "$WORK/down" || fail "rclone copy down"
for f in big.bin sub/mid.bin "sub/deeper/name with spaces & ü.txt" sub/empty; do
    same "$WORK/up/$f" "$WORK/down/$f" "copy down $f"
done

# A file uploaded by the seed's flow keeps its key when rclone moves it.
KEY=$(crc "$WORK/up/big.bin")
"${C[@]}" -F offset=0 -F "key=$KEY" -F "file=@$WORK/up/big.bin" "$URL/keyed.bin" >/dev/null || fail "seed upload"
rc moveto "${R}keyed.bin" "${R}tree/sub/keyed-moved.bin" || fail "rclone moveto"
[ ! -e "$WORK/root/keyed.bin" ] || fail "moveto left the source"
st=$("${C[@]}" "$URL/tree/sub/keyed-moved.bin?state") || fail "state after move"
[ "$st" = "{\"size\": 3000000, \"key\": \"$KEY\", \"complete\": true}" ] || fail "key after move: $st"
# rclone's PUT carries no key: it clears it, as a plain STOR does.
rc copyto "$WORK/up/sub/mid.bin" "${R}tree/sub/keyed-moved.bin" || fail "rclone overwrite"
st=$("${C[@]}" "$URL/tree/sub/keyed-moved.bin?state") || fail "state after overwrite"
[ "$st" = '{"size": 70000, "key": null, "complete": true}' ] || fail "key after PUT: $st"

rc delete "${R}tree/sub/deeper" || fail "rclone delete"
[ -z "$(ls -A "$WORK/root/tree/sub/deeper")" ] || fail "delete left files"
rc purge "${R}tree" || fail "rclone purge"
[ ! -e "$WORK/root/tree" ] || fail "purge left the tree"
[ -z "$(rc lsf "${R}")" ] || fail "root not empty: $(rc lsf "${R}")"

echo "keyftpd_http_rclone: ok"
