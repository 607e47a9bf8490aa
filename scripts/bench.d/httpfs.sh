# scripts/bench.d/httpfs.sh: keyfs over http:// (issue 11), sourced by
# scripts/bench. One keyftpd with --http; four mounts of it, used in turn
# in each run: keyfs over ftp:// and over http:// (keyftpd's HTTP face), and
# rclone mount of the same keyftpd over FTP and over WebDAV (a `:webdav:`
# remote from the environment, --vfs-cache-mode writes as the other rclone
# rows). Rows: `cp` of the run's file into the mount; until verified on
# the server (keyfs: `keyfs wait`; rclone: every byte there); a sequential
# read; 1000 x 4 KiB `cp -r` until all are on the server; the daemon's peak
# RSS over the copies and over the whole section. Results: R[hf_*].

HF_WHO="kftp khttp rftp rdav"

# The contenders in the order of run R: rotated by one each run, so that
# none always follows another's writes (the disk's writeback of the last
# 1 GiB slows whoever comes next).
hf_order() {
    local -a w=($HF_WHO)
    local i n=${#w[@]}
    for ((i = 0; i < n; i++)); do printf '%s ' "${w[(i + $1) % n]}"; done
}
declare -A HF_LABEL=([kftp]="keyfs ftp://" [khttp]="keyfs http://" [rftp]="rclone mount, FTP" [rdav]="rclone mount, WebDAV")

# rclone_dav_mount HTTP_PORT MNT CACHE_DIR: rclone mount of keyftpd's HTTP
# face as a WebDAV remote. Sets RCLONE_PID.
export RCLONE_CONFIG_KW_TYPE=webdav RCLONE_CONFIG_KW_VENDOR=other RCLONE_CONFIG_KW_USER=$FTP_USER
RCLONE_CONFIG_KW_PASS=$RCLONE_CONFIG_KF_PASS
export RCLONE_CONFIG_KW_PASS
rclone_dav_mount() {
    mkdir -p "$2" "$3"
    kf_register mounts "$2"
    RCLONE_CONFIG_KW_URL=http://127.0.0.1:$1/ rclone mount kw: "$2" "${RCLONE_FLAGS[@]}" \
        --cache-dir "$3" --log-file "$3.log" --log-level INFO </dev/null >/dev/null 2>&1 &
    RCLONE_PID=$!
    kf_register pids "$RCLONE_PID"
    local i
    for ((i = 0; i < 300; i++)); do
        kf_is_mounted "$2" && timeout 5 stat "$2" >/dev/null 2>&1 && return 0
        kf_alive "$RCLONE_PID" || break
        sleep 0.1
    done
    tail -5 "$3.log" >&2 || true
    kf_fail "rclone webdav mount on $2 did not come up"
}

# hf_done WHO ROOT NAME SIZE: the whole-file upload of NAME is on the server
# (keyfs: verified, by `keyfs wait`).
hf_done() {
    local who=$1 mnt=$BW/hf-$1
    if [[ $who == k* ]]; then
        timeout $((LIMIT + 10)) "$KF_BIN/keyfs" wait "$mnt" --timeout "$LIMIT" || return 1
        [[ $(kf_size "$2/$3") == "$4" ]]
    else
        wait_size "$2/$3" "$4" "$LIMIT"
    fi
}

httpfs_run() {
    local root=$BW/hf-root fp hp kpid who r n mnt
    declare -gA HF_PID
    echo "== keyfs over http:// next to ftp:// and rclone mount (FTP, WebDAV) ($runs runs)"
    mkdir -p "$root"
    kf_start_keyftpd "$root" "$FTP_USER" "$KEYFS_PASSWORD" 0 --http 127.0.0.1:0
    kpid=$KEYFTPD_PID fp=$KEYFTPD_PORT
    hp=$(kf_keyftpd_http_port) || kf_fail "keyftpd did not say its HTTP port"
    # Reads: a fresh hard link per reader and run (no page cache reused),
    # made before mounting (rclone lists a directory once and keeps it).
    cp "$SRC" "$root/rd.bin"
    for ((r = 1; r <= runs; r++)); do
        for who in $HF_WHO; do ln "$root/rd.bin" "$root/rd-$who-$r.bin"; done
    done
    ln "$root/rd.bin" "$root/rd-verify.bin"
    keyfs_mount "ftp://$FTP_USER@127.0.0.1:$fp/" "$BW/hf-kftp" "$BW/hf-spool-kftp"
    HF_PID[kftp]=$KEYFS_PID
    keyfs_mount "http://$FTP_USER@127.0.0.1:$hp/" "$BW/hf-khttp" "$BW/hf-spool-khttp"
    HF_PID[khttp]=$KEYFS_PID
    rclone_mount "$fp" "$BW/hf-rftp" "$BW/hf-cache-rftp"
    HF_PID[rftp]=$RCLONE_PID
    rclone_dav_mount "$hp" "$BW/hf-rdav" "$BW/hf-cache-rdav"
    HF_PID[rdav]=$RCLONE_PID

    for ((r = 1; r <= runs; r++)); do
        echo "-- write, run $r/$runs"
        for who in $(hf_order "$r"); do
            mnt=$BW/hf-$who
            sync
            t0=$(now); timeout "$LIMIT" cp "$SRC" "$mnt/w-$who-$r.bin" || kf_fail "$who: cp failed"; t1=$(now)
            hf_done "$who" "$root" "w-$who-$r.bin" "$bytes" || kf_fail "$who: the upload did not finish"
            t2=$(now)
            add "hf_cp_$who" "$(secs "$t0" "$t1")"
            add "hf_e2e_$who" "$(secs "$t0" "$t2")"
            [[ $who == r* ]] && sleep 0.5 # rclone's post-upload checks
            check_same "$root/w-$who-$r.bin" "$SHA" "$who upload"
            rm -f "$root/w-$who-$r.bin"; sync
        done
    done
    for who in $HF_WHO; do add "hf_rsswrite_$who" "$(hwm_kib "${HF_PID[$who]}")"; done

    cat "$root/rd.bin" >/dev/null
    for ((r = 1; r <= runs; r++)); do
        echo "-- read, run $r/$runs"
        for who in $(hf_order "$r"); do
            t0=$(now); timeout "$LIMIT" cat "$BW/hf-$who/rd-$who-$r.bin" >/dev/null || kf_fail "$who: read failed"; t1=$(now)
            add "hf_read_$who" "$(secs "$t0" "$t1")"
        done
    done
    [[ $(timeout "$LIMIT" sha256sum <"$BW/hf-khttp/rd-verify.bin" | cut -d' ' -f1) == "$SHA" ]] ||
        kf_fail "read through keyfs http://: wrong sha256"
    rm -f "$root"/rd*.bin

    local slimit=$((60 + small / 5))
    for ((r = 1; r <= runs; r++)); do
        echo "-- $small small files, run $r/$runs"
        for who in $(hf_order "$r"); do
            mnt=$BW/hf-$who
            t0=$(now); timeout "$slimit" cp -r "$BW/small" "$mnt/s-$who-$r" || kf_fail "$who: cp -r failed"
            if [[ $who == k* ]]; then
                timeout $((slimit + 10)) "$KF_BIN/keyfs" wait "$mnt" --timeout "$slimit" || kf_fail "$who: small files not verified"
            else
                wait_count "$root/s-$who-$r" "$small" 4096 "$slimit" || kf_fail "$who: small files not all uploaded"
            fi
            t1=$(now)
            add "hf_small_$who" "$(secs "$t0" "$t1")"
        done
        sleep 0.5
        for who in $HF_WHO; do
            diff -r "$BW/small" "$root/s-$who-$r" >/dev/null || kf_fail "$who: small files differ"
            rm -rf "${root:?}/s-$who-$r"
        done
    done
    for who in $HF_WHO; do add "hf_rssall_$who" "$(hwm_kib "${HF_PID[$who]}")"; done

    for who in rftp rdav; do rclone_umount "$BW/hf-$who" "${HF_PID[$who]}"; done
    for who in kftp khttp; do kf_unmount "$BW/hf-$who"; kf_stop_pid "${HF_PID[$who]}"; done
    kf_stop_pid "$kpid"
}

httpfs_report() {
    local who rk rs lead_f lead_h
    echo "### keyfs over http:// next to keyfs over ftp:// and rclone mount (issue 11)"
    echo
    echo "One keyftpd with \`--http\`, four mounts of it used in turn in each run (the order rotated by one each run): keyfs over \`ftp://\` and over \`http://\` (keyftpd's HTTP face: the seed's \`GET ?state\` (skipped for files up to 64 KiB, posted whole) + multipart POST with the key, verified by the state it answers), rclone mount over FTP and over WebDAV (\`:webdav:\` remote, vendor other, \`--vfs-cache-mode writes --vfs-write-back 0s\`). keyfs's end to end is until \`keyfs wait MNT\` returns (every upload verified); rclone's until the server has every byte. Small files: $small x 4 KiB, \`cp -r\` until all are on the server (keyfs: \`keyfs wait\`). Peak RSS: VmHWM of the mount's process after the $(numfmt --to=iec "$bytes") copies, and at the end of the section."
    echo
    echo "| row | keyfs ftp:// | keyfs http:// | rclone FTP | rclone WebDAV | http:// / ftp:// (target <= 1.10) | | keyfs/rclone, FTP | keyfs/rclone, HTTP (target <= FTP's) | |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    # hfrow LABEL KEY UNIT CHART_LABEL: lower is better for every row (read: time).
    hfrow() {
        local r1 r2 r3
        r1=$(pratio "hf_$2_khttp" "hf_$2_kftp")
        r2=$(pratio "hf_$2_kftp" "hf_$2_rftp")
        r3=$(pratio "hf_$2_khttp" "hf_$2_rdav")
        echo "| $1 | $(M "hf_$2_kftp") $3 | $(M "hf_$2_khttp") $3 | $(M "hf_$2_rftp") $3 | $(M "hf_$2_rdav") $3 | $r1 | $(verdict "$r1" '<=' 1.10) | $r2 | $r3 | $(verdict "$r3" '<=' "$r2") |"
        HF_CHART+=("$4:$r1")
    }
    HF_CHART=()
    hfrow "\`cp\` returns" cp s "cp"
    hfrow "until verified on the server" e2e s "e2e"
    hfrow "sequential read (time)" read s "read"
    hfrow "$small x 4 KiB until on the server" small s "small"
    for k in rsswrite rssall; do
        local label="peak RSS, copies" a b c d r1 r2 r3
        [[ $k == rssall ]] && label="peak RSS, whole section"
        a=$(printf '%s' "${R[hf_${k}_kftp]:-}" | sort -g | tail -1) b=$(printf '%s' "${R[hf_${k}_khttp]:-}" | sort -g | tail -1)
        c=$(printf '%s' "${R[hf_${k}_rftp]:-}" | sort -g | tail -1) d=$(printf '%s' "${R[hf_${k}_rdav]:-}" | sort -g | tail -1)
        r1=$(ratio "$b" "$a") r2=$(ratio "$a" "$c") r3=$(ratio "$b" "$d")
        echo "| $label | $(kib_mib "$a") MiB | $(kib_mib "$b") MiB | $(kib_mib "$c") MiB | $(kib_mib "$d") MiB | $r1 | $(verdict "$r1" '<=' 1.10) | $r2 | $r3 | $(verdict "$r3" '<=' "$r2") |"
    done
    echo
    echo "Read speeds: keyfs ftp:// $(mbps "$(M hf_read_kftp)" "$bytes"), http:// $(mbps "$(M hf_read_khttp)" "$bytes"), rclone FTP $(mbps "$(M hf_read_rftp)" "$bytes"), rclone WebDAV $(mbps "$(M hf_read_rdav)" "$bytes") MiB/s. Ratios are medians over the runs of the per-run ratio (lower is better: time or memory)."
    echo
    local e
    for e in "${HF_CHART[@]}"; do
        chart_line "keyfs http\\nvs ftp: ${e%%:*}" "$(inv "${e##*:}")" "$(inv 1.10)"
    done
}
