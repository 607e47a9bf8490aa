#!/usr/bin/env bash
# keyfs mounted by a user who is not root, the way a set-top box's service
# account or a desktop user runs it: mount(2) is refused, so keyfs goes
# through the setuid fusermount3. Checks that:
# - the mount shows `fuse.keyfs` with the user's uid and the URL (no password);
# - a cp by that user uploads byte-identical, and `keyfs wait` as the user sees it;
# - `keyfs umount` as the user unmounts and the daemon exits within 2 s;
# - after a kill -9 of the daemon mid-upload, a `keyfs mount` over the dead
#   mount says what to do, the user's `keyfs umount` clears it, and a
#   remount uploads what was still spooled.
# (`-o auto_unmount` is not used: fusermount3 can only look into a user's
# mount to unmount it when allow_other is on, which needs user_allow_other
# in /etc/fuse.conf.)
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup
keyfs=$KF_BIN/keyfs

((EUID == 0)) || { kf_log "skipped: needs root to create the test user"; exit 0; }
command -v setpriv >/dev/null || kf_fail "setpriv (util-linux) is missing"
[[ -u $(command -v fusermount3) ]] || kf_fail "fusermount3 is not setuid"

user=keyfs-test
if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$user" ||
        kf_fail "cannot create user $user"
fi
uid=$(id -u "$user")
# Distributions let every user open /dev/fuse (udev's rule gives it 0666);
# a container may leave it 0600, where no user could mount any FUSE
# filesystem. Give it the usual mode for the test, and put it back.
fuse_mode=$(stat -c %a /dev/fuse)
if [[ $fuse_mode != 666 ]]; then
    trap 'chmod "$fuse_mode" /dev/fuse; kf_cleanup; [[ ${KF_STATE_OWNED:-0} == 1 ]] && rm -rf "$KF_STATE"' EXIT
    chmod 666 /dev/fuse
fi
as_user() { setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"; }

kf_setup_keyftpd
home=$(kf_tmpdir)
chown "$user:" "$home"
mnt=$home/mnt spool=$home/spool
as_user mkdir "$mnt"
kf_register mounts "$mnt"
kf_mkfile "$home/a.bin" 2M
kf_mkfile "$home/b.bin" 3M
chmod 644 "$home"/*.bin

user_mount() {
    as_user env RUST_LOG=info timeout 60 "$keyfs" mount "$URL" "$mnt" --spool "$spool" "$@" \
        2>"$home/mount.err" || { cat "$home/mount.err" >&2; kf_fail "mount as $user failed"; }
    kf_is_mounted "$mnt" || kf_fail "not mounted after keyfs mount as $user"
    KEYFS_PID=$(kf_pid_of_mount "$mnt")
    [[ -n $KEYFS_PID ]] || kf_fail "no daemon for $mnt"
    kf_register pids "$KEYFS_PID"
    [[ $(stat -c %u "/proc/$KEYFS_PID") == "$uid" ]] || kf_fail "daemon does not run as $user"
}

user_mount
line=$(grep " $mnt " /proc/self/mounts) || kf_fail "no /proc/mounts line"
kf_log "mount: $line"
[[ $(awk '{print $3}' <<<"$line") == fuse.keyfs ]] || kf_fail "type is not fuse.keyfs: $line"
[[ $line == *"user_id=$uid"* ]] || kf_fail "mount is not owned by uid $uid: $line"
[[ $line == *"$KEYFS_PASSWORD"* ]] && kf_fail "the password shows in /proc/mounts"

as_user cp "$home/a.bin" "$mnt/a.bin" || kf_fail "cp as $user"
as_user timeout 60 "$keyfs" wait "$mnt" a.bin --timeout 50 || kf_fail "keyfs wait as $user"
[[ $(kf_sha "$ROOT/a.bin") == $(kf_sha "$home/a.bin") ]] || kf_fail "server copy of a.bin differs"

pid=$KEYFS_PID
t0=$(date +%s%3N)
as_user "$keyfs" umount "$mnt" || kf_fail "keyfs umount as $user"
while ! kf_exited "$pid"; do
    (($(date +%s%3N) - t0 < 5000)) || kf_fail "daemon $pid still running 5 s after keyfs umount"
    sleep 0.01
done
ms=$(($(date +%s%3N) - t0))
kf_log "daemon gone $ms ms after keyfs umount"
kf_assert_le "$ms" 2000 "daemon exit after a user's keyfs umount"
! kf_is_mounted "$mnt" || kf_fail "still mounted after keyfs umount"

# kill -9 mid-upload on a slow link: fusermount3 (auto_unmount) cleans up.
user_mount --bwlimit 200K
as_user cp "$home/b.bin" "$mnt/b.bin" || kf_fail "cp b.bin as $user"
kill -9 "$KEYFS_PID"
kf_wait_gone "$KEYFS_PID" 5 || kf_fail "daemon survived kill -9"
kf_is_mounted "$mnt" || kf_fail "the dead mount went away by itself"
rc=0
as_user "$keyfs" mount "$URL" "$mnt" --spool "$spool" 2>"$home/stale.err" || rc=$?
kf_log "mount over the dead mount: exit $rc: $(cat "$home/stale.err")"
((rc != 0)) || kf_fail "keyfs mount over a dead mount succeeded"
grep -q "umount\|fusermount3 -u" "$home/stale.err" || kf_fail "the error does not say to unmount first"
as_user "$keyfs" umount "$mnt" || kf_fail "keyfs umount of a dead mount as $user"
! kf_is_mounted "$mnt" || kf_fail "the dead mount is still there after keyfs umount"
[[ $(kf_size "$ROOT/b.bin") == $(kf_size "$home/b.bin") ]] &&
    kf_log "note: b.bin was already uploaded before the kill"
user_mount
as_user timeout 60 "$keyfs" wait "$mnt" --timeout 50 || kf_fail "keyfs wait after the remount"
[[ $(kf_sha "$ROOT/b.bin") == $(kf_sha "$home/b.bin") ]] || kf_fail "server copy of b.bin differs"
as_user "$keyfs" umount "$mnt" || kf_fail "last keyfs umount as $user"
kf_log "ok: a user's mount through fusermount3: upload, wait, umount, kill -9 and remount"
