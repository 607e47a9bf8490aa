#!/usr/bin/env bash
# Inode numbers are stable: a file keeps its number across a rename, and a
# path keeps its number after the kernel forgot it (dropped caches), so
# programs that compare st_ino (tar, rsync -H, find -samefile) see one file.
# Before, every forget gave the path a new number (61600 -> 61605 -> 61608).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_keyftpd
mnt=$WORK/mnt
kf_mount "$URL" "$mnt" --spool "$WORK/spool"

# Forgets every unused dentry and inode of every filesystem (root only).
forget_all() {
    sync
    if [[ -w /proc/sys/vm/drop_caches ]]; then
        echo 2 >/proc/sys/vm/drop_caches
    else
        sleep 1.5 # at least let the entries expire
    fi
}

mkdir -p "$mnt/A" "$mnt/B"
echo d >"$mnt/A/n2"
mkfifo "$mnt/B/n3" 2>/dev/null || true # FTP stores no fifos: ENOSYS
before=$(stat -c %i "$mnt/A/n2")
dir=$(stat -c %i "$mnt/B")
mv "$mnt/A/n2" "$mnt/B/n3" || kf_fail "mv"
i1=$(stat -c %i "$mnt/B/n3")
forget_all
i2=$(stat -c %i "$mnt/B/n3")
echo d >"$WORK/d.txt"
kf_wait_uploaded "$ROOT/B/n3" "$WORK/d.txt" 30 || kf_fail "B/n3 on the server"
forget_all
i3=$(stat -c %i "$mnt/B/n3")
kf_log "A/n2 $before; B/n3 after mv: $i1, after a forget: $i2, after upload + forget: $i3"
[[ $i1 == "$before" && $i2 == "$before" && $i3 == "$before" ]] ||
    kf_fail "the inode number changed: $before -> $i1 -> $i2 -> $i3"
[[ $(stat -c %i "$mnt/B") == "$dir" ]] || kf_fail "the directory's number changed"

# A file written and never renamed keeps its number after forgets too, and
# the listing shows the same number as stat.
for i in 1 2 3; do echo "$i" >"$mnt/B/f$i"; done
declare -A first
for i in 1 2 3; do first[$i]=$(stat -c %i "$mnt/B/f$i"); done
forget_all
for i in 1 2 3; do
    [[ $(stat -c %i "$mnt/B/f$i") == "${first[$i]}" ]] || kf_fail "B/f$i changed its number"
    [[ $(ls -i "$mnt/B" | awk -v n="f$i" '$2 == n {print $1}') == "${first[$i]}" ]] ||
        kf_fail "ls -i and stat disagree for B/f$i"
done
kf_unmount "$mnt"
kf_log "ok"
