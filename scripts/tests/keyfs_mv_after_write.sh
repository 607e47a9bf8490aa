#!/usr/bin/env bash
# Files moved into a subdirectory right after they are written (while
# their upload starts, runs or has just finished) all end up on the server
# under the new name, with their content, and nothing under the old one.
# (Found by hand: a rename landing just as an upload finished lost the file.)
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_keyftpd
mnt=$WORK/mnt
kf_mount "$URL" "$mnt" --spool "$WORK/spool"
mkdir "$mnt/r"
n=60
for ((i = 1; i <= n; i++)); do
    printf 'file %d\n' "$i" >"$mnt/f$i.txt" || kf_fail "write f$i"
    sleep "0.0$((i % 10))"
    mv "$mnt/f$i.txt" "$mnt/r/g$i.txt" || kf_fail "mv f$i"
done
for ((t = 0; t < 300; t++)); do
    [[ $(find "$ROOT/r" -name 'g*.txt' | wc -l) == "$n" ]] && break
    sleep 0.1
done
sleep 1 # let any late, wrong upload or delete land before checking
for ((i = 1; i <= n; i++)); do
    [[ $(cat "$ROOT/r/g$i.txt" 2>/dev/null) == "file $i" ]] || kf_fail "r/g$i.txt on the server: '$(cat "$ROOT/r/g$i.txt" 2>&1)'"
    [[ ! -e $ROOT/f$i.txt ]] || kf_fail "f$i.txt left on the server"
done
[[ $(ls "$mnt/r" | wc -l) == "$n" ]] || kf_fail "the mount shows $(ls "$mnt/r" | wc -l) of $n"
kf_unmount "$mnt"
# Nothing is left to upload again at the next mount.
"$KF_BIN/keyfs" status --spool "$WORK/spool" | grep -q "no pending uploads" ||
    { "$KF_BIN/keyfs" status --spool "$WORK/spool" >&2; kf_fail "jobs left in the journal"; }
kf_log "ok: $n files moved right after writing, all on the server under the new name"
