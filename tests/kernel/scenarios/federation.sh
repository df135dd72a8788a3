# Scenarios of the imported mount (/imp: the RAM disk of another server, through the
# 9p backend) and of the ext2 image stored there (/inner: ext2:@/imp/inner.img); the
# host starts that server and seeds it (import_store.py).

# The import: the back server's file, and writes and renames that reach it.
sc_fed_import() {
    expect_eq "$(cat "$MNT/hello.txt")" "served by the back server" "the back server's seed file"
    dd if=/dev/urandom of=data bs=64k count=40 2>/dev/null
    sum=$(md5 data)
    mkdir sub
    mv data sub/moved
    [ ! -e data ] || fail "the old name is still there after a rename"
    drop_caches
    expect_eq "$(md5 sub/moved)" "$sum" "a renamed file read back from the back server"
    expect_eq "$(size_of sub/moved)" 2621440 "its size"
    ino=$(stat -c %i sub/moved)
    mv sub/moved sub/again
    expect_eq "$(stat -c %i sub/again)" "$ino" "the inode number across a rename"
    expect_eq "$(ls sub)" again "the directory after two renames"
}

# rename_errno FROM TO: rename(2)'s error message ("succeeded" if it did not fail).
rename_errno() {
    perl -e 'rename($ARGV[0], $ARGV[1]) and print "succeeded\n" and exit; print "$!\n"' "$1" "$2"
}

# Two mounts of one server (/imp and /pt) in one v9fs mount: the kernel sends the
# rename, and the server answers EXDEV as Linux does across mounts; mv then copies.
sc_fed_exdev() {
    other=${MNT%/*}/pt/$NAME.fed_exdev
    mkdir "$other"
    echo across >f
    expect_eq "$(rename_errno f "$other/f")" "Invalid cross-device link" \
        "rename from the import to the passthrough mount"
    out=$(perl -e 'link($ARGV[0], $ARGV[1]) and print "succeeded\n" and exit; print "$!\n"' \
        f "$other/f")
    expect_eq "$out" "Invalid cross-device link" "a hard link across the two mounts"
    echo back >"$other/g"
    expect_eq "$(rename_errno "$other/g" g)" "Invalid cross-device link" \
        "rename from the passthrough mount to the import"
    mv f "$other/f"
    expect_eq "$(cat "$other/f")" across "mv's copy on the other mount"
    [ ! -e f ] || fail "mv across mounts left its source"
    rm -r "$other"
}

# The ext2 image that is a file of the import: a file system of its own, and its
# container is held in place while it is served (vfs/image_claims.py).
sc_fed_image() {
    expect_eq "$(stat -f -c %t "$MNT")" ef53 "statfs type of the image's mount (ext2)"
    dd if=/dev/urandom of=data bs=4k count=300 2>/dev/null
    sum=$(md5 data)
    mkdir d
    mv data d/moved
    drop_caches
    expect_eq "$(md5 d/moved)" "$sum" "a file of the image after a rename"
    expect_eq "$(rename_errno d/moved "${MNT%/*}/imp/moved")" "Invalid cross-device link" \
        "rename from the image to the import that holds it"
    container=${MNT%/*}/imp/inner.img
    expect_eq "$(size_of "$container")" 16777216 "the container file's size"
    expect_error "busy" rm "$container"
    expect_error "busy" mv "$container" "${MNT%/*}/imp/elsewhere.img"
    expect_error "Text file busy" sh -c ": >>'$container'"
    expect_eq "$(size_of "$container")" 16777216 "the container after a refused open for writing"
    [ -f "$container" ] || fail "the container is gone"
}
