#!/usr/bin/env bash
# A real packet-dropping outage (issue 13), over ftp:// and http://.
# keyftpd runs in a network namespace of this test, behind a veth pair
# shaped to 2 MB/s (tbf). Once 8 MiB of a 24 MiB upload are on the server,
# both ends drop (tbf at 1 kbit/s with no queue) for KF_DROP seconds (45),
# then the shaping comes back. Unlike ftpfault's hold, nothing tells either
# end: keyfs drops its silent connection after 15 s and keeps trying to
# connect, and its close reaches the server only through TCP's
# retransmissions. (When the server still holds the old upload then, the
# resume takes it over: tests/server_http_takeover.rs and the forgetting
# outage of keyfs_outage_recovery test that deterministically.) Bound: from
# the link's return to the verified upload, the rest of the file at 2 MB/s
# plus 5 s. The server's copy is byte-identical.
# time limit: 360s
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
kf_trap_cleanup
for t in ip tc; do command -v "$t" >/dev/null || kf_fail "missing $t (iproute2)"; done
drop_s=${KF_DROP:-45}

NS=kfdrop$$ A=kfa$$ B=kfb$$ NET=10.213.77
SERVER=$NET.2
net_down() {
    ip link del "$A" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
}
trap 'net_down; kf_cleanup; [[ ${KF_STATE_OWNED:-0} == 1 ]] && rm -rf "$KF_STATE"' EXIT
ip netns add "$NS"
ip link add "$A" type veth peer name "$B"
ip link set "$B" netns "$NS"
ip addr add "$NET.1/24" dev "$A"
ip link set "$A" up
ip netns exec "$NS" ip addr add "$SERVER/24" dev "$B"
ip netns exec "$NS" ip link set "$B" up
ip netns exec "$NS" ip link set lo up
# Fixed neighbours: an outage must not turn into an ARP failure.
ip neigh replace "$SERVER" lladdr "$(ip netns exec "$NS" cat "/sys/class/net/$B/address")" dev "$A" nud permanent
ip netns exec "$NS" ip neigh replace "$NET.1" lladdr "$(cat "/sys/class/net/$A/address")" dev "$B" nud permanent
both() { tc qdisc replace dev "$A" root "$@" && ip netns exec "$NS" tc qdisc replace dev "$B" root "$@"; }
shape() { both tbf rate 16mbit burst 64kb latency 50ms; }
cut() { both tbf rate 1kbit burst 1 limit 1; }

scenario() {
    local size=$((24 << 20)) at=$((8 << 20)) mnt back_ms done_ms ms bound out port
    kf_work_dir
    mnt=$WORK/mnt
    shape
    out=$(kf_tmpdir)
    ip netns exec "$NS" env KEYFTPD_PASSWORD="$KEYFS_PASSWORD" RUST_LOG=info \
        "$KF_BIN/keyftpd" --root "$ROOT" --listen "$SERVER:0" --http "$SERVER:0" --user "$FTP_USER" \
        </dev/null >"$out/out" 2>"$out/err" &
    kf_register pids "$!"
    for _ in $(seq 1 100); do
        grep -q '^http listening' "$out/out" 2>/dev/null && break
        sleep 0.1
    done
    if [[ $KF_TRANSPORT == ftp ]]; then
        port=$(sed -n "s/^listening on $SERVER:\([0-9]*\)$/\1/p" "$out/out")
    else
        port=$(sed -n "s/^http listening on $SERVER:\([0-9]*\)$/\1/p" "$out/out")
    fi
    [[ -n $port ]] || { cat "$out/err" >&2; kf_fail "keyftpd did not start in the namespace"; }
    kf_mount "$KF_TRANSPORT://$FTP_USER@$SERVER:$port/" "$mnt" --spool "$WORK/spool"
    kf_mkfile "$WORK/a.bin" "$size"
    cp "$WORK/a.bin" "$mnt/a.bin"
    for _ in $(seq 1 600); do
        (($(kf_size "$ROOT/a.bin") >= at)) && break
        sleep 0.05
    done
    (($(kf_size "$ROOT/a.bin") >= at)) || kf_fail "the upload never reached $at bytes"
    cut
    kf_log "link down at $(kf_size "$ROOT/a.bin") bytes, for ${drop_s}s"
    sleep "$drop_s"
    shape
    back_ms=$(date +%s%3N)
    "$KF_BIN/keyfs" wait "$mnt" --timeout 240 || kf_fail "keyfs wait: exit $?"
    done_ms=$(date +%s%3N)
    ms=$((done_ms - back_ms))
    # The rest (at most size - at) at 2,000,000 B/s, plus 5 s.
    bound=$(((size - at) / 2000 + 5000))
    kf_log "verified $ms ms after the link came back (bound $bound ms)"
    grep -E "takeover|upload /a.bin|STOR /a.bin" "$out/err" | tail -4 >&2 || true
    [[ $(kf_sha "$ROOT/a.bin") == $(kf_sha "$WORK/a.bin") ]] || kf_fail "a.bin differs on the server"
    kf_assert_le "$ms" "$bound" "time from the link's return to the verified upload"
    kf_unmount "$mnt"
}

kf_each_transport scenario ftp http
kf_log "ok"
