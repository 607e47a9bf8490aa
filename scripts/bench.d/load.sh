# scripts/bench.d/load.sh: the load row of scripts/bench (sourced by it).
# LOAD_SESSIONS concurrent sessions (ftpload: connect, log in, and once all
# are logged in upload and download a 4 KiB file each) against keyftpd and
# then pure-ftpd, each set up for that many clients, on 127.0.0.1 from 100
# source addresses (127.0.1.x), as users come from many hosts. Measured at
# the moment every session is logged in: processes, threads, RSS and PSS of
# the server's process tree; and keyftpd's peak RSS (VmHWM) over the run.
# Results go to NOTE[load_keyftpd] / NOTE[load_pureftpd] as ftpload's
# key=value line (plus hwm_kib for keyftpd).

load_one() { # SERVER: runs ftpload against it, prints its line
    local who=$1 root port pid line
    root=$BW/load-$who
    rm -rf "$root"
    mkdir -p "$root"
    if [[ $who == keyftpd ]]; then
        RUST_LOG=warn kf_start_keyftpd "$root" "$FTP_USER" "$KEYFS_PASSWORD" 0 \
            --max-sessions $((LOAD_SESSIONS + 100)) --max-pending $((LOAD_SESSIONS + 100)) \
            --idle-timeout 120
        port=$KEYFTPD_PORT pid=$KEYFTPD_PID
    else
        kf_start_pureftpd "$root" "$FTP_USER" "$KEYFS_PASSWORD" \
            -c $((LOAD_SESSIONS + 100)) -C $((LOAD_SESSIONS + 100))
        port=$PUREFTPD_PORT pid=$PUREFTPD_PID
    fi
    line=$(FTPLOAD_PASSWORD=$KEYFS_PASSWORD timeout 300 "$KF_BIN/ftpload" \
        --addr "127.0.0.1:$port" --user "$FTP_USER" --sessions "$LOAD_SESSIONS" \
        --size 4096 --sources 100 --watch "$pid" --deadline 240 2>"$BW/ftpload-$who.err") ||
        line="ftpload failed"
    [[ -s $BW/ftpload-$who.err ]] && NOTE[load_${who}_errors]=$(head -5 "$BW/ftpload-$who.err" | paste -sd';')
    [[ $who == keyftpd ]] && line+=" hwm_kib=$(hwm_kib "$pid")"
    kf_stop_pid "$pid"
    rm -rf "$root"
    printf '%s' "$line"
}

load_run() {
    local who
    echo "== keyftpd vs pure-ftpd: $LOAD_SESSIONS concurrent sessions"
    chmod 755 "$BW"
    for who in keyftpd pureftpd; do
        NOTE[load_$who]=$(load_one "$who")
        kf_log "load $who: ${NOTE[load_$who]}"
    done
}

# load_field SERVER KEY: one value of the SERVER's line ("pidN_" prefixes dropped).
load_field() {
    printf '%s\n' "${NOTE[load_$1]:-}" | tr ' ' '\n' | sed 's/^pid[0-9]*_//' |
        awk -F= -v k="$2" '$1 == k { print $2; exit }'
}

load_report() {
    local k p rk rp w
    k=$(load_field keyftpd rss_kib) p=$(load_field pureftpd pss_kib)
    # Per session: the growth from the idle server, over the sessions logged in.
    per() { awk -v r="$(load_field "$1" "$2")" -v b="$(load_field "$1" "idle_$2")" -v n="$(load_field "$1" logged_in_at_once)" \
        'BEGIN { if (r == "" || n + 0 == 0) print "-"; else printf "%.1f", (r - b) / n }'; }
    rk=$(per keyftpd rss_kib) rp=$(per pureftpd pss_kib)
    echo "### keyftpd under load: $LOAD_SESSIONS concurrent sessions"
    echo
    echo "\`ftpload\` (src/bin/ftpload.rs) opens $LOAD_SESSIONS sessions from 100 loopback addresses; each logs in, and once all are logged in each uploads and downloads a 4 KiB file (EPSV) and compares it. Both servers are set up for that many clients (keyftpd \`--max-sessions\` and \`--max-pending\`, pure-ftpd \`-c\` and \`-C\`). Memory is measured at the moment every session is logged in, over the server's whole process tree; pure-ftpd forks processes per session (two, with privilege separation), so its PSS (shared pages counted once) is the fair figure; its RSS sum counts shared pages once per process."
    echo
    echo "| server | sessions served | logged in at once | processes | threads | RSS at once | PSS at once | per session (growth from idle) | peak RSS | time |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    echo "| keyftpd | $(load_field keyftpd served) of $LOAD_SESSIONS | $(load_field keyftpd logged_in_at_once) | $(load_field keyftpd procs) | $(load_field keyftpd threads) | $(kib_mib "$k") MiB | $(kib_mib "$(load_field keyftpd pss_kib)") MiB | ${rk} KiB (RSS) | $(kib_mib "$(load_field keyftpd hwm_kib)") MiB | $(load_field keyftpd total_secs) s |"
    echo "| pure-ftpd | $(load_field pureftpd served) of $LOAD_SESSIONS | $(load_field pureftpd logged_in_at_once) | $(load_field pureftpd procs) | $(load_field pureftpd threads) | $(kib_mib "$(load_field pureftpd rss_kib)") MiB (sum) | $(kib_mib "$p") MiB | ${rp} KiB (PSS) | - | $(load_field pureftpd total_secs) s |"
    echo
    for w in keyftpd pureftpd; do
        [[ -n ${NOTE[load_${w}_errors]:-} ]] && echo "**$w sessions that failed:** ${NOTE[load_${w}_errors]}" && echo
    done
    echo "keyftpd memory / pure-ftpd memory at once (RSS / PSS): $(ratio "$k" "$p"); per session: $(ratio "$rk" "$rp"). Idle before the run: keyftpd $(kib_mib "$(load_field keyftpd idle_rss_kib)") MiB RSS, pure-ftpd $(kib_mib "$(load_field pureftpd idle_pss_kib)") MiB PSS."
    echo
}
