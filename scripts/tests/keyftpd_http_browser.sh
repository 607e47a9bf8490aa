#!/usr/bin/env bash
# keyftpd's upload page in a real browser: headless Chromium (Debian's
# chromium, driven by playwright-core from npm, installed by this test into
# a cache directory outside the repository) logs in, uploads a 32 MiB file
# through a proxy that cuts the connection after 12 MiB; the page retries
# by itself and must finish with the server copy byte-identical and only
# the missing part re-sent. Then an 8 MiB upload is interrupted by a page
# reload and finished by picking the file again. A screenshot of the page
# mid-upload goes to $KEYFS_SCREENSHOT when set (docs/ keeps one).
set -euo pipefail

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/clients.sh"
kf_trap_cleanup
kc_need chromium node npm python3 cmp
HERE=$(cd "$(dirname "$0")/.." && pwd)
NPMDIR=${KEYFS_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keyfs-tests/npm}
if [ ! -d "$NPMDIR/node_modules/playwright-core" ]; then
    echo "installing playwright-core into $NPMDIR"
    mkdir -p "$NPMDIR"
    npm install --silent --no-audit --no-fund --prefix "$NPMDIR" playwright-core ||
        { echo "cannot install playwright-core" >&2; exit 1; }
fi

kc_keyftpd --http 127.0.0.1:0
mkdir -p "$WORK/root/drop" "$WORK/profile"
PORT=$HPORT

# 6 MiB/s so that the page is seen mid-upload; one cut after 12 MiB.
python3 "$HERE/lib/cutproxy.py" --upstream "127.0.0.1:$PORT" --cut-after 12582912 \
    --rate 6291456 --stats "$WORK/proxy.stats" --max-seconds 220 >"$WORK/proxy.out" &
PROXY_PID=$!
kf_register pids "$PROXY_PID"
PPORT=""
for _ in $(seq 1 100); do
    PPORT=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$WORK/proxy.out" 2>/dev/null || true)
    [ -n "$PPORT" ] && break
    sleep 0.1
done
[ -n "$PPORT" ] || fail "proxy did not start"

head -c 33554432 /dev/urandom >"$WORK/big32.bin"
head -c 8388608 /dev/urandom >"$WORK/small8.bin"
SHOT=${KEYFS_SCREENSHOT:-$WORK/shot.png}
PW_MODULES="$NPMDIR/node_modules" timeout 200 node "$HERE/lib/browser_upload.js" \
    "http://127.0.0.1:$PPORT/drop/" tester "$KEYFTPD_PASSWORD" \
    "$WORK/big32.bin" "$WORK/small8.bin" "$SHOT" "$WORK/profile" >"$WORK/records.json" ||
    { cat "$WORK/records.json" >&2; fail "browser run"; }
cat "$WORK/records.json"

cmp "$WORK/big32.bin" "$WORK/root/drop/big32.bin" || fail "32 MiB upload differs"
cmp "$WORK/small8.bin" "$WORK/root/drop/small8.bin" || fail "8 MiB upload differs"
grep -q 'cuts=1' "$WORK/proxy.stats" || fail "the proxy did not cut: $(cat "$WORK/proxy.stats")"
[ -s "$SHOT" ] || fail "no screenshot"

# Only the missing part was re-sent: the stored parts of each file add up
# to exactly its size, and its last upload started where the server stood.
check() { # NAME SIZE
    local lines sum
    lines=$(grep "http: upload /drop/$1 " "$KEYFTPD_LOG" || true)
    echo "$lines" | grep -q 'clean=false' || fail "$1: never cut: $lines"
    sum=$(echo "$lines" | grep -o 'bytes=[0-9]*' | awk -F= '{s+=$2} END {print s+0}')
    [ "$sum" = "$2" ] || fail "$1: stored $sum bytes in all for $2: $lines"
    echo "$lines" | tail -n 1 | grep -q 'offset=[1-9]' || fail "$1: last upload from 0: $lines"
}
check big32.bin 33554432
check small8.bin 8388608
up=$(sed -n 's/^up=\([0-9]*\).*/\1/p' "$WORK/proxy.stats")
echo "proxy: $(cat "$WORK/proxy.stats") (files: $((33554432 + 8388608)) bytes)"
# A full re-send of either file would add at least 12 MiB or 1 MiB.
[ "$up" -lt $((33554432 + 8388608 + 1048576)) ] || fail "sent $up bytes for 40 MiB of files"
python3 - "$WORK/records.json" <<'EOF' || fail "page records"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(recs) == 2, recs
for r in recs:
    assert r["state"] == "done", r
    assert r["offsets"][-1] > 0, r
EOF
echo "keyftpd_http_browser: ok"
