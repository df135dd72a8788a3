# df/statfs, inode stability, fio data integrity, mmap.

sc_df_statfs() {
    set -- $(stat -f -c '%t %b %S %a %f %c %d' "$MNT")
    note "statfs: type $1 blocks $2 bsize $3 bavail $4 bfree $5 files $6 ffree $7"
    [ "$2" -gt 0 ] || fail "statfs reports $2 blocks"
    [ "$5" -le "$2" ] || fail "free blocks $5 > total $2"
    line=$(df -k "$MNT" | tail -n1)
    note "df: $line"
    # df reports the kernel's mount (of a backend share: the share's top, /mnt/$NAME)
    set -- $(stat -f -c '%b %S %a %f' "/mnt/$NAME") $line
    expect_eq "$6" $(($1 * $2 / 1024)) "df total KiB = blocks * bsize / 1024"
    expect_eq "$8" $(($3 * $2 / 1024)) "df available KiB = bavail * bsize / 1024"
    expect_eq "$7" $((($1 - $4) * $2 / 1024)) "df used KiB = (blocks - bfree) * bsize / 1024"
}

inode_list() {
    stat -c '%i %n' f d d/inner l h 2>&1
}

sc_inode_stable() {
    echo x >f
    mkdir -p d/inner
    ln -s f l
    ln f h
    first=$(inode_list)
    note "$first"
    expect_eq "$(inode_list)" "$first" "inode numbers on a second stat"
    drop_caches
    expect_eq "$(inode_list)" "$first" "inode numbers after dropping caches"
    expect_eq "$(stat -c %i h)" "$(stat -c %i f)" "hard link's inode"
    cd /
    remount
    cd "$W"
    expect_eq "$(inode_list)" "$first" "inode numbers after a remount"
    mv f g
    expect_eq "$(stat -c %i g)" "$(echo "$first" | awk '$2 == "f" {print $1}')" \
        "inode number after a rename"
    all=$(find . | wc -l)
    expect_eq "$(find . -exec stat -c %i {} + | sort -u | wc -l)" $((all - 1)) \
        "distinct inode numbers (one hard link pair)"
}

fio_run() {
    fio --output-format=terse --terse-version=3 --minimal --group_reporting \
        --directory="$W" --verify_fatal=1 "$@" >/tmp/fio.$$ 2>&1 || {
        cat /tmp/fio.$$
        fail "fio $*"
    }
    rm -f /tmp/fio.$$
}

sc_fio_verify_seq() {
    fio_run --name=seq --ioengine=psync --rw=write --bs=64k --size=8m --verify=crc32c \
        --do_verify=1
    drop_caches
    fio_run --name=seq --ioengine=psync --rw=write --bs=64k --size=8m --verify=crc32c \
        --verify_only
}

sc_fio_verify_rand() {
    fio_run --name=rand --ioengine=psync --rw=randwrite --bsrange=512-64k --size=4m \
        --verify=crc32c --do_verify=1
    drop_caches
    fio_run --name=rand --ioengine=psync --rw=randwrite --bsrange=512-64k --size=4m \
        --verify=crc32c --verify_only
}

# mmap reads and writes (fio's mmap engine), then the data read back with read(2).
sc_mmap() {
    fio_run --name=mm --ioengine=mmap --rw=randwrite --bs=4k --size=4m --verify=crc32c \
        --do_verify=1
    drop_caches
    fio_run --name=mm --ioengine=psync --rw=randwrite --bs=4k --size=4m --verify=crc32c \
        --verify_only
    fio_run --name=mmseq --ioengine=mmap --rw=write --bs=128k --size=4m --verify=crc32c \
        --do_verify=1
    drop_caches
    fio_run --name=mmseq --ioengine=mmap --rw=write --bs=128k --size=4m --verify=crc32c \
        --verify_only
}
