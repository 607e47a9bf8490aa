#!/usr/bin/env bash
# keyfs over http:// against a stock WebDAV server (rclone serve webdav):
# cp, then the server's copy is byte-identical; mkdir, mv, rm, rmdir of a
# non-empty directory refused; reading back after the upload (GET Range).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

WORK=$(kf_tmpdir)
ROOT=$WORK/root
mkdir -p "$ROOT"
KEYFS_PASSWORD=$(kf_password)
export KEYFS_PASSWORD
kf_start_rclone_webdav "$ROOT" tester "$KEYFS_PASSWORD"
port=$RCLONE_PORT

mnt=$WORK/mnt
kf_mount "http://tester@127.0.0.1:$port/" "$mnt" --spool "$WORK/spool"

kf_mkfile "$WORK/big.bin" 5M
printf 'hello keyfs over http\n' >"$WORK/small.txt"
: >"$WORK/empty"
mkdir "$mnt/d" || kf_fail "mkdir d"
[[ -d $ROOT/d ]] || kf_fail "mkdir did not reach the server"
cp "$WORK/big.bin" "$mnt/d/big.bin" || kf_fail "cp big.bin"
cp "$WORK/small.txt" "$mnt/small.txt" || kf_fail "cp small.txt"
cp "$WORK/empty" "$mnt/empty" || kf_fail "cp empty"
for f in d/big.bin small.txt empty; do
    kf_wait_uploaded "$ROOT/$f" "$WORK/${f#d/}" 60 || kf_fail "$f not uploaded byte-identical"
done
kf_log "all files on the server, sha256 identical"

# Read back once the spooled copies are gone: GET with Range.
"$KF_BIN/keyfs" wait "$mnt" >/dev/null 2>&1 || true
[[ $(kf_sha "$mnt/d/big.bin") == $(kf_sha "$WORK/big.bin") ]] || kf_fail "read after upload differs"
tail -c 1000 "$mnt/d/big.bin" | cmp - <(tail -c 1000 "$WORK/big.bin") || kf_fail "ranged read differs"
ls "$mnt/d" | grep -qx big.bin || kf_fail "ls d does not show big.bin"

rmdir "$mnt/d" 2>/dev/null && kf_fail "rmdir of a non-empty directory succeeded"
[[ -f $ROOT/d/big.bin ]] || kf_fail "rmdir removed the server's files"
mv "$mnt/small.txt" "$mnt/d/moved.txt" || kf_fail "mv"
[[ -f $ROOT/d/moved.txt && ! -e $ROOT/small.txt ]] || kf_fail "mv did not reach the server"
rm "$mnt/d/moved.txt" "$mnt/d/big.bin" || kf_fail "rm"
rmdir "$mnt/d" || kf_fail "rmdir of the emptied directory"
[[ ! -e $ROOT/d ]] || kf_fail "rmdir did not reach the server"
kf_unmount "$mnt"
kf_log "ok"
