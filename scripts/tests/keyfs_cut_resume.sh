#!/usr/bin/env bash
# A connection cut mid-upload (ftpfault resets the data connection after
# 3 MiB): keyfs reconnects and resumes, sending only the missing part. The
# proxy's byte count of upload data must be about the file size, not more.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_keyftpd
size=$((8 << 20))
cut=$((3 << 20))
kf_start_ftpfault "$KEYFTPD_PORT" --cut-after "$cut" --cuts 1
mnt=$WORK/mnt
kf_mount "$(kf_proxy_url "$FTPFAULT_PORT")" "$mnt" --spool "$WORK/spool"

kf_mkfile "$WORK/f.bin" "$size"
cp "$WORK/f.bin" "$mnt/f.bin" || kf_fail "cp"
kf_wait_uploaded "$ROOT/f.bin" "$WORK/f.bin" 90 || kf_fail "not uploaded after the cut"

sleep 0.5 # the stats file is refreshed every 100 ms
cuts=$(kf_fault_stat cuts)
up=$(kf_fault_stat up_data)
kf_log "cuts=$cuts up_data=$up size=$size"
((cuts == 1)) || kf_fail "expected exactly one cut, got $cuts"
((up >= size)) || kf_fail "proxy saw less upload data ($up) than the file ($size)"
# Resume sends only the missing part: allow 2% + 64 KiB of slack, far
# below the 3 MiB a restart from zero would re-send.
kf_assert_le "$up" $((size + size / 50 + 65536)) "resume re-sent too much"
kf_unmount "$mnt"
kf_log "ok"
