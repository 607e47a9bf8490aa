# shellcheck shell=bash
# For the tests of keyftpd against stock clients (scripts/tests/keyftpd_*.sh):
# one keyftpd set-up and the checks they share. Source after common.sh and
# call kf_trap_cleanup first (the server is stopped by kf_cleanup).

# kc_need TOOL...: exits 2 (the test cannot run here; not a failure of
# keyftpd) when one is missing.
kc_need() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || { kf_log "missing $t"; exit 2; }
    done
}

# kc_work: a work dir (WORK, ROOT=$WORK/root and $WORK/local) and its
# password, exported as KEYFTPD_PASSWORD.
kc_work() {
    kf_work_dir
    mkdir -p "$WORK/local"
    KEYFTPD_PASSWORD=$KEYFS_PASSWORD
    export KEYFTPD_PASSWORD
}

# kc_keyftpd [keyftpd options...]: keyftpd on ROOT (kc_work first, unless
# done) for the user tester, FTP on a free port plus the options given.
# Sets FPORT, HPORT (with --http 127.0.0.1:0), SPORT (--https 127.0.0.1:0)
# and KEYFTPD_PID, KEYFTPD_LOG (its log).
kc_keyftpd() {
    [[ -n ${WORK:-} ]] || kc_work
    kf_start_keyftpd "$ROOT" tester "$KEYFTPD_PASSWORD" 0 "$@"
    FPORT=$KEYFTPD_PORT HPORT="" SPORT=""
    if [[ " $* " == *" --http "* ]]; then
        HPORT=$(kf_keyftpd_http_port) || fail "keyftpd did not report its HTTP port"
    fi
    if [[ " $* " == *" --https "* ]]; then
        SPORT=$(kf_keyftpd_http_port https) || fail "keyftpd did not report its HTTPS port"
    fi
}

# fail MSG: the test fails; the end of the server's log goes with it.
fail() {
    kf_log "FAIL: $*"
    if [[ -n ${KEYFTPD_LOG:-} ]]; then
        echo "--- server log" >&2
        grep -v DEBUG "$KEYFTPD_LOG" | tail -n 30 >&2
    fi
    exit 1
}

# same A B WHAT: A and B have the same bytes.
same() { [[ $(kf_sha "$1") == $(kf_sha "$2") ]] || fail "$3: $1 != $2"; }
# crc FILE: its CRC-32 as a KEY (0x + 8 hex digits).
crc() { python3 -c 'import sys, zlib; print("0x%08X" % zlib.crc32(open(sys.argv[1], "rb").read()))' "$1"; }
# json FIELD: that field of the JSON object on stdin.
json() { python3 -c 'import sys, json; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
