# Directories: deep trees, large trees removed with rm -rf, large listings, listing
# while another process creates and deletes entries.

# make_files DIR PREFIX FROM TO: create empty files DIR/PREFIX.FROM .. PREFIX.(TO-1)
make_files() {
    i=$3
    while [ "$i" -lt "$4" ]; do
        : >"$1/$2.$i"
        i=$((i + 1))
    done
}

# make_files_parallel DIR PREFIX COUNT: four creators at once (keeps several requests
# in flight, and the wall time affordable under TCG).
make_slice() {
    make_files "$MF_DIR" "$MF_PREFIX" $(($1 * MF_COUNT / 4)) $((($1 + 1) * MF_COUNT / 4))
}
make_files_parallel() {
    MF_DIR=$1 MF_PREFIX=$2 MF_COUNT=$3
    parallel 4 make_slice
}

sc_mkdir_deep() {
    path=deep
    i=0
    while [ $i -lt 40 ]; do
        path=$path/level$i
        i=$((i + 1))
    done
    mkdir -p "$path"
    echo bottom >"$path/file"
    drop_caches
    expect_eq "$(cat "$path/file")" bottom "file at depth 40"
    expect_eq "$(find deep -type d | wc -l)" 41 "directories in the deep tree"
    mkdir -p "$path"  # again: all exist
    rm -rf deep
    [ ! -e deep ] || fail "deep tree still there after rm -rf"
}

make_tree_slice() {
    d=0
    while [ $d -lt 10 ]; do
        dir=tree/d$(($1 * 10 + d))
        mkdir "$dir"
        make_files "$dir" f 0 99
        d=$((d + 1))
    done
}

# 50 directories of 99 files: 5,000 entries
sc_rm_rf_5000() {
    mkdir tree
    parallel 5 make_tree_slice
    step "created"
    expect_eq "$(find tree | wc -l)" 5001 "entries in the tree (with its root)"
    step "counted"
    rm -rf tree
    step "removed"
    [ ! -e tree ] || fail "tree still there after rm -rf"
    expect_eq "$(count_entries .)" 0 "entries left in the work directory"
    drop_caches
    [ ! -e tree ] || fail "tree back after dropping caches"
}

sc_ls_10000() {
    mkdir big
    make_files_parallel big e 10000
    drop_caches
    ls -ln big >/tmp/ls.$$
    total=$(grep -c '' /tmp/ls.$$)
    # "total N" line first, then one line per entry
    expect_eq "$total" 10001 "lines of ls -ln"
    expect_eq "$(grep -c '^-rw-r--r-- *1 *0 *0 *0 ' /tmp/ls.$$)" 10000 \
        "entries listed with mode, links, owner, group and size"
    awk 'NR > 1 { print $NF }' /tmp/ls.$$ | sort >/tmp/names.$$
    dups=$(uniq -d /tmp/names.$$ | head -5)
    [ -z "$dups" ] || fail "entries listed twice: $dups"
    i=0
    while [ $i -lt 10000 ]; do
        echo "e.$i"
        i=$((i + 1))
    done | sort >/tmp/want.$$
    if ! cmp -s /tmp/names.$$ /tmp/want.$$; then
        diff /tmp/want.$$ /tmp/names.$$ | head -20
        fail "the listing is not e.0 .. e.9999 exactly once"
    fi
    expect_eq "$(count_entries big)" 10000 "readdir count"
    rm -f /tmp/ls.$$ /tmp/names.$$ /tmp/want.$$
}

churn() {
    i=0
    while [ $i -lt "$CHURN_ROUNDS" ]; do
        : >"d/churn.$1.$i"
        [ $i -ge 5 ] && rm -f "d/churn.$1.$((i - 5))"
        i=$((i + 1))
    done
}

# 400 entries that exist throughout; two processes create and delete others meanwhile.
sc_readdir_concurrent() {
    mkdir d
    MF_DIR=d MF_PREFIX=keep MF_COUNT=400
    parallel 4 make_slice
    CHURN_ROUNDS=60
    parallel 2 churn >/dev/null 2>&1 &
    churner=$!
    rounds=0
    while kill -0 $churner 2>/dev/null || [ $rounds -lt 2 ]; do
        # readdir only (ls would also stat each name, racing with the deletions)
        perl -e 'opendir(D, "d") or die "opendir: $!\n"; my @n = readdir D;
                 closedir(D) or die "closedir: $!\n"; print "$_\n" for @n' >/tmp/rd.$$ ||
            fail "readdir failed while entries change"
        dups=$(sort /tmp/rd.$$ | uniq -d | head -5)
        [ -z "$dups" ] || fail "round $rounds: entries listed twice: $dups"
        keep=$(grep -c '^keep\.' /tmp/rd.$$ || true)
        expect_eq "$keep" 400 "round $rounds: stable entries listed"
        rounds=$((rounds + 1))
    done
    wait $churner || fail "the churning processes failed"
    note "$rounds listings while entries changed"
    rm -f /tmp/rd.$$
}
