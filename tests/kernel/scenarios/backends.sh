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
