# scripts/bench.d/tls.sh: the TLS rows of scripts/bench (sourced by it).
# One file of the run's size up and down over FTPS next to plain FTP, in
# the same run: curl to keyftpd (plain and explicit TLS), curl to pure-ftpd
# with TLS, and keyfs (cp until verified) over ftp:// and ftpes://; and
# over HTTPS next to plain HTTP: curl PUT (-T) and GET to keyftpd's HTTP
# face (--http and --https of the same process), and keyfs over http://
# and https://. Besides
# time, CPU seconds per GiB of the client and of the server: a set-top box
# pays for TLS in CPU. CPU comes from /proc (utime+stime, pure-ftpd's
# per-session children through its master's cutime+cstime) and from bash's
# `time` for curl. Results go to R[tls_*] (seconds) and R[tlscpu_*].

TCK=$(getconf CLK_TCK)
# cpu_of PID: user+system seconds of a process and its reaped children.
cpu_of() {
    awk -v t="$TCK" '{ sub(/^.*\) /, ""); printf "%.3f\n", ($12 + $13 + $14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0
}
sub3() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# tls_curl ROW URL DIR SRVPID ARGS...: one curl upload and download; adds
# tls_ROW_stor/retr (s) and tlscpu_ROW_{stor,retr}_{client,server} (s).
tls_curl() {
    local row=$1 url=$2 dir=$3 spid=$4 s0 t0 t1 c
    shift 4
    local TIMEFORMAT='%U %S'
    s0=$(cpu_of "$spid")
    t0=$(now)
    c=$({ time timeout "$LIMIT" curl -sS --fail "$@" -T "$SRC" "$url/tls.bin" >/dev/null; } 2>&1 | tail -1)
    t1=$(now)
    add "tls_${row}_stor" "$(secs "$t0" "$t1")"
    add "tlscpu_${row}_stor_client" "$(awk '{ printf "%.3f", $1 + $2 }' <<<"$c")"
    add "tlscpu_${row}_stor_server" "$(sub3 "$(cpu_of "$spid")" "$s0")"
    check_same "$dir/tls.bin" "$SHA" "curl -T ($row)"
    s0=$(cpu_of "$spid")
    t0=$(now)
    c=$({ time timeout "$LIMIT" curl -sS --fail "$@" "$url/tls.bin" -o /dev/null; } 2>&1 | tail -1)
    t1=$(now)
    add "tls_${row}_retr" "$(secs "$t0" "$t1")"
    add "tlscpu_${row}_retr_client" "$(awk '{ printf "%.3f", $1 + $2 }' <<<"$c")"
    add "tlscpu_${row}_retr_server" "$(sub3 "$(cpu_of "$spid")" "$s0")"
    rm -f "$dir/tls.bin"
}

# tls_keyfs ROW URL SRVPID ROOT [options]: cp into a fresh mount until the
# upload is verified; adds tls_ROW_keyfs and the two CPU figures.
tls_keyfs() {
    local row=$1 url=$2 spid=$3 root=$4 mnt spool s0 k0 t0 t1
    shift 4
    mnt=$BW/tls-mnt spool=$BW/tls-spool-$row-$r
    keyfs_mount "$url" "$mnt" "$spool" "$@"
    s0=$(cpu_of "$spid") k0=$(cpu_of "$KEYFS_PID")
    t0=$(now)
    timeout "$LIMIT" cp "$SRC" "$mnt/tlsk.bin" || kf_fail "cp ($row)"
    wait_keyfs "$root/tlsk.bin" "$bytes" "$spool" "$LIMIT"
    t1=$(now)
    add "tls_${row}_keyfs" "$(secs "$t0" "$t1")"
    add "tlscpu_${row}_keyfs_client" "$(sub3 "$(cpu_of "$KEYFS_PID")" "$k0")"
    add "tlscpu_${row}_keyfs_server" "$(sub3 "$(cpu_of "$spid")" "$s0")"
    check_same "$root/tlsk.bin" "$SHA" "keyfs ($row)"
    kf_unmount "$mnt"
    rm -f "$root/tlsk.bin"
}

tls_run() {
    local troot proot cert key tpid tport ppid pport r
    echo "== TLS: curl and keyfs over FTPS and plain FTP ($runs runs)"
    chmod 755 "$BW"
    troot=$BW/tls-root proot=$BW/tls-proot
    mkdir -p "$troot" "$proot"
    cert=$BW/tls-cert.pem key=$BW/tls-key.pem
    "$KF_BIN/keyftpd" gen-cert --host localhost --out-cert "$cert" --out-key "$key" >/dev/null
    cat "$cert" "$key" >"$BW/tls-both.pem"
    kf_start_keyftpd "$troot" "$FTP_USER" "$KEYFS_PASSWORD" 0 --tls-cert "$cert" --tls-key "$key" \
        --http 127.0.0.1:0 --https 127.0.0.1:0
    tpid=$KEYFTPD_PID tport=$KEYFTPD_PORT
    local hport sport
    hport=$(kf_keyftpd_http_port) && sport=$(kf_keyftpd_http_port https) ||
        kf_fail "keyftpd did not say its HTTP and HTTPS ports"
    kf_start_pureftpd "$proot" "$FTP_USER" "$KEYFS_PASSWORD" -Y 1 -2 "$BW/tls-both.pem"
    ppid=$PUREFTPD_PID pport=$PUREFTPD_PORT
    local tls=(--ssl-reqd --cacert "$cert") login=(-u "$FTP_USER:$KEYFS_PASSWORD")
    for ((r = 1; r <= runs; r++)); do
        echo "-- run $r/$runs"
        tls_curl keyftpd_plain "ftp://$FTP_USER:$KEYFS_PASSWORD@127.0.0.1:$tport" "$troot" "$tpid"
        tls_curl keyftpd_tls "ftp://$FTP_USER:$KEYFS_PASSWORD@localhost:$tport" "$troot" "$tpid" "${tls[@]}"
        tls_curl pureftpd_tls "ftp://$FTP_USER:$KEYFS_PASSWORD@localhost:$pport" "$proot" "$ppid" "${tls[@]}"
        tls_keyfs plain "ftp://$FTP_USER@127.0.0.1:$tport/" "$tpid" "$troot"
        tls_keyfs tls "ftpes://$FTP_USER@localhost:$tport/" "$tpid" "$troot" --ca-file "$cert"
        tls_curl keyftpd_http "http://127.0.0.1:$hport" "$troot" "$tpid" "${login[@]}"
        tls_curl keyftpd_https "https://localhost:$sport" "$troot" "$tpid" --cacert "$cert" "${login[@]}"
        tls_keyfs http "http://$FTP_USER@127.0.0.1:$hport/" "$tpid" "$troot"
        tls_keyfs https "https://$FTP_USER@localhost:$sport/" "$tpid" "$troot" --ca-file "$cert"
    done
    kf_stop_pid "$tpid"
    kf_stop_pid "$ppid"
}

tls_report() {
    local gib row what k
    gib=$(awk -v b="$bytes" 'BEGIN { print b / 1073741824 }')
    per_gib() { awk -v s="$1" -v g="$gib" 'BEGIN { if (s == "-" || s == "") print "-"; else printf "%.2f", s / g }'; }
    echo "### TLS: FTPS next to plain FTP"
    echo
    echo "One $(numfmt --to=iec "$bytes") file, medians of $runs runs on 127.0.0.1. curl uploads (\`-T\`) and downloads; keyfs is \`cp\` into a fresh mount until the upload is verified. keyftpd and pure-ftpd (\`-Y 1\`) use the same self-signed certificate; curl protects data (\`--ssl-reqd\`: PROT P). CPU is user+system seconds per GiB transferred: the client (curl, or the keyfs daemon) and the server (keyftpd's process; pure-ftpd's master with its reaped session processes)."
    echo
    echo "| path | time (s) | MiB/s | client CPU s/GiB | server CPU s/GiB |"
    echo "|---|---|---|---|---|"
    for row in keyftpd_plain:"curl STOR, keyftpd, plain" keyftpd_tls:"curl STOR, keyftpd, FTPS" \
        pureftpd_tls:"curl STOR, pure-ftpd, FTPS"; do
        k=${row%%:*} what=${row#*:}
        echo "| $what | $(M "tls_${k}_stor") | $(mbps "$(M "tls_${k}_stor")" "$bytes") | $(per_gib "$(M "tlscpu_${k}_stor_client")") | $(per_gib "$(M "tlscpu_${k}_stor_server")") |"
    done
    for row in keyftpd_plain:"curl RETR, keyftpd, plain" keyftpd_tls:"curl RETR, keyftpd, FTPS" \
        pureftpd_tls:"curl RETR, pure-ftpd, FTPS"; do
        k=${row%%:*} what=${row#*:}
        echo "| $what | $(M "tls_${k}_retr") | $(mbps "$(M "tls_${k}_retr")" "$bytes") | $(per_gib "$(M "tlscpu_${k}_retr_client")") | $(per_gib "$(M "tlscpu_${k}_retr_server")") |"
    done
    for row in plain:"keyfs cp, ftp://" tls:"keyfs cp, ftpes://"; do
        k=${row%%:*} what=${row#*:}
        echo "| $what | $(M "tls_${k}_keyfs") | $(mbps "$(M "tls_${k}_keyfs")" "$bytes") | $(per_gib "$(M "tlscpu_${k}_keyfs_client")") | $(per_gib "$(M "tlscpu_${k}_keyfs_server")") |"
    done
    echo
    echo "keyftpd's RETR goes by sendfile(2) in plain FTP and through a buffer under TLS; keyfs uploads likewise."
    echo
    echo "### TLS: HTTPS next to plain HTTP"
    echo
    echo "The same file to keyftpd's HTTP face, \`--http\` and \`--https\` of the same process (the certificate above): curl PUT (\`-T\`) and GET, and keyfs \`cp\` over http:// and https:// (the resumable POST) until verified. CPU as above."
    echo
    echo "| path | time (s) | MiB/s | client CPU s/GiB | server CPU s/GiB |"
    echo "|---|---|---|---|---|"
    for row in keyftpd_http:"curl PUT, keyftpd, HTTP" keyftpd_https:"curl PUT, keyftpd, HTTPS"; do
        k=${row%%:*} what=${row#*:}
        echo "| $what | $(M "tls_${k}_stor") | $(mbps "$(M "tls_${k}_stor")" "$bytes") | $(per_gib "$(M "tlscpu_${k}_stor_client")") | $(per_gib "$(M "tlscpu_${k}_stor_server")") |"
    done
    for row in keyftpd_http:"curl GET, keyftpd, HTTP" keyftpd_https:"curl GET, keyftpd, HTTPS"; do
        k=${row%%:*} what=${row#*:}
        echo "| $what | $(M "tls_${k}_retr") | $(mbps "$(M "tls_${k}_retr")" "$bytes") | $(per_gib "$(M "tlscpu_${k}_retr_client")") | $(per_gib "$(M "tlscpu_${k}_retr_server")") |"
    done
    for row in http:"keyfs cp, http://" https:"keyfs cp, https://"; do
        k=${row%%:*} what=${row#*:}
        echo "| $what | $(M "tls_${k}_keyfs") | $(mbps "$(M "tls_${k}_keyfs")" "$bytes") | $(per_gib "$(M "tlscpu_${k}_keyfs_client")") | $(per_gib "$(M "tlscpu_${k}_keyfs_server")") |"
    done
    echo
}
