#!/usr/bin/env bash
# fsx (xfstests' random read/write/truncate/mmap checker) on a keyfs mount
# on keyftpd: mapped reads and writes on and off (-R -W), on a default mount
# and on `-o writeback`. Four runs of KF_FSX_OPS operations (default 100000)
# with fixed, logged seeds; any mismatch or failed call fails the test, and
# the file fsx leaves (checked by fsx as it went) must reach the server
# byte-identical.
# time limit: 900s
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$KF_ROOT/scripts/lib/ext.sh"
kf_trap_cleanup

ops=${KF_FSX_OPS:-100000}
fsx=$(kf_ext_build fsx)/fsx

kf_setup_keyftpd
logs=$WORK/logs
mkdir -p "$logs"

# run NAME SEED MOUNT-OPTIONS FSX-OPTIONS: one fsx run on a fresh mount.
failed=()
run() {
    local name=$1 seed=$2 mopts=$3 fopts=$4 mnt=$WORK/mnt-$1 start rc
    # shellcheck disable=SC2086 # the option strings are word lists
    kf_mount "$URL" "$mnt" --spool "$WORK/spool-$name" $mopts
    mkdir -p "$mnt/$name"
    kf_log "$name: fsx -N $ops -S $seed $fopts (mount: ${mopts:-default})"
    start=$SECONDS
    # -q: no line per operation; -P: its logs and model stay off the mount.
    # shellcheck disable=SC2086
    timeout -k 10 300 "$fsx" -q -N "$ops" -S "$seed" $fopts -P "$logs" "$mnt/$name/$name" \
        >"$logs/$name.out" 2>&1 && rc=0 || rc=$?
    if ((rc == 0)); then
        kf_log "$name: ok, $ops operations ($((SECONDS - start))s)"
        cp "$mnt/$name/$name" "$logs/$name.final" || rc=1
        kf_wait_uploaded "$ROOT/$name/$name" "$logs/$name.final" 120 ||
            { rc=1; kf_log "$name: the server's copy differs from the mount's"; }
    else
        kf_log "$name: FAILED (exit $rc, $((SECONDS - start))s, seed $seed); fsx said:"
        grep -v '^\s*$' "$logs/$name.out" | tail -15 >&2
    fi
    kf_unmount "$mnt"
    ((rc == 0)) || failed+=("$name")
}

run mmap 1001 "" ""
run nommap 1002 "" "-R -W"
run wb-mmap 1003 "-o writeback" ""
run wb-nommap 1004 "-o writeback" "-R -W"

((${#failed[@]} == 0)) || kf_fail "fsx failed: ${failed[*]}"
kf_log "ok: 4 runs of $ops operations"
