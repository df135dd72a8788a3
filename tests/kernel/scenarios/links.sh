# Links and renames: hard links, symlinks (relative, absolute, dangling, to directories),
# readlink; rename over a file, over an empty directory, across directories, and a
# directory into its own subtree.

sc_hardlink() {
    echo one >a
    ln a b
    mkdir sub
    ln a sub/c
    drop_caches
    expect_eq "$(stat -c %i b)" "$(stat -c %i a)" "inode of the hard link"
    expect_eq "$(stat -c %i sub/c)" "$(stat -c %i a)" "inode of the link in a subdirectory"
    expect_eq "$(stat -c %h a)" 3 "link count with three names"
    echo two >>b
    drop_caches
    expect_eq "$(cat a)" "$(printf 'one\ntwo')" "write through one name read through another"
    rm a
    drop_caches
    expect_eq "$(stat -c %h b)" 2 "link count after removing one name"
    expect_eq "$(cat sub/c)" "$(printf 'one\ntwo')" "content after removing one name"
    rm sub/c
    expect_eq "$(stat -c %h b)" 1 "link count with one name left"
    mkdir dir
    expect_error "Operation not permitted" ln dir dirlink
}

sc_symlinks() {
    mkdir -p target/inner
    echo payload >target/file
    ln -s target/file rel
    ln -s "$W/target/file" abs
    ln -s does-not-exist dangling
    ln -s target dirlink
    ln -s ../file target/inner/up
    drop_caches
    expect_eq "$(readlink rel)" target/file "readlink of a relative link"
    expect_eq "$(readlink abs)" "$W/target/file" "readlink of an absolute link"
    expect_eq "$(readlink dangling)" does-not-exist "readlink of a dangling link"
    expect_eq "$(cat rel)" payload "read through a relative link"
    expect_eq "$(cat abs)" payload "read through an absolute link"
    expect_eq "$(cat target/inner/up)" payload "read through a link with .."
    [ -L dangling ] || fail "dangling link is not a symlink"
    [ ! -e dangling ] || fail "dangling link resolves"
    expect_error "No such file or directory" cat dangling
    [ -d dirlink ] || fail "link to a directory is not seen as one"
    expect_eq "$(ls dirlink | tr '\n' ' ')" "file inner " "listing through a directory link"
    expect_eq "$(cd dirlink/inner && cat ../file)" payload "cd through a directory link"
    expect_eq "$(stat -c %F rel)" "symbolic link" "lstat type of a link"
    expect_eq "$(stat -L -c %F rel)" "regular file" "stat type through a link"
    expect_eq "$(stat -c %s rel)" 11 "size of a link is its target's length"
    echo created >dangling
    expect_eq "$(cat does-not-exist)" created "writing through a dangling link creates its target"
    rm dirlink
    [ -d target ] || fail "removing a directory link removed the directory"
}

sc_rename_over_file() {
    echo new >a
    echo old >b
    ino=$(stat -c %i a)
    mv -f a b
    drop_caches
    [ ! -e a ] || fail "the source still exists"
    expect_eq "$(cat b)" new "content of the target"
    expect_eq "$(stat -c %i b)" "$ino" "the target has the source's inode"
    expect_eq "$(count_entries .)" 1 "entries after rename over a file"
}

sc_rename_over_empty_dir() {
    mkdir src dst full
    echo x >src/inside
    echo y >full/occupant
    perl -e 'rename("src", "dst") or die "rename over an empty directory: $!\n"'
    drop_caches
    [ ! -e src ] || fail "the source directory still exists"
    expect_eq "$(cat dst/inside)" x "content of the renamed directory"
    out=$(perl -e 'rename("dst", "full") and die "succeeded\n"; print "$!\n"')
    expect_eq "$out" "Directory not empty" "rename over a non-empty directory"
    echo f >file
    out=$(perl -e 'rename("file", "full") and die "succeeded\n"; print "$!\n"')
    expect_eq "$out" "Is a directory" "rename of a file over a directory"
    out=$(perl -e 'rename("full", "file") and die "succeeded\n"; print "$!\n"')
    expect_eq "$out" "Not a directory" "rename of a directory over a file"
}

sc_rename_across_dirs() {
    mkdir -p a b/c
    echo f >a/file
    mkdir a/tree
    echo deep >a/tree/leaf
    mv a/file b/c/moved
    mv a/tree b/tree
    drop_caches
    expect_eq "$(cat b/c/moved)" f "file moved across directories"
    expect_eq "$(cat b/tree/leaf)" deep "content of a directory moved across directories"
    expect_eq "$(cd b/tree/.. && pwd)" "$W/b" "parent of the moved directory"
    expect_eq "$(count_entries a)" 0 "entries left in the source"
    expect_eq "$(stat -c %h b)" 4 "link count of the new parent (., .., c, tree)"
    expect_eq "$(stat -c %h a)" 2 "link count of the old parent"
}

sc_rename_into_subtree() {
    mkdir -p p/q/r
    out=$(perl -e 'rename("p", "p/q/r/p") and die "succeeded\n"; print "$!\n"')
    expect_eq "$out" "Invalid argument" "rename of a directory into its own subtree"
    [ -d p/q/r ] || fail "the tree changed"
    [ ! -e p/q/r/p ] || fail "the directory moved into itself"
}
