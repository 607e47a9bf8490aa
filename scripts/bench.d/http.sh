# scripts/bench.d/http.sh: the HTTP rows of scripts/bench (issue 10),
# sourced by it. With curl on 127.0.0.1, one file of the run's size up and
# down: keyftpd's HTTP face (PUT, and the seed's multipart POST with offset
# and key) next to the same keyftpd process's FTP face (STOR/RETR) and next
# to `rclone serve webdav`, interleaved in each run. Besides time, CPU
# seconds of the server for each transfer (/proc/PID/stat), to tell where a
# gap comes from. Then keyftpd's peak RSS with 1, 8, 32 (--smoke: 1, 4)
# concurrent HTTP uploads, each on a fresh keyftpd. Results: R[http_*],
# R[httpcpu_*], NOTE[httprss_*].

HTTP_CONC=${HTTP_CONC:-1 8 32}
# Bound on keyftpd's RSS growth per concurrent HTTP upload (MiB).
HTTP_RSS_PER_UPLOAD_MAX=2

hz=$(getconf CLK_TCK)
# proc_cpu PID: user+system seconds of a process (and its reaped children).
proc_cpu() {
    awk -v t="$hz" '{ sub(/^.*\) /, ""); printf "%.3f\n", ($12 + $13 + $14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0
}
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# crc_key FILE: the file's CRC-32 as keyftpd's key form (0x + 8 hex digits).
crc_key() {
    python3 -c 'import sys, zlib
c = 0
with open(sys.argv[1], "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""):
        c = zlib.crc32(b, c)
print("0x%08X" % c)' "$1"
}

# http_xfer ROW SERVER_PID CHECK_FILE CURL_ARGS...: one timed curl; adds
# http_ROW (s) and httpcpu_ROW (server CPU s). CHECK_FILE (an upload's
# server copy) gets its sha256 checked after the timed part; "-" for none.
http_xfer() {
    local row=$1 spid=$2 check=$3 c0 t0 t1
    shift 3
    c0=$(proc_cpu "$spid")
    t0=$(now)
    timeout "$LIMIT" curl -sS --fail -u "$FTP_USER:$KEYFS_PASSWORD" "$@" >/dev/null || kf_fail "curl ($row) failed"
    t1=$(now)
    add "http_$row" "$(secs "$t0" "$t1")"
    add "httpcpu_$row" "$(fsub "$(proc_cpu "$spid")" "$c0")"
    [[ $check == - ]] || check_same "$check" "$SHA" "curl ($row)"
}

# http_tus SERVER_PID CHECK_FILE BASE_URL NAME KEY: a tus upload of SRC,
# timed as a tus client does it: the creation POST (with the key in the
# metadata, as keyftpd takes it), then one PATCH of the whole file. Adds
# http_up_tus and httpcpu_up_tus.
http_tus() {
    local spid=$1 check=$2 dir=$3 name=$4 key=$5 c0 t0 t1 loc meta
    meta="filename $(printf %s "$name" | base64),key $(printf %s "$key" | base64)"
    c0=$(proc_cpu "$spid")
    t0=$(now)
    loc=$(timeout "$LIMIT" curl -sS --fail -u "$FTP_USER:$KEYFS_PASSWORD" -X POST \
        -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $bytes" -H "Upload-Metadata: $meta" \
        -D - -o /dev/null "$dir/" | tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
    [[ $loc == /* ]] || kf_fail "tus creation gave no Location path: '$loc'"
    # -T streams the file (a --data-binary @file would load it whole).
    timeout "$LIMIT" curl -sS --fail -u "$FTP_USER:$KEYFS_PASSWORD" -X PATCH -T "$SRC" \
        -H "Tus-Resumable: 1.0.0" -H "Upload-Offset: 0" \
        -H "Content-Type: application/offset+octet-stream" "$dir$loc" >/dev/null ||
        kf_fail "tus PATCH failed"
    t1=$(now)
    add http_up_tus "$(secs "$t0" "$t1")"
    add httpcpu_up_tus "$(fsub "$(proc_cpu "$spid")" "$c0")"
    check_same "$check" "$SHA" "tus upload"
}

# http_conc N PUT|POST: N concurrent uploads of CSRC to a fresh keyftpd;
# NOTE[httprss_METHOD_N] = "idle_kib peak_kib seconds".
http_conc() {
    local n=$1 how=$2 root=$BW/http-conc pid hp idle i t0 t1 ups=() f
    rm -rf "$root"
    mkdir -p "$root"
    kf_start_keyftpd "$root" "$FTP_USER" "$KEYFS_PASSWORD" 0 --http 127.0.0.1:0
    pid=$KEYFTPD_PID
    hp=$(kf_keyftpd_http_port) || kf_fail "keyftpd did not say its HTTP port"
    idle=$(hwm_kib "$pid")
    t0=$(now)
    for ((i = 0; i < n; i++)); do
        if [[ $how == PUT ]]; then
            timeout "$LIMIT" curl -sS --fail -u "$FTP_USER:$KEYFS_PASSWORD" -T "$CSRC" \
                "http://127.0.0.1:$hp/c$i.bin" >/dev/null &
        else
            timeout "$LIMIT" curl -sS --fail -u "$FTP_USER:$KEYFS_PASSWORD" -F offset=0 -F "key=$CKEY" \
                -F "file=@$CSRC;type=application/octet-stream" "http://127.0.0.1:$hp/c$i.bin" >/dev/null &
        fi
        ups+=("$!")
    done
    for i in "${ups[@]}"; do wait "$i" || kf_fail "one of $n concurrent HTTP $how uploads failed"; done
    t1=$(now)
    NOTE[httprss_${how}_$n]="$idle $(hwm_kib "$pid") $(secs "$t0" "$t1")"
    kf_log "http $how x$n: ${NOTE[httprss_${how}_$n]} (idle KiB, peak KiB, s)"
    for ((i = 0; i < n; i++)); do
        [[ $(kf_size "$root/c$i.bin") == "$cbytes" ]] || kf_fail "HTTP $how x$n: c$i.bin has $(kf_size "$root/c$i.bin") bytes"
    done
    for f in "$root/c0.bin" "$root/c$((n - 1)).bin"; do
        [[ $(kf_sha "$f") == "$CSHA" ]] || kf_fail "HTTP $how x$n: $f differs"
    done
    kf_stop_pid "$pid"
    rm -rf "$root"
}

http_run() {
    local hroot=$BW/http-root rroot=$BW/http-rroot kpid fp hp rpid rp r key n how i
    echo "== HTTP: curl up and down, keyftpd HTTP vs its FTP vs rclone serve webdav ($runs runs)"
    mkdir -p "$hroot" "$rroot"
    kf_start_keyftpd "$hroot" "$FTP_USER" "$KEYFS_PASSWORD" 0 --http 127.0.0.1:0
    kpid=$KEYFTPD_PID fp=$KEYFTPD_PORT
    hp=$(kf_keyftpd_http_port) || kf_fail "keyftpd did not say its HTTP port"
    kf_start_rclone_webdav "$rroot" "$FTP_USER" "$KEYFS_PASSWORD"
    rpid=$RCLONE_PID rp=$RCLONE_PORT
    key=$(crc_key "$SRC")
    local F=ftp://127.0.0.1:$fp H=http://127.0.0.1:$hp D=http://127.0.0.1:$rp
    for ((r = 1; r <= runs; r++)); do
        echo "-- run $r/$runs"
        # The uploads in an order rotated each run, each after a sync: the
        # disk's writeback of the last 1 GiB would slow whoever comes next.
        for ((i = 0; i < 5; i++)); do
            sync
            case $(((i + r) % 5)) in
                0) http_xfer up_ftp "$kpid" "$hroot/f.bin" -T "$SRC" "$F/f.bin" ;;
                1) http_xfer up_put "$kpid" "$hroot/h.bin" -T "$SRC" "$H/h.bin" ;;
                2) http_xfer up_post "$kpid" "$hroot/p.bin" -F offset=0 -F "key=$key" \
                    -F "file=@$SRC;type=application/octet-stream" "$H/p.bin" ;;
                3) http_xfer up_rclone "$rpid" "$rroot/r.bin" -T "$SRC" "$D/r.bin" ;;
                4) http_tus "$kpid" "$hroot/t.bin" "$H" t.bin "$key" ;;
            esac
        done
        sync
        http_xfer down_ftp "$kpid" - "$F/f.bin" -o /dev/null
        http_xfer down_http "$kpid" - "$H/h.bin" -o /dev/null
        http_xfer down_rclone "$rpid" - "$D/r.bin" -o /dev/null
        rm -f "$hroot"/*.bin "$rroot"/*.bin
    done
    kf_stop_pid "$kpid"
    kf_stop_pid "$rpid"

    # Memory per concurrent upload: smaller files (the bound is about
    # buffers per connection, not file size), a fresh server per wave.
    cbytes=$((bytes < 134217728 ? bytes : 134217728))
    CSRC=$BW/csrc.bin
    head -c "$cbytes" "$SRC" >"$CSRC"
    CSHA=$(kf_sha "$CSRC") CKEY=$(crc_key "$CSRC")
    echo "== HTTP: keyftpd's peak RSS with ${HTTP_CONC// /, } concurrent $(numfmt --to=iec "$cbytes") uploads"
    for n in $HTTP_CONC; do
        for how in PUT POST; do http_conc "$n" "$how"; done
    done
    rm -f "$CSRC"
}

http_report() {
    local gib up_put up_post down r_put r_post r_down n how idle peak t per worst=0 v
    gib=$(awk -v b="$bytes" 'BEGIN { print b / 1073741824 }')
    pg() { awk -v s="$1" -v g="$gib" 'BEGIN { if (s == "-" || s == "") print "-"; else printf "%.2f", s / g }'; }
    r_put=$(pratio http_up_ftp http_up_put) r_post=$(pratio http_up_ftp http_up_post)
    r_down=$(pratio http_down_ftp http_down_http)
    echo "### keyftpd's HTTP face next to its FTP face and rclone serve webdav (issue 10)"
    echo
    echo "curl on 127.0.0.1 uploads one $(numfmt --to=iec "$bytes") file and downloads it, to and from one keyftpd process with \`--http\` (FTP: \`curl -T\` / RETR; HTTP: \`curl -T\` = PUT, the seed's multipart POST with \`offset=0\` and the file's \`key\`, tus (the creation POST with the key in its metadata, then one PATCH streamed by \`curl -T\`), and GET) and to \`rclone serve webdav\` (PUT, GET), interleaved in each run (uploads in an order rotated each run, each after a sync). A ratio is the median over the runs of FTP time / HTTP time in the same run (*speed*, higher is better). Server CPU: user+system seconds of the server process per GiB."
    echo
    echo "| transfer | time (s) | MiB/s | server CPU s/GiB | speed vs keyftpd's FTP | target | |"
    echo "|---|---|---|---|---|---|---|"
    row() { # KEY LABEL RATIO TARGET
        local m; m=$(M "http_$1")
        echo "| $2 | $m | $(mbps "$m" "$bytes") | $(pg "$(M "httpcpu_$1")") | $3 | $4 | $( [[ $4 == - ]] && echo "" || verdict "$3" '>=' "${4#>= }") |"
    }
    row up_ftp "upload, keyftpd FTP (STOR)" 1 -
    row up_put "upload, keyftpd HTTP PUT" "$r_put" ">= 0.9"
    row up_post "upload, keyftpd HTTP POST (seed, multipart)" "$r_post" ">= 0.9"
    row up_tus "upload, keyftpd HTTP tus (creation POST + one PATCH)" "$(pratio http_up_ftp http_up_tus)" -
    row up_rclone "upload, rclone serve webdav PUT" "$(pratio http_up_ftp http_up_rclone)" -
    row down_ftp "download, keyftpd FTP (RETR)" 1 -
    row down_http "download, keyftpd HTTP GET" "$r_down" ">= 0.9"
    row down_rclone "download, rclone serve webdav GET" "$(pratio http_down_ftp http_down_rclone)" -
    echo
    echo "keyftpd's HTTP upload vs rclone serve webdav's: speed $(pratio http_up_rclone http_up_put) (PUT), $(pratio http_up_rclone http_up_post) (POST); download $(pratio http_down_rclone http_down_http)."
    echo
    echo "**Memory per concurrent HTTP upload.** A fresh keyftpd per wave; N curl uploads of a $(numfmt --to=iec "${cbytes:-0}") file at once (PUT, or the multipart POST with key); peak RSS (VmHWM) of keyftpd after the wave. Share per upload: (peak - idle) / N; added per upload: the growth from the wave before over the uploads added. Bound: <= $HTTP_RSS_PER_UPLOAD_MAX MiB per upload at the largest wave."
    echo
    echo "| method | concurrent uploads | idle RSS | peak RSS | share per upload | added per upload | wave time (s) |"
    echo "|---|---|---|---|---|---|---|"
    local pn pp add
    for how in PUT POST; do
        pn="" pp=""
        for n in $HTTP_CONC; do
            read -r idle peak t <<<"${NOTE[httprss_${how}_$n]:-- - -}"
            per=$(awk -v i="$idle" -v p="$peak" -v n="$n" 'BEGIN { if (p == "-") print "-"; else printf "%.2f", (p - i) / 1024 / n }')
            add=$(awk -v a="$pp" -v p="$peak" -v m="$pn" -v n="$n" 'BEGIN { if (a == "" || p == "-" || a == "-") print "-"; else printf "%.2f MiB", (p - a) / 1024 / (n - m) }')
            echo "| $how | $n | $(kib_mib "$idle") MiB | $(kib_mib "$peak") MiB | $per MiB | $add | $t |"
            pn=$n pp=$peak
        done
        [[ $per != - ]] && worst=$(awk -v a="$worst" -v b="$per" 'BEGIN { print (b > a ? b : a) }')
    done
    echo
    v=$(verdict "$worst" '<=' "$HTTP_RSS_PER_UPLOAD_MAX")
    echo "Largest share per upload at ${HTTP_CONC##* } uploads: $worst MiB (bound <= $HTTP_RSS_PER_UPLOAD_MAX MiB: $v)."
    echo
    chart_line "HTTP PUT\\nvs FTP" "$r_put" 0.9
    chart_line "HTTP POST\\nvs FTP" "$r_post" 0.9
    chart_line "HTTP GET\\nvs FTP" "$r_down" 0.9
}
