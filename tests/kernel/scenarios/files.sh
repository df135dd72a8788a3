# Files: write and read back with checksums, append, truncate, sparse files, dd, overwrite.

# roundtrip SIZE: a random file of SIZE bytes copied in, read back from the server.
roundtrip() {
    head -c "$1" /dev/urandom >/tmp/src.$$
    want=$(md5 /tmp/src.$$)
    cp /tmp/src.$$ "f.$1"
    rm -f /tmp/src.$$
    drop_caches
    expect_eq "$(size_of "f.$1")" "$1" "size of f.$1"
    expect_eq "$(md5_big "f.$1")" "$want" "md5 of f.$1 read in 1 MiB blocks"
    if [ "$1" -le 65536 ]; then
        drop_caches
        expect_eq "$(md5 "f.$1")" "$want" "md5 of f.$1 read by md5sum"
    fi
}

sc_file_size_0() { roundtrip 0; }
sc_file_size_1() { roundtrip 1; }
sc_file_size_4095() { roundtrip 4095; }
sc_file_size_4096() { roundtrip 4096; }
sc_file_size_4097() { roundtrip 4097; }
sc_file_size_5m() { roundtrip 5242880; }

sc_file_size_64m() {
    roundtrip 67108864
    rm f.67108864
}

sc_append() {
    printf 'one\n' >f
    printf 'two\n' >>f
    drop_caches
    printf 'three\n' >>f
    expect_eq "$(cat f)" "$(printf 'one\ntwo\nthree')" "content after appends"
    # O_APPEND writes land at the end even after a seek elsewhere.
    perl -e 'use Fcntl qw(O_WRONLY O_APPEND SEEK_SET);
             sysopen(my $fh, "f", O_WRONLY|O_APPEND) or die "open: $!\n";
             sysseek($fh, 0, SEEK_SET); syswrite($fh, "four\n") == 5 or die "write: $!\n";'
    drop_caches
    expect_eq "$(tail -n1 f)" four "line appended with O_APPEND after a seek"
    expect_eq "$(size_of f)" 19 "size after four appends"
}

sc_truncate() {
    head -c 10000 /dev/urandom >/tmp/t.$$
    cp /tmp/t.$$ f
    truncate -s 3000 f
    drop_caches
    expect_eq "$(size_of f)" 3000 "size after truncating down"
    expect_eq "$(md5 f)" "$(head -c 3000 /tmp/t.$$ | md5sum | cut -d' ' -f1)" "kept prefix"
    truncate -s 20000 f
    drop_caches
    expect_eq "$(size_of f)" 20000 "size after truncating up"
    expect_eq "$(md5 f)" "$( (head -c 3000 /tmp/t.$$; head -c 17000 /dev/zero) | md5sum |
        cut -d' ' -f1)" "prefix then zeros after truncating up"
    truncate -s 0 f
    drop_caches
    expect_eq "$(size_of f)" 0 "size after truncating to 0"
    # O_TRUNC through the shell's > redirection
    printf 'abcdef' >g
    printf 'xy' >g
    drop_caches
    expect_eq "$(cat g)" xy "content after O_TRUNC open"
    rm -f /tmp/t.$$
}

sc_sparse() {
    printf 'head' >f
    # 4 bytes at 10 MiB: a hole from 4 to 10 MiB
    printf 'tail' | dd of=f bs=1 seek=10485760 conv=notrunc 2>/dev/null
    drop_caches
    expect_eq "$(size_of f)" 10485764 "size of the sparse file"
    expect_eq "$(dd if=f bs=1 count=4 2>/dev/null)" head "data before the hole"
    expect_eq "$(dd if=f bs=1 skip=10485760 2>/dev/null)" tail "data after the hole"
    zeros=$(head -c 10485756 /dev/zero | md5sum | cut -d' ' -f1)
    expect_eq "$(dd if=f bs=1M iflag=skip_bytes skip=4 count=10 2>/dev/null |
        head -c 10485756 | md5sum | cut -d' ' -f1)" "$zeros" "the hole reads as zeros"
    # seek past the end of an empty file and write
    dd if=/dev/zero of=g bs=1 count=0 seek=100000 2>/dev/null
    expect_eq "$(size_of g)" 100000 "size after seeking past the end"
    expect_eq "$(md5 g)" "$(head -c 100000 /dev/zero | md5sum | cut -d' ' -f1)" "all zeros"
}

sc_dd_odd_blocks() {
    head -c 1234567 /dev/urandom >/tmp/d.$$
    want=$(md5 /tmp/d.$$)
    for bs in 1 511 4097 65537 1000003; do
        count=""
        [ "$bs" = 1 ] && count="count=3000"
        if [ -n "$count" ]; then
            dd if=/tmp/d.$$ of="f.$bs" bs=$bs $count 2>/dev/null
            drop_caches
            expect_eq "$(md5 "f.$bs")" "$(head -c 3000 /tmp/d.$$ | md5sum | cut -d' ' -f1)" \
                "dd bs=$bs (first 3000 bytes)"
            continue
        fi
        dd if=/tmp/d.$$ of="f.$bs" bs=$bs 2>/dev/null
        drop_caches
        expect_eq "$(size_of "f.$bs")" 1234567 "size written with dd bs=$bs"
        expect_eq "$(dd if="f.$bs" bs=$((bs + 7)) 2>/dev/null | md5sum | cut -d' ' -f1)" "$want" \
            "read back with dd bs=$((bs + 7))"
    done
    rm -f /tmp/d.$$
}

sc_overwrite_middle() {
    head -c 200000 /dev/urandom >/tmp/o.$$
    cp /tmp/o.$$ f
    head -c 5000 /dev/urandom >/tmp/p.$$
    dd if=/tmp/p.$$ of=f bs=1000 seek=77 conv=notrunc 2>/dev/null
    dd if=/tmp/p.$$ of=/tmp/o.$$ bs=1000 seek=77 conv=notrunc 2>/dev/null
    drop_caches
    expect_eq "$(size_of f)" 200000 "size after overwriting in the middle"
    expect_eq "$(md5 f)" "$(md5 /tmp/o.$$)" "content after overwriting in the middle"
    # an unaligned overwrite that straddles page boundaries
    printf 'XYZ' | dd of=f bs=1 seek=4095 conv=notrunc 2>/dev/null
    printf 'XYZ' | dd of=/tmp/o.$$ bs=1 seek=4095 conv=notrunc 2>/dev/null
    drop_caches
    expect_eq "$(md5 f)" "$(md5 /tmp/o.$$)" "content after a 3-byte write across a page"
    rm -f /tmp/o.$$ /tmp/p.$$
}

# open, unlink, then read, write, fstat, ftruncate through the open descriptor
sc_open_unlink() {
    perl -e '
        use strict; use Fcntl qw(SEEK_SET);
        open(my $fh, "+>", "f") or die "open: $!\n";
        syswrite($fh, "hello, world") == 12 or die "write: $!\n";
        unlink("f") or die "unlink: $!\n";
        die "f still exists after unlink\n" if -e "f";
        sysseek($fh, 0, SEEK_SET);
        sysread($fh, my $buf, 100) == 12 or die "read after unlink: $!\n";
        $buf eq "hello, world" or die "read after unlink: got $buf\n";
        sysseek($fh, 12, SEEK_SET);
        syswrite($fh, "!!") == 2 or die "write after unlink: $!\n";
        my @st = stat($fh) or die "fstat after unlink: $!\n";
        $st[7] == 14 or die "fstat size after unlink: $st[7]\n";
        $st[3] == 0 or die "fstat nlink after unlink: $st[3]\n";
        truncate($fh, 5) or die "ftruncate after unlink: $!\n";
        @st = stat($fh);
        $st[7] == 5 or die "fstat size after ftruncate: $st[7]\n";
        sysseek($fh, 0, SEEK_SET);
        sysread($fh, $buf, 100);
        $buf eq "hello" or die "read after ftruncate: got $buf\n";
        chmod(0600, $fh) or die "fchmod after unlink: $!\n";
        close($fh) or die "close: $!\n";
        print "ok\n";'
    expect_eq "$(count_entries .)" 0 "entries left after close"
}

# an open file follows a rename: writes through the old descriptor land in the new name
sc_rename_open_file() {
    perl -e '
        open(my $fh, "+>", "a") or die "open: $!\n";
        syswrite($fh, "first ");
        rename("a", "b") or die "rename: $!\n";
        syswrite($fh, "second") == 6 or die "write after rename: $!\n";
        my @st = stat($fh);
        $st[7] == 12 or die "fstat size after rename: $st[7]\n";
        truncate($fh, 11) or die "ftruncate after rename: $!\n";
        close($fh);'
    drop_caches
    expect_eq "$(cat b)" "first secon" "content written through a renamed open file"
}
