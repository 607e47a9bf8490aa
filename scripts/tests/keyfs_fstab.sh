#!/usr/bin/env bash
# fstab: `mount -t fuse.keyfs URL MNT -o ...`, `mount MNT` and `mount -a`
# with an fstab line go through mount.fuse3, which runs `keyfs URL MNT -o
# OPTS`; /proc/mounts shows the type fuse.keyfs and the URL (no password);
# the -o forms of the flags (spool=, bwlimit=, password_file=, workers=)
# apply; an unknown option is refused by name. mount(8) runs helpers with
# a fixed PATH, so the test runs in a private mount namespace where a
# bind mount puts keyfs in /usr/local/sbin.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup
command -v unshare >/dev/null || kf_fail "unshare (util-linux) is missing"
[[ -x /sbin/mount.fuse3 || -x /usr/sbin/mount.fuse3 ]] || kf_fail "mount.fuse3 (fuse3) is missing"

kf_setup_keyftpd
mnt=$WORK/mnt
mkdir -p "$mnt" "$WORK/bin"
ln -s "$(realpath "$KF_BIN/keyfs")" "$WORK/bin/keyfs"
printf '%s\n' "$KEYFS_PASSWORD" >"$WORK/pass"
chmod 600 "$WORK/pass"
printf '%s %s fuse.keyfs _netdev,spool=%s,bwlimit=8M,workers=2,password_file=%s 0 0\n' \
    "$URL" "$mnt" "$WORK/spool" "$WORK/pass" >"$WORK/fstab"
kf_mkfile "$WORK/a.bin" 300K
PW_CHECK=$KEYFS_PASSWORD
export WORK URL mnt KF_BIN PW_CHECK
kf_register mounts "$mnt"

# Everything that mounts runs inside the namespace; each step prints
# `ok STEP` and the checks below read them.
env -u KEYFS_PASSWORD timeout 120 unshare --mount --propagation private bash -c '
set -u
mount --bind "$WORK/bin" /usr/local/sbin || exit 1
line() { grep " $mnt " /proc/mounts; }
gone() { for i in $(seq 50); do line >/dev/null || return 0; sleep 0.1; done; return 1; }
check_line() {
    local l; l=$(line) || return 1
    [[ $(cut -d" " -f1-3 <<<"$l") == "$URL $mnt fuse.keyfs" ]] || { echo "line: $l"; return 1; }
    ! grep -qF "$PW_CHECK" /proc/mounts
}
o="_netdev,spool=$WORK/spool,bwlimit=8M,password_file=$WORK/pass"
mount -t fuse.keyfs "$URL" "$mnt" -o "$o" && check_line && echo "ok mount-t"
cp "$WORK/a.bin" "$mnt/a.bin" && "$KF_BIN/keyfs" wait "$mnt" --timeout 60 && echo "ok wait"
"$KF_BIN/keyfs" status "$mnt" | grep -q "mount: $URL on $mnt" && echo "ok status"
umount "$mnt" && gone && echo "ok umount"
mount -T "$WORK/fstab" "$mnt" && check_line && echo "ok mount-mnt"
umount "$mnt" && gone && echo "ok umount2"
mount -a -T "$WORK/fstab" && check_line && echo "ok mount-a"
umount "$mnt" && gone && echo "ok umount3"
mount -t fuse.keyfs "$URL" "$mnt" -o "bwlimt=8M,password_file=$WORK/pass" 2>"$WORK/bad.err"
[[ $? != 0 ]] && grep -q "unknown mount option: bwlimt" "$WORK/bad.err" && ! line >/dev/null && echo "ok refused"
' >"$WORK/ns.out" 2>"$WORK/ns.err" || true
cat "$WORK/ns.out" >&2
for step in mount-t wait status umount mount-mnt umount2 mount-a umount3 refused; do
    grep -qx "ok $step" "$WORK/ns.out" || { cat "$WORK/ns.err" >&2; kf_fail "step $step"; }
done
[[ $(kf_sha "$ROOT/a.bin") == $(kf_sha "$WORK/a.bin") ]] || kf_fail "a.bin differs on the server"
kf_log "ok"
