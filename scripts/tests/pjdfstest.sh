#!/usr/bin/env bash
# pjdfstest (the POSIX conformance suite) inside a directory of a keyfs mount
# on keyftpd, as root, for the groups that apply to a filesystem over FTP.
# Every failure must be listed in tests/pjdfstest-expected.txt with its
# reason, and every listed test must still fail: a new failure, or a listed
# one that now passes, fails this test, so the list stays true (a reason
# starting with `flaky` marks a test that may go either way).
#
#   scripts/tests/pjdfstest.sh            check against the list
#   scripts/tests/pjdfstest.sh --update   rewrite the list from this run
#                                         (reasons kept for lines that stay,
#                                         `TODO reason` for new ones)
# KF_PJD_GROUPS="open rename" limits the run (and an update) to those groups;
# KF_PJD_RESULTS=FILE keeps every test's result line.
# time limit: 600s
set -euo pipefail
export LC_ALL=C # one collation for sort, comm and join
source "$(dirname "$0")/../lib/common.sh"
source "$KF_ROOT/scripts/lib/ext.sh"
kf_trap_cleanup

update=0
[[ ${1:-} == --update ]] && update=1
groups=(${KF_PJD_GROUPS:-open truncate ftruncate unlink mkdir rmdir rename utimensat})
list=$KF_ROOT/tests/pjdfstest-expected.txt
[[ -f $list || $update == 1 ]] || kf_fail "missing $list"

build=$(kf_ext_build pjdfstest)
command -v prove >/dev/null || kf_fail "prove (perl) is not installed"
((EUID == 0)) || kf_fail "pjdfstest needs root (it switches users)"

kf_setup_keyftpd
mnt=$WORK/mnt
# allow_other: the suite acts as other users too, as on any shared mount.
kf_mount "$URL" "$mnt" --spool "$WORK/spool" -o allow_other
out=$WORK/out
mkdir -p "$out"

# prove -v output -> one line per test: `GROUP/NN.t:N ok|fail MESSAGE`. A
# test the plan announced but the script never reached counts as failed.
tap_results() {
    awk -v g="$1" '
        function finish(  i) {
            if (file == "") return
            if (plan == 0) print g "/" file ":plan fail no plan (the script died)"
            for (i = 1; i <= plan; i++)
                if (!(i in seen)) print g "/" file ":" i " fail not run"
            delete seen; plan = 0
        }
        match($0, /[^\/ ]+\.t \.\./) {
            finish(); file = substr($0, RSTART, RLENGTH - 3); next
        }
        /^1\.\.[0-9]+/ { plan = substr($1, 4) + 0; next }
        /^(not )?ok [0-9]+/ {
            n = ($1 == "not") ? $3 : $2; seen[n] = 1
            st = ($1 == "not" && $0 !~ /# TODO/) ? "fail" : "ok"
            msg = $0; sub(/^(not )?ok [0-9]+( - )?/, "", msg)
            print g "/" file ":" n " " st " " msg
        }
        END { finish() }'
}

: >"$out/results"
for g in "${groups[@]}"; do
    [[ -d $build/tests/$g ]] || kf_fail "no pjdfstest group $g"
    dir=$mnt/pjd-$g
    mkdir "$dir" || kf_fail "mkdir $dir"
    start=$SECONDS
    (cd "$dir" && timeout -k 10 300 prove -v -r "$build/tests/$g") >"$out/$g.tap" 2>&1 || true
    tap_results "$g" <"$out/$g.tap" >"$out/$g.res"
    p=$(awk '$2 == "ok"' "$out/$g.res" | wc -l)
    f=$(awk '$2 == "fail"' "$out/$g.res" | wc -l)
    kf_log "$g: $p passed, $f failed ($((SECONDS - start))s)"
    cat "$out/$g.res" >>"$out/results"
done
kf_unmount "$mnt"
[[ -z ${KF_PJD_RESULTS:-} ]] || cp "$out/results" "$KF_PJD_RESULTS"

# This run's failures; the list's lines for the groups run (ID REASON).
awk '$2 == "fail" { print $1 }' "$out/results" | sort -u >"$out/failed"
group_re="^($(IFS='|'; echo "${groups[*]}"))/"
if [[ -f $list ]]; then
    grep -Ev '^[[:space:]]*(#|$)' "$list" >"$out/lines" || true
else
    : >"$out/lines"
fi
grep -E "$group_re" "$out/lines" | sort -k1,1 >"$out/mine" || true
awk '{ print $1 }' "$out/mine" | sort -u >"$out/listed"
# A reason starting with `flaky` marks a test that fails in some runs only.
awk '$2 == "flaky" { print $1 }' "$out/mine" | sort -u >"$out/flaky"

if ((update)); then
    # Reasons carry over; new failures get `TODO reason`; flaky lines stay
    # whether or not they failed this time; other groups' lines stay as is.
    {
        grep -E '^#' "$list" 2>/dev/null ||
            printf '# pjdfstest failures expected on a keyfs mount (scripts/tests/pjdfstest.sh).\n'
        {
            grep -Ev "$group_re" "$out/lines" || true
            sort -u "$out/failed" "$out/flaky" | join -a1 - "$out/mine" |
                awk '{ id = $1; sub(/^[^ ]+ ?/, ""); print id "  " ($0 == "" ? "TODO reason" : $0) }'
        } | sort -t: -k1,1 -k2,2n
    } >"$WORK/list.new"
    mv "$WORK/list.new" "$list"
    kf_log "wrote $list: $(grep -cv '^#' "$list") lines, $(grep -c '  TODO reason$' "$list" || true) without a reason"
    kf_log "flaky lines that passed this time: $(comm -23 "$out/flaky" "$out/failed" | wc -l)"
    exit 0
fi

new=$(comm -23 "$out/failed" "$out/listed")
fixed=$(comm -23 "$out/listed" "$out/failed" | comm -23 - "$out/flaky")
if [[ -n $new ]]; then
    kf_log "failures not in $list:"
    while read -r id; do
        grep -F "$id fail" "$out/results" | head -n1 >&2
    done <<<"$new"
fi
if [[ -n $fixed ]]; then
    kf_log "listed in $list but passing now (remove them, or run with --update):"
    printf '%s\n' "$fixed" >&2
fi
[[ -z $new && -z $fixed ]] ||
    kf_fail "$(grep -c . <<<"$new" || true) unexpected failures, $(grep -c . <<<"$fixed" || true) listed ones passing"
kf_log "ok: $(wc -l <"$out/failed") failures, all listed ($(comm -12 "$out/flaky" "$out/failed" | wc -l) of them flaky)"
