#!/usr/bin/env bash
# A server that lists XCRC in FEAT but refuses it (as ProFTPD with
# `<Limit XCRC> DenyAll`: 550), played by keyftpd behind ftpfault with KEY
# hidden from FEAT and XCRC refused: keyfs falls back to HASH, sends the
# file once, and `keyfs status` and the log say so. With HASH refused too,
# it verifies by size alone, still sending the file once.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_keyftpd
size=$((2 << 20))
kf_mkfile "$WORK/f.bin" "$size"
mnt=$WORK/mnt

run() { # SPOOL NAME WANT_STATUS ftpfault options...
    local spool=$1 name=$2 want=$3 st; shift 3
    kf_start_ftpfault "$KEYFTPD_PORT" --hide-feat KEY "$@"
    kf_mount "$(kf_proxy_url "$FTPFAULT_PORT")" "$mnt" --spool "$spool"
    cp "$WORK/f.bin" "$mnt/$name" || kf_fail "cp $name"
    kf_wait_uploaded "$ROOT/$name" "$WORK/f.bin" 60 || kf_fail "$name not uploaded"
    for i in $(seq 40); do
        st=$("$KF_BIN/keyfs" status --spool "$spool") || kf_fail "keyfs status"
        grep -q "no pending uploads" <<<"$st" && break
        sleep 0.25
    done
    kf_log "status: $(grep '^checksum' <<<"$st")"
    grep -qF "$want" <<<"$st" || kf_fail "status does not say '$want': $st"
    grep -q "refused XCRC" "$spool/keyfs.log" || kf_fail "the log does not tell of the refusal"
    sleep 0.5
    (($(kf_fault_stat up_data) == size)) || kf_fail "sent $(kf_fault_stat up_data) bytes, not once $size"
    kf_unmount "$mnt"
    kf_stop_pid "$FTPFAULT_PID"
}

run "$WORK/spool1" a.bin "checksum: HASH CRC32 (fallback: XCRC refused: server replied 550" --refuse XCRC
run "$WORK/spool2" b.bin "checksum: size only (fallback: XCRC refused" --refuse XCRC --refuse HASH
kf_log "ok"
