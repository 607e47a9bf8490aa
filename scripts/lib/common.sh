# shellcheck shell=bash
# Shared helpers for scripts/test, scripts/demo and scripts/tests/*.sh.
#
# Everything a script starts (processes, FUSE mounts, tmpfs mounts, temp
# dirs) is recorded in a registry under $KF_STATE, so kf_cleanup -- run from
# a trap, or by scripts/test after a test that was killed -- can stop and
# unmount exactly what was started, by PID and by path, never by name.
#
# Source this file; it defines functions and a few variables only:
#   KF_ROOT   repository root
#   KF_BIN    directory holding keyfs, keyftpd, ftpfault (default target/debug)
#   KF_STATE  registry directory (created on first use)

KF_ROOT=${KF_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
KF_BIN=${KF_BIN:-${CARGO_TARGET_DIR:-$KF_ROOT/target}/debug}
KF_STATE=${KF_STATE:-}
KF_TIMEOUT=${KF_TIMEOUT:-60}

# Log lines (and so every failure) name the transport a scenario runs
# over (KF_TRANSPORT, set by kf_each_transport).
kf_log() { printf '[%s%s] %s\n' "${KF_NAME:-$(basename "$0")}" "${KF_TRANSPORT:+ over $KF_TRANSPORT}" "$*" >&2; }
kf_fail() { kf_log "FAIL: $*"; exit 1; }

# Runs CMD... and fails the test with MSG when it fails: kf_check MSG CMD...
kf_check() {
    local msg=$1; shift
    "$@" || kf_fail "$msg"
}

kf_state() {
    if [[ -z $KF_STATE ]]; then
        KF_STATE=$(mktemp -d /tmp/keyfs-state.XXXXXX)
        KF_STATE_OWNED=1
        export KF_STATE
    fi
    mkdir -p "$KF_STATE"
    touch "$KF_STATE/pids" "$KF_STATE/mounts" "$KF_STATE/tmpfs" "$KF_STATE/dirs"
}

kf_register() { # KIND VALUE
    kf_state
    printf '%s\n' "$2" >>"$KF_STATE/$1"
}

# A fresh temporary directory, removed at cleanup.
kf_tmpdir() {
    local d
    d=$(mktemp -d /tmp/keyfs-test.XXXXXX)
    kf_register dirs "$d"
    printf '%s\n' "$d"
}

kf_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# Waits until PID is gone (up to SECONDS); returns 1 on timeout.
kf_wait_gone() {
    local pid=$1 limit=${2:-10} i
    for ((i = 0; i < limit * 10; i++)); do
        kf_exited "$pid" && return 0
        sleep 0.1
    done
    return 1
}

# Stops PID: SIGTERM, then SIGKILL after a grace period.
kf_stop_pid() {
    local pid=$1
    kf_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    kf_wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null
    kf_wait_gone "$pid" 5 || true
}

kf_kill9() {
    local pid=$1
    kf_log "kill -9 $pid"
    kill -KILL "$pid" 2>/dev/null || true
    # Reap our own child quietly (no "Killed" job message).
    { wait "$pid"; } 2>/dev/null || true
    kf_wait_gone "$pid" 10 || kf_fail "process $pid survived kill -9"
}

kf_is_mounted() { grep -qs " $(realpath -m "$1") " /proc/self/mounts; }

# Unmounts a FUSE mount, lazily if it stays busy.
kf_unmount() {
    local mnt=$1 i
    for ((i = 0; i < 20; i++)); do
        kf_is_mounted "$mnt" || return 0
        fusermount3 -u "$mnt" 2>/dev/null && return 0
        sleep 0.25
    done
    fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
}

# Stops everything in the registry (idempotent). Safe to call from a trap.
kf_cleanup() {
    [[ -n $KF_STATE && -d $KF_STATE ]] || return 0
    local line sub
    # Nested registries (a script run by a test, with KF_STATE=$KF_STATE/x).
    for sub in "$KF_STATE"/*/; do
        [[ -d $sub ]] && (KF_STATE=${sub%/} && kf_cleanup)
    done
    # Mounts first (a daemon exits when unmounted), newest first.
    if [[ -s $KF_STATE/mounts ]]; then
        tac "$KF_STATE/mounts" | while read -r line; do kf_unmount "$line"; done
    fi
    if [[ -s $KF_STATE/pids ]]; then
        tac "$KF_STATE/pids" | while read -r line; do kf_stop_pid "$line"; done
    fi
    if [[ -s $KF_STATE/tmpfs ]]; then
        tac "$KF_STATE/tmpfs" | while read -r line; do
            kf_is_mounted "$line" && { umount "$line" 2>/dev/null || umount -l "$line" 2>/dev/null; }
        done
    fi
    if [[ -s $KF_STATE/dirs ]]; then
        while read -r line; do
            [[ $line == /tmp/keyfs-* ]] && ! kf_is_mounted "$line" && rm -rf --one-file-system "$line"
        done <"$KF_STATE/dirs"
    fi
    : >"$KF_STATE/mounts"; : >"$KF_STATE/pids"; : >"$KF_STATE/tmpfs"; : >"$KF_STATE/dirs"
}

# Installs cleanup on exit and on INT/TERM. Call once per script.
kf_trap_cleanup() {
    kf_state
    trap 'kf_cleanup; [[ ${KF_STATE_OWNED:-0} == 1 ]] && rm -rf "$KF_STATE"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Waits for `listening on 127.0.0.1:PORT` as the first line of FILE and
# prints PORT. Fails if PID dies or SECONDS pass.
kf_wait_listening() {
    local file=$1 pid=$2 limit=${3:-20} i line
    for ((i = 0; i < limit * 20; i++)); do
        line=$(head -n1 "$file" 2>/dev/null || true)
        if [[ $line =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then
            printf '%s\n' "${BASH_REMATCH[1]}"
            return 0
        fi
        kf_alive "$pid" || return 1
        sleep 0.05
    done
    return 1
}

# Waits until a TCP port on 127.0.0.1 answers with a 220 banner.
kf_wait_banner() {
    local port=$1 limit=${2:-10} i banner
    for ((i = 0; i < limit * 10; i++)); do
        if banner=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 3 <&3" 2>/dev/null) &&
            [[ $banner == 220 ]]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

kf_sha() { sha256sum "$1" | cut -d' ' -f1; }
kf_size() { stat -c %s "$1" 2>/dev/null || echo -1; }

# Makes FILE of SIZE bytes (K/M suffix allowed) of random data.
kf_mkfile() {
    local file=$1 size=$2
    head -c "$size" /dev/urandom >"$file" || kf_fail "cannot create $file"
}

kf_password() { printf 'kf-%s%s' "$RANDOM" "$RANDOM"; }

# ---- keyftpd ---------------------------------------------------------------

# kf_start_keyftpd ROOT USER PASSWORD [PORT [keyftpd options...]]: starts keyftpd (port 0 by
# default, or PORT to come back on the same port after a crash). Sets
# KEYFTPD_PID and KEYFTPD_PORT.
kf_start_keyftpd() {
    local root=$1 user=$2 pass=$3 port=${4:-0} log try extra=("${@:5}")
    [[ -x $KF_BIN/keyftpd ]] || kf_fail "keyftpd not built ($KF_BIN/keyftpd)"
    log=$(kf_tmpdir)
    KEYFTPD_LOG=$log/err
    for try in 1 2 3 4 5 6 7 8 9 10; do # a fixed port may take a moment to free up
        KEYFTPD_PASSWORD=$pass RUST_LOG=${RUST_LOG:-info} \
            "$KF_BIN/keyftpd" --root "$root" --listen "127.0.0.1:$port" --user "$user" "${extra[@]}" \
            </dev/null >"$log/out" 2>>"$log/err" &
        KEYFTPD_PID=$!
        kf_register pids "$KEYFTPD_PID"
        if KEYFTPD_PORT=$(kf_wait_listening "$log/out" "$KEYFTPD_PID" 20); then
            kf_log "keyftpd pid $KEYFTPD_PID on port $KEYFTPD_PORT"
            return 0
        fi
        kf_stop_pid "$KEYFTPD_PID"
        [[ $port == 0 ]] && break
        sleep 0.5
    done
    cat "$log/err" >&2
    kf_fail "keyftpd did not start"
}

# ---- pure-ftpd -------------------------------------------------------------

# kf_start_pureftpd ROOT USER PASSWORD [pure-ftpd options...]: a stock
# server in the foreground on a free loopback port with one virtual user
# (mapped to nobody, as pure-ftpd refuses uid 0). Sets PUREFTPD_PID and
# PUREFTPD_PORT.
kf_start_pureftpd() {
    local root=$1 user=$2 pass=$3 dir hash try port extra=("${@:4}")
    dir=$(kf_tmpdir)
    chown 65534:65534 "$root"
    # A cheap hash: pure-pw's default (argon2) costs seconds per login.
    hash=$(openssl passwd -6 "$pass") || kf_fail "openssl passwd failed"
    printf '%s:%s:65534:65534::%s/./::::::::::::\n' "$user" "$hash" "$root" >"$dir/passwd"
    pure-pw mkdb "$dir/pdb" -f "$dir/passwd" || kf_fail "pure-pw mkdb failed"
    for try in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 30000))
        /usr/sbin/pure-ftpd -S "127.0.0.1,$port" -l "puredb:$dir/pdb" -E -A -H -4 "${extra[@]}" \
            </dev/null >"$dir/out" 2>"$dir/err" &
        PUREFTPD_PID=$!
        kf_register pids "$PUREFTPD_PID"
        if kf_wait_banner "$port" 5; then
            PUREFTPD_PORT=$port
            kf_log "pure-ftpd pid $PUREFTPD_PID on port $port"
            return 0
        fi
        kf_stop_pid "$PUREFTPD_PID"
    done
    kf_fail "pure-ftpd did not start"
}

# kf_start_rclone_webdav ROOT USER PASSWORD [PORT]: a stock WebDAV server
# (rclone serve webdav) on a free loopback port, or on PORT (to come back
# after a crash). Sets RCLONE_PID and RCLONE_PORT.
kf_start_rclone_webdav() {
    local root=$1 user=$2 pass=$3 fixed=${4:-} dir try port i
    dir=$(kf_tmpdir)
    for try in 1 2 3 4 5 6; do
        port=${fixed:-$((20000 + RANDOM % 30000))}
        rclone serve webdav "$root" --addr "127.0.0.1:$port" --user "$user" --pass "$pass" \
            </dev/null >"$dir/out" 2>"$dir/err" &
        RCLONE_PID=$!
        kf_register pids "$RCLONE_PID"
        for ((i = 0; i < 100; i++)); do
            if curl -s -o /dev/null -u "$user:$pass" "http://127.0.0.1:$port/"; then
                RCLONE_PORT=$port
                kf_log "rclone serve webdav pid $RCLONE_PID on port $port"
                return 0
            fi
            kf_alive "$RCLONE_PID" || break
            sleep 0.1
        done
        kf_stop_pid "$RCLONE_PID"
        [[ -n $fixed ]] && sleep 0.5 # a fixed port may take a moment to free up
    done
    cat "$dir/err" >&2
    kf_fail "rclone serve webdav did not start"
}

# kf_keyftpd_http_port [https]: the HTTP (or HTTPS) port the last
# kf_start_keyftpd (with --http/--https 127.0.0.1:0) reported on stdout.
kf_keyftpd_http_port() {
    local i p face=${1:-http}
    for ((i = 0; i < 100; i++)); do
        p=$(sed -n "s/^$face listening on 127\.0\.0\.1:\([0-9]*\)\$/\1/p" "${KEYFTPD_LOG%/err}/out")
        [[ -n $p ]] && { printf '%s\n' "$p"; return 0; }
        sleep 0.1
    done
    return 1
}

# ---- ftpfault --------------------------------------------------------------

# kf_start_ftpfault UPSTREAM_PORT [ftpfault options...]: sets FTPFAULT_PID,
# FTPFAULT_PORT and FTPFAULT_STATS (the stats file; read with kf_fault_stat).
kf_start_ftpfault() {
    local up=$1 dir; shift
    dir=$(kf_tmpdir)
    [[ -x $KF_BIN/ftpfault ]] || kf_fail "ftpfault not built ($KF_BIN/ftpfault)"
    FTPFAULT_STATS=$dir/stats
    "$KF_BIN/ftpfault" --listen 127.0.0.1:0 --upstream "127.0.0.1:$up" \
        --stats "$FTPFAULT_STATS" --max-seconds "${KF_FAULT_SECONDS:-600}" "$@" \
        >"$dir/out" 2>"$dir/err" &
    FTPFAULT_PID=$!
    kf_register pids "$FTPFAULT_PID"
    FTPFAULT_PORT=$(kf_wait_listening "$dir/out" "$FTPFAULT_PID" 10) ||
        { cat "$dir/err" >&2; kf_fail "ftpfault did not start"; }
    kf_log "ftpfault pid $FTPFAULT_PID on port $FTPFAULT_PORT -> $up ($*)"
}

# kf_fault_stat KEY: a counter from the ftpfault stats file (0 if absent).
kf_fault_stat() {
    local v
    v=$(grep -o "\b$1=[0-9]*" "$FTPFAULT_STATS" 2>/dev/null | cut -d= -f2)
    printf '%s\n' "${v:-0}"
}

# ---- keyfs -----------------------------------------------------------------

# kf_mount URL MNT [keyfs mount options...]: mounts with the daemon in the
# background and returns once the mount answers. With KF_FOREGROUND=1 runs
# `keyfs mount -f` as a background job instead (so its PID is known for
# kill -9). Password from $KEYFS_PASSWORD. Sets KEYFS_PID.
kf_mount() {
    local url=$1 mnt=$2 log tls=(); shift 2
    # The test CA of a TLS transport (kf_setup_transport), unless the
    # caller says how to trust the server.
    if [[ -n ${KF_CA_FILE:-} && $url == *s://* && " $* " != *" --ca-file "* && " $* " != *" --pin-sha256 "* ]]; then
        tls=(--ca-file "$KF_CA_FILE")
    fi
    log=$(kf_tmpdir)
    [[ -x $KF_BIN/keyfs ]] || kf_fail "keyfs not built ($KF_BIN/keyfs)"
    mkdir -p "$mnt"
    kf_register mounts "$mnt"
    KEYFS_LOG=$log/err
    if [[ ${KF_FOREGROUND:-0} == 1 ]]; then
        RUST_LOG=${RUST_LOG:-info} "$KF_BIN/keyfs" mount "$url" "$mnt" -f "${tls[@]}" "$@" \
            </dev/null >"$log/out" 2>"$log/err" &
        KEYFS_PID=$!
        kf_register pids "$KEYFS_PID"
    else
        RUST_LOG=${RUST_LOG:-info} timeout 60 "$KF_BIN/keyfs" mount "$url" "$mnt" "${tls[@]}" "$@" \
            </dev/null >"$log/out" 2>"$log/err" ||
            { cat "$log/err" >&2; kf_fail "keyfs mount failed"; }
        KEYFS_PID=$(kf_pid_of_mount "$mnt")
        [[ -n $KEYFS_PID ]] && kf_register pids "$KEYFS_PID"
    fi
    local i limit=200 # 20 s for a foreground daemon to come up
    [[ ${KF_FOREGROUND:-0} == 1 ]] || limit=50 # `keyfs mount` already waited
    for ((i = 0; i < limit; i++)); do
        if kf_is_mounted "$mnt" && timeout 5 stat "$mnt" >/dev/null 2>&1; then
            kf_log "mounted $url on $mnt (pid ${KEYFS_PID:-?})"
            return 0
        fi
        if [[ ${KF_FOREGROUND:-0} == 1 ]] && ! kf_alive "$KEYFS_PID"; then break; fi
        sleep 0.1
    done
    cat "$log/err" >&2
    kf_fail "mount of $url on $mnt did not come up"
}

# The PID of the keyfs daemon serving MNT, found in /proc by its arguments.
kf_pid_of_mount() {
    local mnt=$1 p args
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/exe" 2>/dev/null) == "$(realpath "$KF_BIN/keyfs")" ]] || continue
        args=$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null) || continue
        if grep -qxF -e "$mnt" -e "$(realpath -m "$mnt")" <<<"$args"; then
            printf '%s\n' "${p#/proc/}"
            return 0
        fi
    done
}

# Waits until FILE on the server has the sha256 of LOCAL (up to SECONDS).
kf_wait_uploaded() {
    local server=$1 local_=$2 limit=${3:-$KF_TIMEOUT} want i
    want=$(kf_sha "$local_")
    for ((i = 0; i < limit * 4; i++)); do
        if [[ -f $server && $(kf_size "$server") == $(kf_size "$local_") &&
            $(kf_sha "$server") == "$want" ]]; then
            return 0
        fi
        sleep 0.25
    done
    kf_log "server file $server: size $(kf_size "$server"), want $(kf_size "$local_")"
    return 1
}

# Waits until FILE exists with a size strictly between LO and HI bytes
# (an upload in progress); returns 1 after SECONDS.
kf_wait_size_between() {
    local file=$1 lo=$2 hi=$3 limit=${4:-30} i s
    for ((i = 0; i < limit * 20; i++)); do
        s=$(kf_size "$file")
        ((s > lo && s < hi)) && return 0
        sleep 0.05
    done
    kf_log "$file: size $s, wanted between $lo and $hi"
    return 1
}

# Waits until FILE's size stops changing for a second; prints the size.
kf_settled_size() {
    local file=$1 prev=-2 s i
    for ((i = 0; i < 40; i++)); do
        s=$(kf_size "$file")
        [[ $s == "$prev" ]] && { printf '%s\n' "$s"; return 0; }
        prev=$s
        sleep 0.5
    done
    printf '%s\n' "$s"
}

# ---- tmpfs -----------------------------------------------------------------

# kf_tmpfs DIR SIZE: mounts a small tmpfs (for ENOSPC tests) on DIR.
kf_tmpfs() {
    local dir=$1 size=$2
    mkdir -p "$dir"
    mount -t tmpfs -o "size=$size" tmpfs "$dir" || kf_fail "cannot mount tmpfs on $dir"
    kf_register tmpfs "$dir"
}

# ---- scenario setup --------------------------------------------------------

# kf_setup_keyftpd: a work dir with a server root, a keyftpd on it, and the
# password exported for keyfs. Sets WORK, ROOT, FTP_USER, KEYFS_PASSWORD,
# KEYFTPD_* and URL (ftp://user@127.0.0.1:PORT/).
kf_setup_keyftpd() { kf_setup_server keyftpd; }

# kf_work_dir: a work dir with an empty server root, the test user and a
# fresh password exported for keyfs. Sets WORK, ROOT, FTP_USER and
# KEYFS_PASSWORD.
kf_work_dir() {
    WORK=$(kf_tmpdir)
    ROOT=$WORK/root
    mkdir -p "$ROOT"
    FTP_USER=tester
    KEYFS_PASSWORD=$(kf_password)
    export KEYFS_PASSWORD
}

# kf_setup_server keyftpd|pureftpd: the same set-up on either server (the
# port is in KEYFTPD_PORT or PUREFTPD_PORT, and in URL).
kf_setup_server() {
    kf_work_dir
    "kf_start_$1" "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD"
    local port_var=${1^^}_PORT
    URL="ftp://$FTP_USER@127.0.0.1:${!port_var}/"
}

# kf_proxy_url PORT: the keyfs URL going through ftpfault on PORT (in the
# scheme of KF_TRANSPORT).
kf_proxy_url() { printf '%s://%s@%s:%s/\n' "$(kf_scheme)" "$FTP_USER" "$(kf_host)" "$1"; }

# The host name in URLs: the test certificate's name over TLS (it resolves
# to 127.0.0.1), else the address.
kf_host() { [[ ${KF_TRANSPORT:-ftp} == https ]] && echo localhost || echo 127.0.0.1; }

# ---- transports -------------------------------------------------------------
# A scenario runs over each transport keyfs has:
#   ftp     keyftpd's FTP face (KEY, XCRC, MFMT)
#   http    keyftpd's HTTP face (WebDAV, and the resumable `?state` + POST)
#   https   keyftpd's HTTP face over TLS (--https, a gen-cert certificate
#           that keyfs trusts by --ca-file: KF_CA_FILE, added by kf_mount)
#   webdav  a stock WebDAV server (rclone serve webdav: no resume, no keys)

# The URL scheme of KF_TRANSPORT.
kf_scheme() {
    case ${KF_TRANSPORT:-ftp} in
        ftp) echo ftp ;;
        https) echo https ;;
        *) echo http ;;
    esac
}

# kf_each_transport FN [TRANSPORT...]: runs FN once per transport (default
# ftp and http; KF_TRANSPORTS="http" in the environment keeps only those),
# each in a subshell with KF_TRANSPORT set and its own registry, cleaned up
# when it ends. Fails at the end naming each transport that failed.
kf_each_transport() {
    local fn=$1 t rc failed=() list=("${@:2}")
    ((${#list[@]})) || list=(ftp http)
    for t in "${list[@]}"; do
        [[ -z ${KF_TRANSPORTS:-} || " $KF_TRANSPORTS " == *" $t "* ]] || continue
        set +e
        (
            set -e
            KF_TRANSPORT=$t KF_STATE=$KF_STATE/$t KF_STATE_OWNED=0
            kf_state
            trap kf_cleanup EXIT
            trap 'exit 130' INT
            trap 'exit 143' TERM
            kf_log "---- scenario over $t"
            "$fn"
        )
        rc=$?
        set -e
        ((rc == 0)) && kf_log "ok over $t" || failed+=("$t")
    done
    ((${#failed[@]} == 0)) || kf_fail "failed over: ${failed[*]}"
}

# kf_setup_transport: kf_setup_keyftpd for KF_TRANSPORT: keyftpd (with
# --http 127.0.0.1:0 for http, then KEYFTPD_HTTP_PORT is set), or rclone
# serve webdav for webdav. Sets WORK, ROOT, FTP_USER, KEYFS_PASSWORD,
# SERVER_PORT (the port keyfs talks to) and URL.
kf_setup_transport() {
    kf_work_dir
    case ${KF_TRANSPORT:-ftp} in
        ftp)
            kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD"
            SERVER_PORT=$KEYFTPD_PORT
            ;;
        http)
            kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" 0 --http 127.0.0.1:0
            KEYFTPD_HTTP_PORT=$(kf_keyftpd_http_port) || kf_fail "keyftpd did not say its HTTP port"
            SERVER_PORT=$KEYFTPD_HTTP_PORT
            ;;
        https)
            "$KF_BIN/keyftpd" gen-cert --host localhost --out-cert "$WORK/cert.pem" \
                --out-key "$WORK/key.pem" >/dev/null || kf_fail "keyftpd gen-cert"
            KF_CA_FILE=$WORK/cert.pem
            kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" 0 --https 127.0.0.1:0 \
                --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
            KEYFTPD_HTTP_PORT=$(kf_keyftpd_http_port https) || kf_fail "keyftpd did not say its HTTPS port"
            SERVER_PORT=$KEYFTPD_HTTP_PORT
            ;;
        webdav)
            kf_start_rclone_webdav "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD"
            SERVER_PORT=$RCLONE_PORT
            ;;
        *) kf_fail "unknown transport ${KF_TRANSPORT}" ;;
    esac
    URL=$(kf_proxy_url "$SERVER_PORT")
}

# kf_kill9_server: kill -9 of the server kf_setup_transport started.
kf_kill9_server() {
    if [[ ${KF_TRANSPORT:-ftp} == webdav ]]; then kf_kill9 "$RCLONE_PID"; else kf_kill9 "$KEYFTPD_PID"; fi
}

# kf_restart_server: the server of kf_setup_transport again, on the same
# ports (after kf_kill9_server).
kf_restart_server() {
    local extra=()
    case ${KF_TRANSPORT:-ftp} in
        webdav) kf_start_rclone_webdav "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" "$RCLONE_PORT"; return ;;
        http) extra=(--http "127.0.0.1:$KEYFTPD_HTTP_PORT") ;;
        https) extra=(--https "127.0.0.1:$KEYFTPD_HTTP_PORT" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem") ;;
    esac
    kf_start_keyftpd "$ROOT" "$FTP_USER" "$KEYFS_PASSWORD" "$KEYFTPD_PORT" "${extra[@]}"
}

# kf_start_proxy [ftpfault options...]: ftpfault in front of SERVER_PORT
# (relaying plain TCP for the HTTP transports). Sets FTPFAULT_* and
# PROXY_URL.
kf_start_proxy() {
    local tcp=()
    [[ ${KF_TRANSPORT:-ftp} == ftp ]] || tcp=(--tcp)
    kf_start_ftpfault "$SERVER_PORT" "${tcp[@]}" "$@"
    PROXY_URL=$(kf_proxy_url "$FTPFAULT_PORT")
}

# kf_assert_le A B MSG: fails unless A <= B (integers).
kf_assert_le() { (($1 <= $2)) || kf_fail "$3 ($1 > $2)"; }

kf_state
# A registry created here (not handed down by scripts/test) is ours to
# clean up, even if the script dies before it calls kf_trap_cleanup.
if [[ ${KF_STATE_OWNED:-0} == 1 ]]; then
    kf_trap_cleanup
fi
true

# kf_exited PID: true once PID has exited. A zombie has exited too: its
# parent (often init, which may reap late) has just not collected it yet.
kf_exited() {
    local st
    st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 0
    [[ -z $st || $st == Z ]]
}
