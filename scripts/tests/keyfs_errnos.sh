#!/usr/bin/env bash
# The errno a program sees when the server cannot or will not do it:
# - a path too long for an FTP command line: ENAMETOOLONG at mkdir and at
#   create (before: ENOSYS from `500 Command line too long`, or a file
#   spooled whose upload then failed for good), and for a name > 255 bytes;
# - a server that refuses with a bare 550 (here: keyftpd on a read-only
#   directory, `550 MKD: Read-only file system`; vsftpd says `550 Create
#   directory operation failed.`): EACCES, not ENOENT.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_keyftpd
mkdir -p "$ROOT/ro/sub" "$ROOT/ro/full"
echo x >"$ROOT/ro/file"
echo y >"$ROOT/ro/full/f"
kf_tmpfs "$WORK/rotmp" 1M # a read-only tree for the server
cp -a "$ROOT/ro/." "$WORK/rotmp/"
mount -o remount,ro "$WORK/rotmp" || kf_fail "remount ro"
mount --bind "$WORK/rotmp" "$ROOT/ro" || kf_fail "bind mount"
kf_register tmpfs "$ROOT/ro"
mnt=$WORK/mnt
kf_mount "$URL" "$mnt" --spool "$WORK/spool"

# What a command failed with (its stderr, in the C locale).
why() { LC_ALL=C "$@" 2>&1 >/dev/null && echo "succeeded" || true; }
expect() { # WANT CMD...: CMD must fail with the message WANT
    local want=$1 got; shift
    got=$(why "$@")
    [[ $got == *"$want"* ]] || kf_fail "$*: want '$want', got '$got'"
    kf_log "$want: $*"
}

# 1. Long paths: nested 250-byte directories, entered one by one (the
# kernel's PATH_MAX bounds one path argument, not the depth).
seg=$(printf 'd%.0s' {1..250})
(
    cd "$mnt"
    for i in $(seq 1 16); do
        mkdir "$seg$i" || kf_fail "mkdir level $i"
        cd "$seg$i"
    done
    # About 4,030 bytes deep: 250 more do not fit in a command line.
    long=$(printf 'x%.0s' {1..250})
    expect "File name too long" mkdir "${long}a"
    expect "File name too long" mkdir "${long}b/"
    expect "File name too long" sh -c "echo x > ${long}c"
    expect "File name too long" mkdir "$(printf 'n%.0s' {1..256})"
    mkdir short || kf_fail "a short name at that depth"
)
expect "File name too long" touch "$mnt/$(printf 'n%.0s' {1..256})"

# 2. Refusals on a read-only directory.
expect "Permission denied" mkdir "$mnt/ro/new"
expect "Permission denied" rm "$mnt/ro/file"
expect "Permission denied" rmdir "$mnt/ro/sub"
expect "Directory not empty" rmdir "$mnt/ro/full"
expect "Permission denied" mv "$mnt/ro/file" "$mnt/ro/file2"
expect "No such file or directory" rm "$mnt/ro/none"
[[ $(cat "$mnt/ro/file") == x ]] || kf_fail "ro/file changed"
kf_unmount "$mnt"
kf_log "ok"
