# POSIX semantics the kernel client leaves to the server (issue 10): group membership,
# set-id bits, nanosecond times. The px_ scenarios run on the backends boot, whose
# server takes groups on the client kernel's word (--groups client, docs/config.md):
# 9P2000.L carries no group list, and these uids are unknown to the host.

# as_ids UID GID GROUPS CMD...: run CMD as UID with primary GID and supplementary GROUPS.
as_ids() {
    uid=$1 gid=$2 groups=$3
    shift 3
    /usr/bin/setpriv --reuid="$uid" --regid="$gid" --groups="$groups" -- "$@"
}

mode_of() {
    stat -c %a "$1"
}

# A non-root owner gives its file (and its symlink, lchown) its effective gid or a
# supplementary group, in the work directory and in a subdirectory; set-id bits go.
sc_px_chgrp_member() {
    chmod 0777 .
    mkdir sub
    chmod 0777 sub
    for f in f sub/f; do
        echo x >"$f"
        chown 65533:65532 "$f"
        as_ids 65533 65532 65531,65530 chgrp 65531 "$f"
        expect_eq "$(stat -c %g "$f")" 65531 "group after chgrp to a supplementary group ($f)"
        as_ids 65533 65532 65531,65530 chgrp 65532 "$f"
        expect_eq "$(stat -c %g "$f")" 65532 "group after chgrp to the effective gid ($f)"
        expect_error "Operation not permitted" as_ids 65533 65532 65531 chgrp 65529 "$f"
        chmod 06555 "$f"
        expect_eq "$(mode_of "$f")" 6555 "mode of the set-id file ($f)"
        as_ids 65533 65532 65531,65530 chgrp 65530 "$f"
        expect_eq "$(stat -c %g:%a "$f")" 65530:555 "chgrp of a set-id file clears its bits ($f)"
    done
    ln -s f link
    chown -h 65533:65532 link
    as_ids 65533 65532 65531 chown -h :65531 link
    expect_eq "$(stat -c %g link)" 65531 "group of a symlink after lchown"
    expect_eq "$(stat -c %g f)" 65530 "lchown left the target alone"
}

# A member of a file's group gets group permission: uid 65533 in group 65534 opens a
# 0060 file of 65534:65534 for O_RDONLY, O_WRONLY and O_RDWR; a non-member does not.
sc_px_group_permission() {
    chmod 0777 .
    echo data >f
    chown 65534:65534 f
    chmod 0060 f
    expect_eq "$(as_ids 65533 65534 65534 cat f)" data "O_RDONLY by a group member"
    as_ids 65533 65534 65534 perl -e 'open(F, ">>", "f") or die "O_WRONLY: $!\n"; print F "w\n"'
    as_ids 65533 65534 65534 perl -e 'open(F, "+<", "f") or die "O_RDWR: $!\n"'
    expect_eq "$(cat f)" "data
w" "what the member wrote"
    expect_error "Permission denied" as_ids 65533 65533 65533 cat f
}

# A write or truncate by a process that is not root clears set-user-id, and set-group-id
# with group-execute (file_remove_privs; cache=none sends the write as Twrite alone).
sc_px_setid_write() {
    chmod 0777 .
    for m in 4777 2777 6777; do
        echo x >"w$m"
        chmod "$m" "w$m"
        as_ids 65533 65533 65533 sh -c "echo more >>w$m"
        expect_eq "$(mode_of "w$m")" 777 "mode after a non-owner's write to a $m file"
        echo x >"t$m"
        chmod "$m" "t$m"
        as_ids 65533 65533 65533 perl -e "truncate('t$m', 0) or die \"truncate: \$!\n\""
        expect_eq "$(mode_of "t$m")" 777 "mode after a non-owner's truncate of a $m file"
        echo x >"r$m"
        chmod "$m" "r$m"
        echo more >>"r$m"
        expect_eq "$(mode_of "r$m")" "$m" "root's write keeps the bits of a $m file"
    done
}

# chmod: root keeps set-id bits on another user's file; an owner keeps set-group-id when
# in the file's group and loses it when not (setattr_prepare); chown by root clears them.
sc_px_setid_chmod() {
    chmod 0777 .
    echo x >f
    chown 65534:65534 f
    chmod 06555 f
    expect_eq "$(mode_of f)" 6555 "root's chmod 06555 of another user's file"
    echo x >g
    chown 65535:65535 g
    as_ids 65535 65535 65535 chmod 02755 g
    expect_eq "$(mode_of g)" 2755 "an owner's chmod 02755 with the file's group its own"
    as_ids 65535 65534 65534 chmod 02755 g
    expect_eq "$(mode_of g)" 755 "an owner's chmod 02755 outside the file's group"
    chmod 06755 g
    chown 65533 g
    expect_eq "$(stat -c %u:%a g)" 65533:755 "root's chown clears set-id bits"
}

# Nanosecond times. The server keeps and returns them (tests/ninep/test_posix_times.py);
# Linux 6.1's v9fs never sets its superblock's s_time_gran, so it stays at one second
# and notify_change (timestamp_truncate) drops a utimensat's nanoseconds before the
# Tsetattr is sent: this pins that limit. Times the server sets itself keep theirs.
sc_px_times_ns() {
    echo x >f
    # utimensat(AT_FDCWD, "f", {{1000000000, 250000000}, {1234567890, 500000000}}, 0)
    perl -e 'my ($path, $times) = ("f", pack("q4", 1000000000, 250000000, 1234567890, 500000000));
             syscall(280, -100, $path, $times, 0) == 0 or die "utimensat: $!\n"'
    drop_caches
    expect_eq "$(stat -c %X:%Y f)" 1000000000:1234567890 "seconds after utimensat"
    expect_eq "$(stat -c %x f | cut -d' ' -f2)" 01:46:40.000000000 \
        "atime after utimensat of .25 s (the kernel client sends whole seconds)"
    echo y >g
    case $(stat -c %y g) in
    *.000000000*) fail "a server-set mtime without nanoseconds: $(stat -c %y g)" ;;
    esac
}
