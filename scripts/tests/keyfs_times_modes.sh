#!/usr/bin/env bash
# File times and modes. Over ftp:// against a stock server that offers
# MFMT and SITE CHMOD (pure-ftpd), and over http:// against keyftpd's HTTP
# face (PROPPATCH of the time; no mode): `touch -m -d`, `cp -p` and
# `rsync -t` into the mount keep their times on the server (whole seconds)
# and the mount shows them; a second `rsync -t` copies nothing. Over ftp
# `chmod` and `cp -p` keep the mode; over http the call succeeds and the
# server's mode stays as it was. `chown` to the shown owner succeeds, to
# another fails with EPERM. A time set while the file still waits for
# upload (a throttled link) goes with its job and lands after the upload.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup

command -v rsync >/dev/null || kf_fail "rsync not installed"

mtime() { stat -c %Y "$1"; }
mode() { stat -c %a "$1"; }

# wait_mtime FILE SECS: polls until FILE's mtime is SECS (up to 10 s).
wait_mtime() {
    local i
    for i in $(seq 40); do [[ $(mtime "$1") == "$2" ]] && return 0; sleep 0.25; done
    kf_fail "mtime of $1 is $(mtime "$1"), want $2"
}

# want_mode FILE MODE_IF_KEPT MODE_BEFORE: over ftp the server keeps the
# mode set; over http it keeps the one it had.
want_mode() {
    local want=$2
    [[ $KF_TRANSPORT == ftp ]] || want=$3
    [[ $(mode "$1") == "$want" ]] || kf_fail "mode of $1 is $(mode "$1"), want $want"
}

scenario() {
    local mnt want before n again
    if [[ $KF_TRANSPORT == ftp ]]; then
        kf_setup_server pureftpd
        SERVER_PORT=$PUREFTPD_PORT
    else
        kf_setup_transport
    fi
    mnt=$WORK/mnt
    kf_mount "$URL" "$mnt" --spool "$WORK/spool"

    # touch -m -d on a file already on the server. (GNU touch opens the file
    # for writing and sets the time on that descriptor: the version it makes
    # goes to the server again, then the time is set.)
    printf 'one\n' >"$WORK/f.txt"
    cp "$WORK/f.txt" "$mnt/f.txt" || kf_fail "cp f.txt"
    kf_wait_uploaded "$ROOT/f.txt" "$WORK/f.txt" 30 || kf_fail "f.txt not uploaded"
    sleep 1.2 # past the attribute cache: the file is the server's now
    want=$(date -d 2001-01-01 +%s)
    touch -m -d 2001-01-01 "$mnt/f.txt" || kf_fail "touch -m -d"
    wait_mtime "$ROOT/f.txt" "$want"
    [[ $(kf_sha "$ROOT/f.txt") == $(kf_sha "$WORK/f.txt") ]] || kf_fail "f.txt changed on the server"
    [[ $(mtime "$mnt/f.txt") == "$want" ]] || kf_fail "mount mtime $(mtime "$mnt/f.txt"), want $want"
    sleep 1.2
    [[ $(mtime "$mnt/f.txt") == "$want" ]] || kf_fail "mount mtime after the cache: $(mtime "$mnt/f.txt")"

    # chmod on a file on the server: SITE CHMOD over ftp; over http the
    # call succeeds and changes nothing.
    before=$(mode "$ROOT/f.txt")
    chmod 600 "$mnt/f.txt" || kf_fail "chmod"
    want_mode "$ROOT/f.txt" 600 "$before"
    sleep 1.2
    [[ $KF_TRANSPORT != ftp ]] || want_mode "$mnt/f.txt" 600 "$before"

    # chown: to the owner shown is a no-op, to another is refused.
    chown "$(stat -c %u "$mnt/f.txt"):$(stat -c %g "$mnt/f.txt")" "$mnt/f.txt" || kf_fail "no-op chown failed"
    if chown 12345 "$mnt/f.txt" 2>"$WORK/chown.err"; then kf_fail "chown to another uid succeeded"; fi
    grep -q "not permitted" "$WORK/chown.err" || kf_fail "chown error: $(cat "$WORK/chown.err")"

    # cp -p: time and mode set on the file while it is written.
    printf 'two\n' >"$WORK/g.txt"
    touch -m -d '2002-02-02 12:34:56.789' "$WORK/g.txt"
    chmod 640 "$WORK/g.txt"
    cp -p "$WORK/g.txt" "$mnt/g.txt" || kf_fail "cp -p"
    want=$(mtime "$WORK/g.txt")
    [[ $(stat -c %y "$mnt/g.txt") == "$(stat -c %y "$WORK/g.txt")" ]] ||
        kf_fail "mount shows $(stat -c %y "$mnt/g.txt") before upload, want $(stat -c %y "$WORK/g.txt")"
    kf_wait_uploaded "$ROOT/g.txt" "$WORK/g.txt" 30 || kf_fail "g.txt not uploaded"
    wait_mtime "$ROOT/g.txt" "$want"
    [[ $KF_TRANSPORT != ftp ]] || want_mode "$ROOT/g.txt" 640 -
    sleep 1.2
    [[ $(mtime "$mnt/g.txt") == "$want" ]] || kf_fail "cp -p: mount mtime $(mtime "$mnt/g.txt")"
    [[ $KF_TRANSPORT != ftp ]] || want_mode "$mnt/g.txt" 640 -

    # rsync -t twice: the second run copies nothing.
    mkdir -p "$WORK/src/sub"
    for n in a b sub/c; do
        kf_mkfile "$WORK/src/$n" 20K
    done
    touch -m -d '2003-03-03 03:03:03.5' "$WORK/src/a"
    touch -m -d '1999-12-31 23:59:59' "$WORK/src/sub/c"
    rsync -rt "$WORK/src/" "$mnt/r/" || kf_fail "rsync -t"
    for n in a b sub/c; do
        kf_wait_uploaded "$ROOT/r/$n" "$WORK/src/$n" 30 || kf_fail "r/$n not uploaded"
    done
    for n in a b sub/c; do
        wait_mtime "$ROOT/r/$n" "$(mtime "$WORK/src/$n")"
    done
    sleep 1.2
    again=$(rsync -rti "$WORK/src/" "$mnt/r/") || kf_fail "second rsync -t"
    if grep -q '^[<>]f' <<<"$again"; then kf_fail "second rsync -t copied files: $again"; fi
    kf_log "second rsync -t: nothing copied"
    kf_unmount "$mnt"

    # A time set while the file waits for its upload (a throttled link): it
    # goes with the job and is set after the verified upload.
    kf_start_proxy --throttle 1M
    kf_mount "$PROXY_URL" "$mnt" --spool "$WORK/spool2"
    kf_mkfile "$WORK/slow.bin" 3M
    cp "$WORK/slow.bin" "$mnt/slow.bin" || kf_fail "cp slow.bin"
    touch -m -d 2004-04-04 "$mnt/slow.bin" || kf_fail "touch while queued"
    chmod 604 "$mnt/slow.bin" || kf_fail "chmod while queued"
    want=$(date -d 2004-04-04 +%s)
    [[ $(mtime "$mnt/slow.bin") == "$want" ]] || kf_fail "mount mtime while queued: $(mtime "$mnt/slow.bin")"
    grep -q "^mtime $want " "$WORK"/spool2/journal/*.job || kf_fail "the wanted mtime is not in the job's record"
    kf_wait_uploaded "$ROOT/slow.bin" "$WORK/slow.bin" 60 || kf_fail "slow.bin not uploaded"
    wait_mtime "$ROOT/slow.bin" "$want"
    [[ $KF_TRANSPORT != ftp ]] || want_mode "$ROOT/slow.bin" 604 -
    kf_unmount "$mnt"
}

kf_each_transport scenario
kf_log "ok"
