# scripts/bench.d/outage.sh: recovery after a link outage (issue 13),
# sourced by scripts/bench. Each client uploads the run's file through
# `ftpfault --hold-after Q --hold-seconds OUTAGE` (Q = a quarter of the
# file): once Q upload bytes went through, nothing crosses the proxy for
# OUTAGE seconds (control and data, both ways; new connections hang), then
# the link comes back by itself. Measured: from the link's return (the
# proxy's hold_end_ms) to the whole file on the server (keyfs: `keyfs wait`
# returning, i.e. verified; rclone mount: every byte there; lftp: the loop
# ending), and the upload bytes that crossed in all. The sha256 of every
# server copy is checked afterwards (lftp: a wrong one is recorded, as in
# the resume row). Results: R[outage_*], NOTE[outage_*].

# The user's loop around lftp: lftp gives up after 2 tries of 10 s without
# progress, the loop starts it again with `put -c` a second later.
lftp_loop() { # PORT NAME SECONDS: true once a run of lftp exits 0 (at most 20 runs, SECONDS in all)
    local i end=$((SECONDS + $3))
    for ((i = 1; i <= 20 && SECONDS < end; i++)); do
        timeout $((end - SECONDS + 1)) lftp -u "$FTP_USER,$KEYFS_PASSWORD" -p "$1" 127.0.0.1 \
            -e "set ftp:passive-mode on; set net:timeout 10; set net:max-retries 2; set net:reconnect-interval-base 1; set net:reconnect-interval-max 2; set cmd:fail-exit yes; put -c $SRC -o $2; quit" \
            >/dev/null 2>>"$BW/outage-lftp.err" && { OUTAGE_LFTP_TRIES=$i; return 0; }
        sleep 1
    done
    return 1
}

# outage_case WHO RUN: one upload through a fresh proxy with one outage.
outage_case() {
    local who=$1 r=$2 name=o-$1-$2.bin mnt=$BW/oM-$1 done_ms back rec bound
    # keyfs must finish (its upload time and two minutes to spare); the
    # others are baselines: 5 minutes after the link's return, their not
    # finishing is recorded.
    bound=$((OUTAGE + LIMIT + 120))
    [[ $who == keyfs ]] || bound=$((OUTAGE + 300))
    kf_start_ftpfault "$PORT" --hold-after "$((bytes / 4))" --hold-seconds "$OUTAGE"
    case $who in
        keyfs)
            keyfs_mount "ftp://$FTP_USER@127.0.0.1:$FTPFAULT_PORT/" "$mnt" "$BW/oS-$r"
            timeout "$LIMIT" cp "$SRC" "$mnt/$name" || kf_fail "keyfs: cp before the outage failed"
            timeout $((bound + 10)) "$KF_BIN/keyfs" wait "$mnt" --timeout "$bound" ||
                kf_fail "keyfs: upload not verified $bound s after the outage began"
            done_ms=$(date +%s%3N)
            ;;
        rclone)
            rclone_mount "$FTPFAULT_PORT" "$mnt" "$BW/oC-$r"
            timeout "$LIMIT" cp "$SRC" "$mnt/$name" || kf_fail "rclone: cp before the outage failed"
            if wait_size "$ROOT/$name" "$bytes" "$bound"; then done_ms=$(date +%s%3N); else done_ms=""; fi
            ;;
        lftp)
            if lftp_loop "$FTPFAULT_PORT" "$name" "$bound"; then done_ms=$(date +%s%3N); else done_ms=""; fi
            ;;
    esac
    sleep 0.5
    kf_stop_pid "$FTPFAULT_PID" # its last stats are written on exit
    [[ $(kf_fault_stat holds) == 1 ]] || kf_fail "$who: the outage did not happen"
    back=$(kf_fault_stat hold_end_ms)
    add "outage_${who}_sent" "$(kf_fault_stat up_data)"
    if [[ -n $done_ms ]]; then
        rec=$(awk -v a="$done_ms" -v b="$back" 'BEGIN { printf "%.3f", (a - b) / 1000 }')
        add "outage_${who}_time" "$rec"
        if [[ $(kf_sha "$ROOT/$name") != "$SHA" ]]; then
            [[ $who == keyfs ]] && kf_fail "keyfs: wrong server copy after the outage"
            NOTE[outage_$who]+="run $r: the server copy is wrong (size $(kf_size "$ROOT/$name")). "
        fi
        [[ $who == lftp ]] && add outage_lftp_tries "$OUTAGE_LFTP_TRIES"
    else
        NOTE[outage_$who]+="run $r: not finished $bound s after the outage began (server size $(kf_size "$ROOT/$name")). "
    fi
    case $who in
        keyfs) kf_unmount "$mnt"; kf_stop_pid "$KEYFS_PID" ;;
        rclone) rclone_umount "$mnt" "$RCLONE_PID"; rm -rf "$BW/oC-$r" ;;
    esac
    rm -f "$ROOT/$name"
}

outage_run() {
    local r who
    echo "== outage of ${OUTAGE} s mid-upload: keyfs, rclone mount, lftp loop ($runs runs)"
    for ((r = 1; r <= runs; r++)); do
        echo "-- run $r/$runs"
        for who in keyfs rclone lftp; do outage_case "$who" "$r"; done
    done
}

outage_report() {
    local k c l
    k=$(M outage_keyfs_time) c=$(M outage_rclone_time) l=$(M outage_lftp_time)
    echo "### Recovery after a ${OUTAGE} s outage of the link (issue 13)"
    echo
    echo "Each client uploads the $(numfmt --to=iec "$bytes") file through \`ftpfault --hold-after $((bytes / 4)) --hold-seconds $OUTAGE\`: after a quarter of the file, nothing crosses the link for $OUTAGE s (control and data, both ways; new connections hang), then it comes back by itself. Time: from the link's return to the whole file on the server (keyfs: \`keyfs wait\` returns, i.e. verified by the server's key; rclone mount, \`--vfs-cache-mode writes --vfs-write-back 0s\`: every byte there; lftp: a loop that runs \`lftp -e 'set net:timeout 10; set net:max-retries 2; put -c …'\` again a second after it gives up, until it succeeds). Sent: upload bytes through the proxy in all, against the file's size. Every server copy's sha256 is checked afterwards."
    echo
    echo "| client | from the link's return to the whole file on the server (median) | samples (s) | sent in all (median) | keyfs / this |"
    echo "|---|---|---|---|---|"
    echo "| keyfs | $k s | $(samples outage_keyfs_time) | $(pct "$(M outage_keyfs_sent)" "$bytes") | |"
    echo "| rclone mount | $c s | $(samples outage_rclone_time) | $(pct "$(M outage_rclone_sent)" "$bytes") | $(pratio outage_keyfs_time outage_rclone_time) |"
    echo "| lftp loop | $l s | $(samples outage_lftp_time) (lftp runs: $(samples outage_lftp_tries)) | $(pct "$(M outage_lftp_sent)" "$bytes") | $(pratio outage_keyfs_time outage_lftp_time) |"
    echo
    for who in keyfs rclone lftp; do
        [[ -n ${NOTE[outage_$who]:-} ]] && echo "**$who:** ${NOTE[outage_$who]}" && echo
    done
    echo "Target (scripts/tests/keyfs_outage_recovery.sh, 5 s outage of an 8 MiB upload): keyfs verified < 15 s after the link's return. Here: $(verdict "$k" '<=' 15)."
    echo
    chart_line "outage\\nvs rclone" "$(inv "$(pratio outage_keyfs_time outage_rclone_time)")" NaN
    chart_line "outage\\nvs lftp loop" "$(inv "$(pratio outage_keyfs_time outage_lftp_time)")" NaN
}
