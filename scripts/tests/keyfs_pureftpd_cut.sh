#!/usr/bin/env bash
# A stock server (pure-ftpd: no KEY, no XCRC) with a cut mid-upload: keyfs
# restarts the upload from zero by default and ends byte-identical; with
# --resume=trust-size it resumes at the server's size instead.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

kf_setup_server pureftpd

size=$((6 << 20))
cut=$((2 << 20))
kf_mkfile "$WORK/f.bin" "$size"

# Default (safe): restart from zero after the cut.
kf_start_ftpfault "$PUREFTPD_PORT" --cut-after "$cut" --cuts 1
mnt=$WORK/mnt
kf_mount "$(kf_proxy_url "$FTPFAULT_PORT")" "$mnt" --spool "$WORK/spool"
cp "$WORK/f.bin" "$mnt/f.bin" || kf_fail "cp"
kf_wait_uploaded "$ROOT/f.bin" "$WORK/f.bin" 90 || kf_fail "not uploaded to pure-ftpd after the cut"
sleep 0.5
((10#$(kf_fault_stat cuts) == 1)) || kf_fail "the cut did not happen"
up=$(kf_fault_stat up_data)
kf_log "safe mode: up_data=$up size=$size"
((up >= size + cut)) || kf_fail "safe mode should have re-sent from zero (up_data $up)"
kf_unmount "$mnt"
kf_stop_pid "$FTPFAULT_PID"

# --resume=trust-size: resume at the server's size.
kf_start_ftpfault "$PUREFTPD_PORT" --cut-after "$cut" --cuts 1
kf_mount "$(kf_proxy_url "$FTPFAULT_PORT")" "$mnt" --spool "$WORK/spool2" --resume=trust-size
cp "$WORK/f.bin" "$mnt/g.bin" || kf_fail "cp g.bin"
kf_wait_uploaded "$ROOT/g.bin" "$WORK/f.bin" 90 || kf_fail "not uploaded with trust-size"
sleep 0.5
up=$(kf_fault_stat up_data)
kf_log "trust-size: up_data=$up size=$size (re-sent $((up - size)) bytes)"
# A restart from zero sends at least size + cut (as safe mode did above);
# a resume sends the cut's bytes plus only what pure-ftpd had not written
# when the reset came: the bytes still in its socket buffer are lost with
# the RST (up to a few hundred KiB with sendfile's fast sender), so the
# bound is "less than a restart", not "the missing part to the byte".
((up < size + cut)) || kf_fail "trust-size did not resume (up_data $up >= $((size + cut)))"
kf_unmount "$mnt"
kf_log "ok"
