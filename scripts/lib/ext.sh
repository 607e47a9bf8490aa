# shellcheck shell=bash
# Third-party file-system suites (pjdfstest, fsx) for scripts/tests/*.sh.
#
# Their sources live outside the repository, in `../shared/ext` next to the
# clone (read-only in CI); KF_EXT names another place. Each suite is built
# once per source hash into /tmp/keyfs-ext-cache/NAME-HASH (outside the
# repository, kept between runs so repeated local runs skip the build).
# Source after common.sh.

KF_EXT_CACHE=${KF_EXT_CACHE:-/tmp/keyfs-ext-cache}

# kf_ext_dir: prints the directory holding pjdfstest/ and fsx/, or fails the
# test (a missing suite is a failure, never a silent pass).
kf_ext_dir() {
    local d
    for d in "${KF_EXT:-}" "$KF_ROOT/../shared/ext" "$KF_ROOT/../../shared/ext"; do
        if [[ -n $d && -d $d/pjdfstest && -d $d/fsx ]]; then
            realpath "$d"
            return 0
        fi
    done
    kf_fail "third-party suites not found: expected ../shared/ext next to the repository (or KF_EXT=DIR)"
}

# kf_ext_hash DIR: one hash of every file's path and content under DIR.
kf_ext_hash() {
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
        sha256sum | cut -c1-16
}

# kf_ext_build NAME: builds suite NAME (pjdfstest or fsx) unless a build of
# the same sources is cached, and prints the build directory (it holds the
# binary, and for pjdfstest its tests/).
kf_ext_build() {
    local name=$1 ext src hash out tmp lock
    ext=$(kf_ext_dir) || exit 1
    src=$ext/$name
    [[ -d $src ]] || kf_fail "no $name in $ext"
    hash=$(kf_ext_hash "$src") || kf_fail "cannot hash $src"
    out=$KF_EXT_CACHE/$name-$hash
    mkdir -p "$KF_EXT_CACHE"
    # One builder at a time; the finished build appears by one rename.
    exec {lock}>"$KF_EXT_CACHE/.lock"
    flock "$lock"
    if [[ ! -x $out/$name ]]; then
        kf_log "building $name from $src"
        tmp=$(mktemp -d "$KF_EXT_CACHE/.build-$name.XXXXXX")
        cp -r "$src/." "$tmp/" && chmod -R u+w "$tmp" &&
            case $name in
                pjdfstest) (cd "$tmp" && autoreconf -ifs && ./configure && make pjdfstest) >"$tmp/build.log" 2>&1 ;;
                fsx) (cd "$tmp" && gcc -O2 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I. -o fsx fsx.c) >"$tmp/build.log" 2>&1 ;;
                *) false ;;
            esac ||
            { tail -20 "$tmp/build.log" >&2; rm -rf "$tmp"; exec {lock}>&-; kf_fail "build of $name failed"; }
        rm -rf "$out"
        mv "$tmp" "$out"
    fi
    exec {lock}>&-
    printf '%s\n' "$out"
}
