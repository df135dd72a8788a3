# Helpers for the guest-side scenarios (busybox ash). Sourced before every scenario.
#
# A scenario is a shell function named sc_NAME in one of the scenarios/*.sh files.
# It runs in a fresh, empty work directory on the mount under test (its cwd, also $W)
# with `set -e`; it fails by exiting non-zero (fail prints the reason first).
# Environment: NAME (the mount's name), MNT (its mount point), CACHE, MSIZE, ACCESS,
# TRANSPORT (tcp or fd), PEER (the same directory through another mount, or empty).

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

note() {
    echo "# $*"
}

# step WHAT: a note with the seconds since the scenario started (for profiling).
step() {
    echo "# [$(awk -v t0="$T0" '{printf "%.1f", $1 - t0}' /proc/uptime) s] $*"
}

# list_names DIR: the raw names in DIR, one a line (readdir only: no stat, no escaping).
list_names() {
    perl -e 'opendir(D, $ARGV[0]) or die "$ARGV[0]: $!\n";
             print "$_\n" for grep { $_ ne "." && $_ ne ".." } readdir D' "$1"
}

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
    [ "$1" = "$2" ] || fail "$3: got '$1', expected '$2'"
}

# expect_error MESSAGE CMD...: CMD must fail and say MESSAGE on stderr.
expect_error() {
    want=$1
    shift
    if "$@" 2>/tmp/expect_error.$$; then
        fail "'$*' succeeded, expected '$want'"
    fi
    if ! grep -q "$want" /tmp/expect_error.$$; then
        echo "stderr of '$*':" >&2
        cat /tmp/expect_error.$$ >&2
        rm -f /tmp/expect_error.$$
        fail "'$*' failed without '$want'"
    fi
    rm -f /tmp/expect_error.$$
}

# Write back everything and drop the page, dentry and inode caches, so what is
# read next comes from the server (matters with cache=loose and cache=mmap).
drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

md5() {
    md5sum "$@" | cut -d' ' -f1
}

# md5 of a file read in large blocks (one 9P read per block with cache=none).
md5_big() {
    dd if="$1" bs=1M 2>/dev/null | md5sum | cut -d' ' -f1
}

size_of() {
    stat -c %s "$1"
}

# Run a command as another uid: as_user UID CMD... (groups: the uid's own and 1234).
as_user() {
    uid=$1
    shift
    /usr/bin/setpriv --reuid="$uid" --regid="$uid" --groups="$uid,1234" -- "$@"
}

# Count the entries of a directory, names with newlines included.
count_entries() {
    perl -e 'opendir(D, $ARGV[0]) or die "$ARGV[0]: $!\n";
             print scalar(grep { $_ ne "." && $_ ne ".." } readdir D), "\n"' "$1"
}

# Run N copies of a function in parallel: parallel N FUNC ARGS... (FUNC gets the
# copy's index 0..N-1 as its first argument); fails when any copy fails.
parallel() {
    n=$1
    shift
    pids=""
    k=0
    while [ "$k" -lt "$n" ]; do
        "$@" "$k" &
        pids="$pids $!"
        k=$((k + 1))
    done
    status=0
    for p in $pids; do
        wait "$p" || status=1
    done
    return $status
}

# Remount the mount under test with the same options (from outside it).
remount() {
    /run/ninep/mount.sh umount "$NAME" && /run/ninep/mount.sh mount "$NAME"
}

# wait_for SECONDS CMD...: poll CMD every 0.1 s until it succeeds (fails after SECONDS).
wait_for() {
    limit=$(($1 * 10))
    shift
    n=0
    until "$@"; do
        n=$((n + 1))
        [ $n -lt $limit ] || fail "gave up waiting for: $*"
        sleep 0.1
    done
}
