#!/usr/bin/env bash
# keyftpd's WebDAV against rclone's webdav backend (an on-the-fly remote,
# no config file): copy a tree up, ls and check it, copy it back down,
# move a file (its key goes with it), delete and purge. Every file is
# checked by sha256. Builds nothing: the binary comes from $KF_BIN
# (default target/debug). Exits non-zero on failure.
set -euo pipefail

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/clients.sh"
kf_trap_cleanup
kc_need rclone curl sha256sum python3
kc_keyftpd --http 127.0.0.1:0
mkdir -p "$WORK/up/sub/deeper" "$WORK/down"
PORT=$HPORT
URL="http://127.0.0.1:$PORT"

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
