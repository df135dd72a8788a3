# The server restarted under a mounted client (sourced by main.sh, after lib.sh).
#
# The guest asks the host to restart the server (a marker line on the console), then
# expects clean errors from the dead mount within a bounded time (no hang), a working
# umount, and a remount that works against the new server.
restart_check() {
    cd /
    echo before >"$MNT/restart.before" || fail "cannot write before the restart"
    expect_eq "$(cat "$MNT/restart.before")" before "content before the restart"
    echo "@@NINEP-CONTROL restart-server"
    error=""
    tries=0
    while [ $tries -lt 90 ]; do
        out=$(timeout -s KILL 30 cat "$MNT/restart.before" 2>&1)
        rc=$?
        [ $rc = 137 ] && fail "a read hung for 30 s after the server went away"
        if [ $rc != 0 ]; then
            error=$out
            break
        fi
        tries=$((tries + 1))
        sleep 1
    done
    [ -n "$error" ] || fail "the mount never reported an error after the restart request"
    note "read on the dead mount: $error"
    out=$(timeout -s KILL 30 ls "$MNT" 2>&1) && fail "ls of the dead mount succeeded: $out"
    [ $? = 137 ] && fail "ls hung for 30 s on the dead mount"
    note "ls on the dead mount: $out"
    out=$(timeout -s KILL 30 sh -c "echo x >'$MNT/restart.new'" 2>&1) &&
        fail "a write to the dead mount succeeded"
    note "write on the dead mount: $out"
    /run/ninep/mount.sh umount "$NAME" || fail "umount of the dead mount failed"
    note "unmounted the dead mount"
    tries=0
    until MOUNT_TIMEOUT=20 /run/ninep/mount.sh mount "$NAME"; do
        tries=$((tries + 1))
        note "remount attempt $tries failed"
        [ $tries -lt 10 ] || fail "no remount after 10 attempts"
        sleep 2
    done
    note "remounted after $tries retries"
    echo after >"$MNT/restart.after" || fail "cannot write after the remount"
    drop_caches
    expect_eq "$(cat "$MNT/restart.after")" after "content after the remount"
    if [ -n "$RESTART_KEEPS" ]; then  # a host directory: what was written stays
        expect_eq "$(cat "$MNT/restart.before")" before "a host file after the restart"
    else
        [ ! -e "$MNT/restart.before" ] || fail "a file from before the restart survived a RAM server"
    fi
    /run/ninep/mount.sh umount "$NAME" || fail "final umount failed"
}
