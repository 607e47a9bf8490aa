#!/usr/bin/env bash
# A second mount on a mountpoint keyfs already serves, and a second daemon
# on a spool another daemon holds, are refused with one line and a
# non-zero exit; `keyfs status | head -1` is not an error.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_keyftpd
mnt=$WORK/mnt
kf_mount "$URL" "$mnt" --spool "$WORK/spool"

mkdir -p "$WORK/mnt2"
refused() { # EXPECTED-TEXT ARGS...: keyfs mount must fail with that text
    local want=$1 rc=0; shift
    timeout 60 "$KF_BIN/keyfs" mount "$@" </dev/null >"$WORK/out" 2>"$WORK/err" || rc=$?
    kf_is_mounted "$WORK/mnt2" && { kf_register mounts "$WORK/mnt2"; kf_fail "mounted: $*"; }
    ((rc != 0)) || kf_fail "exit 0 for: $*"
    [[ $(wc -l <"$WORK/err") == 1 ]] || { cat "$WORK/err" >&2; kf_fail "not one line: $*"; }
    grep -q "$want" "$WORK/err" || { cat "$WORK/err" >&2; kf_fail "no '$want' for: $*"; }
    kf_log "refused: $(cat "$WORK/err")"
}
refused "already mounted" "$URL" "$mnt" --spool "$WORK/spool2"
refused "in use by another keyfs" "$URL" "$WORK/mnt2" --spool "$WORK/spool"

# The first mount still works.
printf 'still here\n' >"$WORK/a.txt"
cp "$WORK/a.txt" "$mnt/a.txt" || kf_fail "cp after refused mounts"
kf_wait_uploaded "$ROOT/a.txt" "$WORK/a.txt" 60 || kf_fail "a.txt not uploaded"

# A reader that closes the pipe early does not make status fail.
"$KF_BIN/keyfs" status --spool "$WORK/spool" 2>"$WORK/status.err" | head -1 >/dev/null
[[ ! -s $WORK/status.err ]] || { cat "$WORK/status.err" >&2; kf_fail "status wrote to stderr"; }
kf_unmount "$mnt"
kf_log "ok"
