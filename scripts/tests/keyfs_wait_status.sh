#!/usr/bin/env bash
# keyfs wait and keyfs status --json:
# - `status --json` during an upload parses and names each file with a
#   documented state and its size;
# - `keyfs wait MNT` after a cp returns 0, and the server holds the files
#   byte-identical at that moment (no polling after it);
# - `keyfs wait MNT PATH --timeout` exits 2 while PATH is still uploading;
# - with a server that refuses the upload (pure-ftpd, a directory its user
#   cannot write), `keyfs wait` exits 1, naming the file and the error.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup
keyfs=$KF_BIN/keyfs

kf_setup_keyftpd
mnt=$WORK/mnt
kf_mount "$URL" "$mnt" --spool "$WORK/spool" --bwlimit 1M
kf_mkfile "$WORK/a.bin" 3M
kf_mkfile "$WORK/b.bin" 100K
cp "$WORK/a.bin" "$mnt/a.bin"
cp "$WORK/b.bin" "$mnt/b.bin"

rc=0
"$keyfs" wait "$mnt" a.bin --timeout 0.3 2>"$WORK/wait.err" || rc=$?
[[ $rc == 2 ]] || kf_fail "wait --timeout while uploading: exit $rc, want 2"
grep -q "timed out" "$WORK/wait.err" || kf_fail "wait --timeout: $(cat "$WORK/wait.err")"

"$keyfs" status "$mnt" --json >"$WORK/st.json" || kf_fail "status --json"
python3 - "$WORK/st.json" "$mnt" <<'PY' || kf_fail "status --json is not the documented object"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["version"] == 1, r
assert r["mountpoint"] == sys.argv[2], r
assert r["daemon"]["pid"] > 0 and r["url"].startswith("ftp://"), r
states = {"writing", "queued", "uploading", "verifying", "retrying", "failed", "kept"}
files = {f["path"]: f for f in r["files"]}
assert "a.bin" in files, files
a = files["a.bin"]
assert a["state"] in states and a["bytes_total"] == 3 << 20, a
assert 0 <= a["bytes_sent"] <= a["bytes_total"] and a["tries"] >= 0, a
for k in ("rate", "eta_seconds", "last_error", "retry_in", "crc", "id"):
    assert k in a, k
PY

"$keyfs" wait "$mnt" --timeout 60 || kf_fail "keyfs wait exit $?"
for f in a.bin b.bin; do
    [[ $(kf_sha "$ROOT/$f") == $(kf_sha "$WORK/$f") ]] || kf_fail "$f not on the server when wait returned"
done
"$keyfs" status "$mnt" | grep -q "no pending uploads" || kf_fail "status after wait"
timeout 10 "$keyfs" status "$mnt" --watch >/dev/null || kf_fail "status --watch with nothing pending"
"$keyfs" umount "$mnt" || kf_fail "keyfs umount"

# A server that refuses: pure-ftpd runs as nobody; a root-owned directory.
kf_cleanup
kf_setup_server pureftpd
mnt=$WORK/mnt
mkdir -p "$ROOT/locked"
chown 0:0 "$ROOT/locked"
chmod 755 "$ROOT/locked"
kf_mount "$URL" "$mnt" --spool "$WORK/spool2"
printf 'no\n' >"$mnt/locked/x.txt" || kf_fail "write into the mount"
rc=0
"$keyfs" wait "$mnt" --timeout 60 2>"$WORK/wait.err" || rc=$?
[[ $rc == 1 ]] || kf_fail "wait on a refused upload: exit $rc, want 1 ($(cat "$WORK/wait.err"))"
grep -q "locked/x.txt" "$WORK/wait.err" || kf_fail "wait names no file: $(cat "$WORK/wait.err")"
kf_log "refused: $(cat "$WORK/wait.err")"
"$keyfs" status "$mnt" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
f = [f for f in r["files"] if f["path"] == "locked/x.txt"][0]
assert f["state"] == "failed" and f["last_error"], f
' || kf_fail "status --json does not show the failure"
kf_unmount "$mnt"
kf_log "ok"
