# scripts/bench.d/doc.sh: the report's blocks, sourced by scripts/bench.
# Each part of docs/BENCHMARKS.md sits between `<!-- bench:NAME -->` and
# `<!-- /bench:NAME -->` and says which run it comes from. A run with
# --only writes the blocks of its sections into the existing report and
# keeps the others (the samples table is merged row by row), so a section
# can be measured again without measuring everything. Chart bars are
# `<!-- chart: "label" value target -->` lines inside the blocks, so the
# chart is drawn from every block of the merged report.

# block NAME: starts a block with its provenance line (end it with endblock).
block() {
    echo "<!-- bench:$1 -->"
    [[ $1 == head || $1 == commands || $1 == analysis ]] && return 0
    if [[ $1 == samples ]]; then
        echo "*Each row is from the run of its section's block; with \`--only\`, the rows of the sections not run are kept from earlier runs.*"
        echo
        return 0
    fi
    echo "*From the run of $RUN_DATE at $RUN_COMMIT ($profile build, $(numfmt --to=iec "$bytes") file, $runs runs$( ((smoke)) && echo ', SMOKE: meaningless'); \`scripts/bench${RUN_ARGS}\`).*"
    echo
}
endblock() { echo "<!-- /bench:$1 -->"; }

# chart_line LABEL VALUE TARGET: one bar (speed or memory of keyfs relative
# to its baseline; higher is better) and its target mark (NaN: none).
chart_line() {
    local v=$2 t=$3
    [[ $v == - || -z $v ]] && v=NaN
    [[ $t == - || -z $t ]] && t=NaN
    echo "<!-- chart: \"$1\" $v $t -->"
}

# doc_split DOC DIR: one file per block (DIR/NNN.NAME) and per run of lines
# outside blocks (DIR/NNN.-); prints the names in order.
doc_split() {
    mkdir -p "$2"
    awk -v dir="$2" '
        function open_part(name) { n++; f = sprintf("%s/%03d.%s", dir, n, name); print f }
        /^<!-- bench:[a-z0-9_]+ -->$/ {
            name = $0; sub(/^<!-- bench:/, "", name); sub(/ -->$/, "", name)
            if (f != "") close(f)
            open_part(name); inblock = 1
            print >> f; next
        }
        /^<!-- \/bench:[a-z0-9_]+ -->$/ && inblock {
            print >> f; close(f); f = ""; inblock = 0; next
        }
        {
            if (f == "") open_part("-")
            print >> f
        }' "$1"
}

# doc_merge_samples OLD_PART NEW_PART: the new samples block, its table
# holding the old rows that this run did not measure.
doc_merge_samples() {
    local rows
    rows=$( { grep -E '^\| [a-z0-9_]+ \| ' "$2"; grep -E '^\| [a-z0-9_]+ \| ' "$1" | grep -v '^| row |'; } |
        grep -v '^| row |' | awk -F' [|] ' '!seen[$1]++' | sort)
    awk -v rows="$rows" '
        /^\| [a-z0-9_]+ \| / && !/^\| row \|/ { if (!done) { print rows; done = 1 } next }
        { print }' "$2"
}

# doc_merge OLD NEW OUT: OLD with NEW's blocks in place of its own (blocks
# OLD lacks go before its samples); OUT = NEW when OLD has no blocks.
doc_merge() {
    local old=$1 new=$2 out=$3 d name p q used=" "
    if [[ ! -f $old ]] || ! grep -q '^<!-- bench:' "$old"; then
        cp "$new" "$out"
        return 0
    fi
    d=$(mktemp -d "$BW/merge.XXXXXX")
    declare -A NEWP=()
    local neworder=()
    while read -r p; do
        name=${p##*/}; name=${name#*.}
        [[ $name == - ]] && continue
        NEWP[$name]=$p
        neworder+=("$name")
    done < <(doc_split "$new" "$d/new")
    {
        while read -r p; do
            name=${p##*/}; name=${name#*.}
            if [[ $name == samples ]]; then
                for q in "${neworder[@]}"; do
                    [[ $q == samples || $used == *" $q "* ]] && continue
                    grep -q "^<!-- bench:$q -->" "$old" && continue
                    cat "${NEWP[$q]}"; echo; used+="$q "
                done
            fi
            if [[ -n ${NEWP[$name]:-} ]]; then
                if [[ $name == samples ]]; then doc_merge_samples "$p" "${NEWP[$name]}"; else cat "${NEWP[$name]}"; fi
                used+="$name "
            else
                cat "$p"
            fi
        done < <(doc_split "$old" "$d/old")
        for q in "${neworder[@]}"; do
            [[ $used == *" $q "* ]] || { echo; cat "${NEWP[$q]}"; }
        done
    } >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$d"
}

# doc_chart DOC PNG: the bar chart of every chart line in DOC.
doc_chart() {
    local dat=$BW/ratios.dat
    sed -n 's/^<!-- chart: \(.*\) -->$/\1/p' "$1" >"$dat"
    [[ -s $dat ]] || return 0
    local n
    n=$(wc -l <"$dat")
    if timeout 60 gnuplot -e "
        set terminal pngcairo size $((300 + n * 85)),600 font 'sans,10';
        set output '$2';
        set title 'keyfs and keyftpd relative to the alternatives, each bar from one run (higher is better; bar above its mark = target met)$( ((smoke)) && echo ' [SMOKE RUN: meaningless]')';
        set style data histograms; set style fill solid 0.8 border -1; set boxwidth 0.6;
        set logscale y 2; set yrange [0.0625:32]; set ytics ('1/16' 0.0625, '1/8' 0.125, '1/4' 0.25, '1/2' 0.5, '1' 1, '2' 2, '4' 4, '8' 8, '16' 16, '32' 32);
        set grid ytics; set ylabel 'speed (or memory) / baseline';
        set xtics nomirror font 'sans,8'; set key top right; set bmargin 5;
        plot '$dat' using 0:2:xtic(1) with boxes lc rgb '#3b7dd8' title 'median ratio',
             '' using 0:3 with points pt 7 ps 1.6 lc rgb '#d83b3b' title 'target',
             '' using 0:2:(sprintf('%.2f', \$2)) with labels offset 0,0.8 notitle,
             1 with lines lc rgb '#555555' dt 2 notitle
    " 2>"$BW/gnuplot.err"; then
        echo "chart: $2"
    else
        cat "$BW/gnuplot.err" >&2
        kf_fail "gnuplot failed"
    fi
}
