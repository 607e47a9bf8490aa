#!/usr/bin/env bash
# keyftpd's WebDAV face against cadaver (Debian's command-line WebDAV
# client, on neon): upload, list, MKCOL, MOVE into the new collection,
# download, DELETE; names with a space, `#` and `%`. Every file is checked
# by content. cadaver reads its commands from standard input and its login
# from ~/.netrc (a HOME of the test's own).
set -euo pipefail

source "$(dirname "$0")/../lib/common.sh"
source "$(dirname "$0")/../lib/clients.sh"
kf_trap_cleanup
kc_need cadaver cmp
kc_keyftpd --http 127.0.0.1:0

export HOME=$WORK/home
mkdir -p "$HOME"
printf 'machine 127.0.0.1\nlogin tester\npassword %s\n' "$KEYFTPD_PASSWORD" >"$HOME/.netrc"
chmod 600 "$HOME/.netrc"

cd "$WORK/local"
head -c 3000000 /dev/urandom >"up #1 100%.bin"
head -c 1000 /dev/urandom >gone.bin
out=$(timeout 60 cadaver "http://127.0.0.1:$HPORT/" 2>&1 <<'CMDS'
put "up #1 100%.bin"
put gone.bin
mkcol "new dir"
move "up #1 100%.bin" "new dir/moved #1.bin"
get "new dir/moved #1.bin" back.bin
delete gone.bin
ls "new dir"
quit
CMDS
) || fail "cadaver exited $?: $out"
echo "$out"
if echo "$out" | grep -qiE "failed|error"; then fail "cadaver reported a failure"; fi
cmp "up #1 100%.bin" "$ROOT/new dir/moved #1.bin" || fail "the moved upload differs on the server"
cmp "up #1 100%.bin" back.bin || fail "the download differs"
[[ ! -e "$ROOT/up #1 100%.bin" ]] || fail "MOVE left the old name"
[[ ! -e "$ROOT/gone.bin" ]] || fail "DELETE left the file"
echo "$out" | grep -q "moved #1.bin" || fail "the listing does not show the moved file"
echo "keyftpd_http_cadaver: ok"
