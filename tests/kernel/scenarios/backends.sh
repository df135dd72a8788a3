# Scenarios of the backend shares that are not generic file system checks.

# A read-only backend (the tar share): print the tree as a user sees it (the host
# compares it with the archive's content), then try to change it.
sc_ro_tree() {
    cd "$MNT"
    find . -mindepth 1 | sort | while read -r p; do
        if [ -L "$p" ]; then
            echo "@@TREE L $p $(readlink "$p")"
        elif [ -d "$p" ]; then
            echo "@@TREE D $p $(stat -c '%a %u %g' "$p")"
        else
            echo "@@TREE F $p $(stat -c '%s %a %u %g %Y %h' "$p") $(md5sum <"$p" | cut -c1-32)"
        fi
    done
    expect_error "Read-only file system" touch new
    expect_error "Read-only file system" mkdir newdir
    expect_error "Read-only file system" rm README
    expect_error "Read-only file system" mv README README2
    expect_error "Read-only file system" chmod 600 README
    expect_error "Permission denied" as_user 1000 cat private/secret
    expect_eq "$(as_user 1234 cat private/secret)" "for uid 1234 only" "the owner reads its 0600 file"
    expect_eq "$(sh bin/tool)" tool "a script from the archive runs"
}

# The overlay share (a writable RAM upper over the tar archive): copy-up, whiteouts,
# opaque directories and merged listings, as Linux overlayfs behaves.
sc_ov_copy_up() {
    cd "$MNT"
    expect_eq "$(cat README)" "served from a gzip'd tar archive" "a lower file read through"
    ino=$(stat -c %i README)
    echo appended >>README
    expect_eq "$(tail -n 1 README)" appended "the appended line after copy-up"
    expect_eq "$(stat -c %i README)" "$ino" "the inode number after copy-up"
    expect_eq "$(head -n 1 README.hardlink)" "served from a gzip'd tar archive" \
        "the other hard link of a copied-up file keeps the lower data (overlayfs without index)"
    chmod 600 bin/tool
    expect_eq "$(stat -c %a bin/tool)" 600 "chmod of a lower file"
    sum=$(md5sum <many/file0001)
    mv many/file0001 many/renamed
    [ ! -e many/file0001 ] || fail "the old name of a renamed lower file is still there"
    expect_eq "$(md5sum <many/renamed)" "$sum" "a renamed lower file's content"
    rm many/file0002
    [ ! -e many/file0002 ] || fail "an unlinked lower file is still there"
    echo new >many/file0002
    expect_eq "$(cat many/file0002)" new "a file made over a whiteout"
    expect_eq "$(ls many | wc -l)" 300 "the merged listing has no duplicates"
    rm -r deep
    [ ! -e deep ] || fail "rm -r of a merged directory left it"
    mkdir deep
    expect_eq "$(ls -A deep | wc -l)" 0 "a directory made over a removed one is opaque"
    drop_caches
    expect_eq "$(tail -n 1 README)" appended "the copied-up file after dropping caches"
}
