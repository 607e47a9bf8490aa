#!/usr/bin/env bash
# keyfs retry: a permanently failed upload (pure-ftpd runs as nobody; a
# root-owned directory refuses the STOR) is kept in the spool; once the
# directory is writable, `keyfs retry` queues it again:
# - with the daemon running: only the named PATH, then every failed file;
#   `keyfs wait` then returns 0 and the server copies are byte-identical;
# - without a daemon (--spool): the journal is changed, and the next mount
#   uploads the file; a failed file whose spooled data is gone is named
#   (exit 1), not queued.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup
keyfs=$KF_BIN/keyfs

kf_setup_server pureftpd
mnt=$WORK/mnt
spool=$WORK/spool
for d in l1 l2 l3; do
    mkdir -p "$ROOT/$d"
    chown 0:0 "$ROOT/$d"
    chmod 755 "$ROOT/$d"
done
kf_mount "$URL" "$mnt" --spool "$spool"
"$keyfs" retry "$mnt" >"$WORK/r0.out" || kf_fail "retry with nothing failed: exit $?"
grep -q "no failed upload" "$WORK/r0.out" || kf_fail "retry with nothing failed said: $(cat "$WORK/r0.out")"

kf_mkfile "$WORK/a.bin" 300K
kf_mkfile "$WORK/b.bin" 200K
cp "$WORK/a.bin" "$mnt/l1/a.bin"
cp "$WORK/b.bin" "$mnt/l2/b.bin"
rc=0
"$keyfs" wait "$mnt" l1/a.bin l2/b.bin --timeout 60 2>"$WORK/wait.err" || rc=$?
[[ $rc == 1 ]] || kf_fail "wait on refused uploads: exit $rc, want 1"
# Both must be failed (wait returns at the first).
"$keyfs" wait "$mnt" l2/b.bin --timeout 60 2>/dev/null && kf_fail "l2/b.bin was uploaded into a locked directory"

# The named file only.
chmod 777 "$ROOT/l1" "$ROOT/l2"
"$keyfs" retry "$mnt" l1/a.bin >"$WORK/r1.out" || kf_fail "retry l1/a.bin: exit $?"
grep -qx "queued again: l1/a.bin" "$WORK/r1.out" || kf_fail "retry l1/a.bin said: $(cat "$WORK/r1.out")"
grep -q "l2/b.bin" "$WORK/r1.out" && kf_fail "retry l1/a.bin also queued l2/b.bin"
"$keyfs" wait "$mnt" l1/a.bin --timeout 60 || kf_fail "wait after retry: exit $?"
[[ $(kf_sha "$ROOT/l1/a.bin") == $(kf_sha "$WORK/a.bin") ]] || kf_fail "l1/a.bin differs on the server"
"$keyfs" status "$mnt" --json | python3 -c '
import json, sys
f = {f["path"]: f for f in json.load(sys.stdin)["files"]}
assert f["l2/b.bin"]["state"] == "failed", f
' || kf_fail "l2/b.bin is not still failed"

# Every failed file.
"$keyfs" retry "$mnt" >"$WORK/r2.out" || kf_fail "retry: exit $?"
grep -qx "queued again: l2/b.bin" "$WORK/r2.out" || kf_fail "retry said: $(cat "$WORK/r2.out")"
"$keyfs" wait "$mnt" --timeout 60 || kf_fail "wait after retry of all: exit $?"
[[ $(kf_sha "$ROOT/l2/b.bin") == $(kf_sha "$WORK/b.bin") ]] || kf_fail "l2/b.bin differs on the server"

# Without a daemon: the next mount uploads it.
printf 'late\n' >"$mnt/l3/c.txt"
rc=0
"$keyfs" wait "$mnt" --timeout 60 2>/dev/null || rc=$?
[[ $rc == 1 ]] || kf_fail "wait on the refused l3/c.txt: exit $rc, want 1"
"$keyfs" umount "$mnt" || kf_fail "keyfs umount"
chmod 777 "$ROOT/l3"
"$keyfs" retry --spool "$spool" >"$WORK/r3.out" || kf_fail "retry --spool: exit $?"
grep -qx "queued again: l3/c.txt" "$WORK/r3.out" || kf_fail "retry --spool said: $(cat "$WORK/r3.out")"
kf_mount "$URL" "$mnt" --spool "$spool"
"$keyfs" wait "$mnt" --timeout 60 || kf_fail "wait after the remount: exit $?"
[[ $(cat "$ROOT/l3/c.txt") == late ]] || kf_fail "l3/c.txt not uploaded after the remount"

# A failed file whose spooled data is gone is named, not queued (queued,
# the next mount would take it for uploaded).
mkdir -p "$ROOT/l4" && chown 0:0 "$ROOT/l4" && chmod 755 "$ROOT/l4"
printf 'lost\n' >"$mnt/l4/d.txt"
rc=0
"$keyfs" wait "$mnt" --timeout 60 2>/dev/null || rc=$?
[[ $rc == 1 ]] || kf_fail "wait on the refused l4/d.txt: exit $rc, want 1"
"$keyfs" umount "$mnt" || kf_fail "keyfs umount"
rm -f "$spool"/data/*
rc=0
"$keyfs" retry --spool "$spool" >"$WORK/r4.out" 2>"$WORK/r4.err" || rc=$?
[[ $rc == 1 ]] || kf_fail "retry of a file without data: exit $rc, want 1"
grep -q "l4/d.txt" "$WORK/r4.err" || kf_fail "retry did not name l4/d.txt: $(cat "$WORK/r4.err")"
grep -q "queued again" "$WORK/r4.out" && kf_fail "retry queued a file without data"
kf_log "ok"
