# Locks: flock between two processes (and two connections), fcntl byte-range locks.

LOCKPL=/run/ninep/scenarios/lock.pl

sc_flock() {
    : >lockf
    log=/tmp/flock.$$
    rel=/tmp/flock-release.$$
    : >"$log"
    rm -f "$rel"
    flock -x lockf -c "echo A-locked >>$log; while [ ! -e $rel ]; do sleep 0.1; done;
                       echo A-unlocking >>$log" &
    a=$!
    wait_for 60 grep -q A-locked "$log"
    if flock -n -x lockf true; then fail "a second exclusive flock was granted while held"; fi
    if flock -n -s lockf true; then fail "a shared flock was granted under an exclusive one"; fi
    flock -x lockf -c "echo B-locked >>$log" &
    b=$!
    sleep 1
    grep -q B-locked "$log" && fail "the blocking flock returned while the lock was held"
    touch "$rel"
    wait $a || fail "holder failed"
    wait $b || fail "waiter failed"
    expect_eq "$(tr '\n' ' ' <"$log")" "A-locked A-unlocking B-locked " "lock order"
    # shared locks coexist
    rm -f "$rel"
    flock -s lockf -c "echo S-locked >>$log; while [ ! -e $rel ]; do sleep 0.1; done" &
    a=$!
    wait_for 60 grep -q S-locked "$log"
    flock -n -s lockf true || fail "a second shared flock was refused"
    if flock -n -x lockf true; then fail "an exclusive flock was granted under a shared one"; fi
    if [ -n "$PEER" ]; then
        note "cross-connection checks through $PEER"
        # the same file through another connection: only the server can see the conflict
        if flock -n -x "$PEER/lockf" true; then
            fail "the server granted an exclusive flock to another connection under a shared one"
        fi
        flock -n -s "$PEER/lockf" true || fail "shared flock through another connection refused"
    fi
    touch "$rel"
    wait $a
    flock -n -x lockf true || fail "exclusive flock refused after every holder left"
    if [ -n "$PEER" ]; then
        flock -n -x "$PEER/lockf" true || fail "exclusive flock through the peer after release"
    fi
    rm -f "$log" "$rel"
}

sc_fcntl_locks() {
    head -c 1000 /dev/zero >f
    rel=/tmp/fcntl-release.$$
    ready=/tmp/fcntl-ready.$$
    rm -f "$rel" "$ready"
    perl $LOCKPL set f w 0 100 "$rel" "$ready" >/dev/null &
    a=$!
    wait_for 60 test -e "$ready"
    expect_eq "$(perl $LOCKPL set f w 50 100)" "Resource temporarily unavailable" \
        "overlapping write lock"
    expect_eq "$(perl $LOCKPL set f r 99 1)" "Resource temporarily unavailable" \
        "overlapping read lock"
    expect_eq "$(perl $LOCKPL set f w 100 100)" locked "adjacent write lock"
    expect_eq "$(perl $LOCKPL get f w 10 10)" "write 0 100 $a" "F_GETLK on a held range"
    expect_eq "$(perl $LOCKPL get f w 500 10)" unlocked "F_GETLK on a free range"
    if [ -n "$PEER" ]; then
        note "cross-connection checks through $PEER"
        expect_eq "$(perl $LOCKPL set "$PEER/f" w 50 10)" "Resource temporarily unavailable" \
            "overlapping write lock through another connection"
        expect_eq "$(perl $LOCKPL set "$PEER/f" w 200 10)" locked \
            "free range through another connection"
        expect_eq "$(perl $LOCKPL get "$PEER/f" w 10 10 | cut -d' ' -f1-3)" "write 0 100" \
            "F_GETLK through another connection"
        # v9fs asks Tgetlock with type UNLCK: the server reports a read lock too
        perl $LOCKPL set f r 300 10 "$rel" "$ready.r" >/dev/null &
        b=$!
        wait_for 60 test -e "$ready.r"
        expect_eq "$(perl $LOCKPL get "$PEER/f" w 300 10 | cut -d' ' -f1-3)" "read 300 10" \
            "F_GETLK through another connection sees a read lock"
    fi
    touch "$rel"
    wait $a || fail "holder failed"
    if [ -n "$PEER" ]; then
        wait $b || fail "read holder failed"
        rm -f "$ready.r"
    fi
    expect_eq "$(perl $LOCKPL set f w 0 1000)" locked "whole-file lock after release"
    if [ -n "$PEER" ]; then
        expect_eq "$(perl $LOCKPL set "$PEER/f" w 0 1000)" locked \
            "whole-file lock through another connection after release"
    fi
    rm -f "$rel" "$ready"
}
