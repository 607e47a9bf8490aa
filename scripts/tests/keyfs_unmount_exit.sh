#!/usr/bin/env bash
# The daemon exits within 2 s of an unmount, every time (a bound issue 13
# asks for): 24 mount/write/unmount cycles by `fusermount3 -u`, by
# `keyfs umount` and by SIGTERM, every third one with an upload in flight
# on a slow link (ftpfault --throttle). No unmount logs fuser's
# "Failed to umount". The uploads cut short stay in the spool: `keyfs
# status --json` lists them with no daemon, and a last mount uploads them
# (`keyfs wait`), byte-identical.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_keyftpd
kf_start_ftpfault "$KEYFTPD_PORT" --throttle 200000
slow_url=$(kf_proxy_url "$FTPFAULT_PORT")
mnt=$WORK/mnt
kf_mkfile "$WORK/big.bin" 3M

now_ms() { date +%s%3N; }

methods=(fusermount3 keyfs-umount sigterm)
for ((i = 0; i < 24; i++)); do
    method=${methods[(i + i / 3) % 3]}
    if ((i % 3 == 2)); then
        # The slow link: a 3 MiB upload takes ~15 s, unmounted mid-way.
        kf_mount "$slow_url" "$mnt" --spool "$WORK/spool-slow"
        cp "$WORK/big.bin" "$mnt/slow$i.bin"
        sleep 0.5
        kind=slow
    else
        kf_mount "$URL" "$mnt" --spool "$WORK/spool"
        printf 'cycle %d\n' "$i" >"$mnt/f$i.txt"
        kind=fast
    fi
    pid=$KEYFS_PID
    [[ -n $pid ]] || kf_fail "no daemon pid for cycle $i"
    t0=$(now_ms)
    case $method in
    fusermount3) fusermount3 -u "$mnt" || kf_fail "fusermount3 -u failed (cycle $i)" ;;
    keyfs-umount) "$KF_BIN/keyfs" umount "$mnt" || kf_fail "keyfs umount failed (cycle $i)" ;;
    sigterm) kill -TERM "$pid" ;;
    esac
    while ! kf_exited "$pid"; do
        (($(now_ms) - t0 < 10000)) || kf_fail "daemon $pid still running 10 s after $method (cycle $i)"
        sleep 0.01
    done
    ms=$(($(now_ms) - t0))
    kf_log "cycle $i: $method, $kind upload: daemon gone after $ms ms"
    kf_assert_le "$ms" 2000 "cycle $i: daemon exit after $method took too long"
    for s in 1 2 3 4 5 6 7 8 9 10; do kf_is_mounted "$mnt" || break; sleep 0.1; done
    ! kf_is_mounted "$mnt" || kf_fail "still mounted after $method (cycle $i)"
done

for log in "$WORK/spool/keyfs.log" "$WORK/spool-slow/keyfs.log"; do
    ! grep -q "Failed to umount" "$log" || kf_fail "fuser's failed umount in $log"
done
for ((i = 0; i < 24; i += 3)); do
    [[ $(cat "$ROOT/f$i.txt") == "cycle $i" ]] || kf_fail "f$i.txt not on the server"
done

# The slow uploads were cut short; the spool kept them.
"$KF_BIN/keyfs" status --spool "$WORK/spool-slow" --json >"$WORK/st.json"
pending=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["daemon"] is None; print(sum(f["state"]=="queued" for f in r["files"]))' "$WORK/st.json") ||
    kf_fail "status --json did not parse"
kf_log "$pending slow uploads pending in the spool"
((pending >= 1)) || kf_fail "no pending upload kept in the spool"
kf_mount "$URL" "$mnt" --spool "$WORK/spool-slow"
"$KF_BIN/keyfs" wait "$mnt" --timeout 120 || kf_fail "keyfs wait after the remount"
for ((i = 2; i < 24; i += 3)); do
    [[ $(kf_sha "$ROOT/slow$i.bin") == $(kf_sha "$WORK/big.bin") ]] || kf_fail "slow$i.bin differs on the server"
done
"$KF_BIN/keyfs" umount "$mnt" || kf_fail "last keyfs umount"
kf_log "ok"
