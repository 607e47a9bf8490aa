#!/usr/bin/env bash
# keyftpd's HTTP face next to its FTP face and rclone `serve webdav`, all
# with curl on 127.0.0.1: upload and download of one file (default 1 GiB),
# median of N interleaved runs, and keyftpd's peak RSS while 4 HTTP uploads
# run at once. Not yet a row of scripts/bench (its report format); prints
# a small table. Usage: scripts/bench.d/http.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZE=${1:-1024} RUNS=${2:-3}
KEYFTPD=${KEYFTPD:-target/release/keyftpd}
[ -x "$KEYFTPD" ] || { echo "build it first: cargo build --release --bin keyftpd" >&2; exit 2; }
for t in curl rclone python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }; done

WORK=$(mktemp -d /var/tmp/keyfs-httpbench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/root" "$WORK/rroot"
head -c $((SIZE << 20)) /dev/urandom >"$WORK/src.bin"

export KEYFTPD_PASSWORD=bench
"$KEYFTPD" --root "$WORK/root" --listen 127.0.0.1:0 --http 127.0.0.1:0 --user b \
    >"$WORK/out" 2>"$WORK/log" &
KPID=$!
PIDS+=("$KPID")
for _ in $(seq 100); do grep -q '^http listening' "$WORK/out" 2>/dev/null && break; sleep 0.1; done
HP=$(sed -n 's/^http listening on //p' "$WORK/out")
FP=$(sed -n 's/^listening on //p' "$WORK/out")
RP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rclone --config /dev/null serve webdav "$WORK/rroot" --addr "127.0.0.1:$RP" --user b --pass bench \
    >/dev/null 2>"$WORK/rclone.log" &
PIDS+=("$!")
for _ in $(seq 100); do curl -s -o /dev/null -u b:bench "http://127.0.0.1:$RP/" && break; sleep 0.1; done

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
C=(curl -sS --fail --max-time 600 -u b:bench)
declare -A R
for i in $(seq "$RUNS"); do
    R[ftp_up]+="$(t "${C[@]}" -T "$WORK/src.bin" "ftp://127.0.0.1:${FP##*:}/f$i.bin") "
    R[http_up]+="$(t "${C[@]}" -T "$WORK/src.bin" "http://$HP/h$i.bin") "
    R[http_post]+="$(t "${C[@]}" -F offset=0 -F "file=@$WORK/src.bin" "http://$HP/p$i.bin") "
    R[rclone_up]+="$(t "${C[@]}" -T "$WORK/src.bin" "http://127.0.0.1:$RP/r$i.bin") "
    R[ftp_down]+="$(t "${C[@]}" -o /dev/null "ftp://127.0.0.1:${FP##*:}/f$i.bin") "
    R[http_down]+="$(t "${C[@]}" -o /dev/null "http://$HP/h$i.bin") "
    R[rclone_down]+="$(t "${C[@]}" -o /dev/null "http://127.0.0.1:$RP/r$i.bin") "
    rm -f "$WORK"/root/*.bin "$WORK"/rroot/*.bin
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-12s %8s %9s\n' row seconds MiB/s
for k in ftp_up http_up http_post rclone_up ftp_down http_down rclone_down; do
    m=$(echo "${R[$k]}" | med)
    printf '%-12s %8.2f %9.0f\n' "$k" "$m" "$(echo "$SIZE / $m" | bc -l)"
done

# Peak RSS with 4 concurrent HTTP uploads (VmHWM of a fresh server).
kill "$KPID"; wait "$KPID" 2>/dev/null || true
"$KEYFTPD" --root "$WORK/root" --http 127.0.0.1:0 --user b >"$WORK/out2" 2>"$WORK/log2" &
KPID=$!
PIDS+=("$KPID")
for _ in $(seq 100); do grep -q '^http listening' "$WORK/out2" 2>/dev/null && break; sleep 0.1; done
HP=$(sed -n 's/^http listening on //p' "$WORK/out2")
idle=$(awk '/VmHWM/ {print $2}' "/proc/$KPID/status")
ups=()
for i in 1 2 3 4; do "${C[@]}" -T "$WORK/src.bin" "http://$HP/c$i.bin" >/dev/null & ups+=("$!"); done
for p in "${ups[@]}"; do wait "$p"; done
peak=$(awk '/VmHWM/ {print $2}' "/proc/$KPID/status")
echo "keyftpd VmHWM: ${idle} KiB idle, ${peak} KiB after 4 concurrent ${SIZE} MiB HTTP uploads"
