# Permissions: chmod/chown/utimes seen by stat; a second uid against 0600 and 0644
# files of the first; setgid directories; the errnos of refused requests.

sc_chmod_chown_utimes() {
    echo x >f
    mkdir d
    for mode in 751 600 4755 2711 1777 0; do
        chmod "$mode" f
        drop_caches
        expect_eq "$(stat -c %a f)" "$mode" "mode after chmod $mode"
    done
    chmod 1777 d
    expect_eq "$(stat -c %a d)" 1777 "directory mode after chmod 1777"
    chown 1000:1234 f
    drop_caches
    expect_eq "$(stat -c %u:%g f)" 1000:1234 "owner after chown"
    chown 1001 f
    expect_eq "$(stat -c %u:%g f)" 1001:1234 "owner after chown of the uid only"
    chgrp 1001 f
    expect_eq "$(stat -c %u:%g f)" 1001:1001 "owner after chgrp"
    perl -e 'utime(1000000000, 1234567890, "f") or die "utime: $!\n"'
    drop_caches
    expect_eq "$(stat -c %X:%Y f)" 1000000000:1234567890 "atime:mtime after utime"
    touch -d "2001-02-03 04:05:06" f
    expect_eq "$(date -d @"$(stat -c %Y f)" '+%Y-%m-%d %H:%M:%S')" "2001-02-03 04:05:06" \
        "mtime after touch -d"
    before=$(date +%s)
    touch f
    now=$(stat -c %Y f)
    [ "$now" -ge $((before - 5)) ] || fail "touch without a time set mtime to $now (< $before)"
    echo more >>f
    ctime=$(stat -c %Z f)
    [ "$ctime" -ge $((before - 5)) ] || fail "ctime $ctime not updated by the write"
}

# A second uid cannot read a 0600 file of the first, and can read a 0644 one.
sc_access_uids() {
    chmod 0777 .
    as_user 1000 sh -c 'echo secret >private && chmod 600 private &&
                        echo public >public && chmod 644 public && mkdir mine'
    drop_caches
    expect_eq "$(stat -c %u:%a private)" 1000:600 "owner and mode of the private file"
    expect_eq "$(as_user 1000 cat private)" secret "the owner reads its 0600 file"
    expect_eq "$(as_user 1001 cat public)" public "another uid reads a 0644 file"
    expect_error "Permission denied" as_user 1001 cat private
    expect_error "Permission denied" as_user 1001 sh -c 'echo x >>public'
    expect_error "Permission denied" as_user 1001 touch mine/intruder
    expect_eq "$(cat private)" secret "root reads the 0600 file"
    as_user 1001 sh -c 'echo other >theirs'
    expect_eq "$(stat -c %u theirs)" 1001 "owner of a file created by the second uid"
}

sc_eacces() {
    mkdir locked
    chmod 0700 locked
    echo x >locked/inner
    chmod 0755 .
    expect_error "Permission denied" as_user 1000 ls locked
    expect_error "Permission denied" as_user 1000 cat locked/inner
    expect_error "Permission denied" as_user 1000 touch newfile
    expect_error "Permission denied" as_user 1000 mkdir newdir
    expect_error "Permission denied" as_user 1000 rm -f locked/inner
    expect_error "Operation not permitted" as_user 1000 chmod 777 locked
    expect_error "Operation not permitted" as_user 1000 chown 1000 locked
    # sticky directory: others may not remove what they do not own
    mkdir sticky
    chmod 1777 sticky
    as_user 1000 sh -c 'echo a >sticky/owned'
    expect_error "Operation not permitted" as_user 1001 rm -f sticky/owned
    [ -f sticky/owned ] || fail "a file in a sticky directory was removed by another uid"
}

sc_setgid_dir() {
    mkdir sg
    chown 0:1234 sg
    chmod 2777 sg
    touch sg/byroot
    as_user 1000 touch sg/byuser
    as_user 1000 mkdir sg/subdir
    mkdir sg/rootdir
    drop_caches
    expect_eq "$(stat -c %g sg/byroot)" 1234 "group of a file created by root"
    expect_eq "$(stat -c %g sg/byuser)" 1234 "group of a file created by uid 1000"
    expect_eq "$(stat -c %g sg/subdir)" 1234 "group of a subdirectory"
    expect_eq "$(stat -c %A sg/subdir | cut -c7)" s "setgid bit on the subdirectory"
    expect_eq "$(stat -c %g sg/rootdir)" 1234 "group of a subdirectory made by root"
    expect_eq "$(as_user 1000 stat -c %u sg/byuser)" 1000 "owner of the file made by uid 1000"
    mkdir plain
    chmod 777 plain
    as_user 1000 touch plain/x
    expect_eq "$(stat -c %g plain/x)" 1000 "group outside a setgid directory"
}

# The server refuses writes on a read-only mount: EROFS in the guest.
sc_erofs() {
    ls "$MNT/ro" >/dev/null || fail "cannot list the read-only mount"
    expect_error "Read-only file system" touch "$MNT/ro/new"
    expect_error "Read-only file system" mkdir "$MNT/ro/dir"
    expect_error "Read-only file system" ln -s x "$MNT/ro/link"
    expect_error "Read-only file system" chmod 700 "$MNT/ro"
    expect_error "Read-only file system" sh -c "echo x >'$MNT/ro/file'"
    [ ! -e "$MNT/ro/new" ] || fail "a file appeared on the read-only mount"
}
