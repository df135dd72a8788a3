#!/bin/sh
# The guest's test runner: mount every configured share, run each share's scenarios,
# then (optionally) the server-restart check. Every check is reported on the console as
#   @@NINEP-BEGIN SHARE/CHECK   ...its output...   @@NINEP-END SHARE/CHECK rc=N secs=S
# and the host turns each into one pytest test.
. /run/ninep/conf.sh
cd /
uptime_s() { cut -d' ' -f1 /proc/uptime; }

# run_check SHARE CHECK COMMAND...: run COMMAND with a hard timeout, report it.
run_check() {
    share=$1
    check=$2
    shift 2
    echo "@@NINEP-BEGIN $share/$check"
    t0=$(uptime_s)
    timeout -s KILL "$SCENARIO_TIMEOUT" "$@" </dev/null 2>&1
    rc=$?
    [ $rc = 137 ] && echo "FAIL: killed after ${SCENARIO_TIMEOUT}s (hung?)"
    echo "@@NINEP-END $share/$check rc=$rc secs=$(awk "BEGIN{print $(uptime_s)-$t0}")"
}

share_env() {
    line=$(grep "^$1 " /run/ninep/mounts)
    set -- $line
    opts=$4
    NAME=$1 TRANSPORT=$2 MNT=/mnt/$1 PEER=""
    [ "$5" != - ] && PEER=/mnt/$5
    [ "$6" != - ] && MNT=$MNT/$6  # a backend share: the scenarios run in that mount
    CACHE=none MSIZE="" ACCESS=client
    for o in $(echo "$opts" | tr , ' '); do
        case $o in
        cache=*) CACHE=${o#cache=} ;;
        msize=*) MSIZE=${o#msize=} ;;
        access=*) ACCESS=${o#access=} ;;
        esac
    done
    export NAME TRANSPORT MNT PEER CACHE MSIZE ACCESS
}

check_mount() {
    /run/ninep/mount.sh mount "$1" || { echo "FAIL: mount failed"; return 1; }
    share_env "$1"
    line=$(grep " /mnt/$1 " /proc/mounts) || { echo "FAIL: not in /proc/mounts"; return 1; }
    echo "$line"
    for want in "msize=$MSIZE" "access=$ACCESS" "trans=$TRANSPORT"; do
        case "$line" in
        *"$want"*) ;;
        *) echo "FAIL: /proc/mounts lacks $want"; return 1 ;;
        esac
    done
    case "$CACHE:$line" in
    none:*sync,dirsync*|loose:*loose*|mmap:*mmap*) ;;
    *) echo "FAIL: /proc/mounts does not show cache=$CACHE"; return 1 ;;
    esac
}

# One scenario, in a fresh directory SHARE.SCENARIO at the top of the share
# (ro_* and ov_* scenarios, for the tar and overlay shares, run at the top itself).
scenario() {
    share_env "$1"
    W=$MNT/$1.$2
    [ -n "$PEER" ] && PEER=$PEER/$1.$2
    T0=$(cut -d' ' -f1 /proc/uptime)
    export W PEER T0
    case $2 in
    ro_* | ov_*) W=$MNT ;;
    *) mkdir "$W" || { echo "FAIL: mkdir $W"; return 1; } ;;
    esac
    # (only the scenario's shell has its cwd in the share, so that it can remount it)
    sh -c "set -e; . /run/ninep/lib.sh; for f in /run/ninep/scenarios/*.sh; do . \$f; done
           cd \"\$W\"; sc_$2"
}

restart() {
    share_env "$1"
    . /run/ninep/lib.sh
    . /run/ninep/restart.sh
    restart_check
}

# main.sh --check FUNCTION ARGS...: run one check (what run_check times out).
if [ "$1" = --check ]; then
    shift
    "$@"
    exit $?
fi

exec 9</run/ninep/mounts
while read -r name _rest <&9; do
    run_check "$name" mount /run/ninep/main.sh --check check_mount "$name"
done
exec 9<&-

exec 9</run/ninep/mounts
while read -r name transport port opts peer base scenarios <&9; do
    for s in $scenarios; do
        run_check "$name" "$s" /run/ninep/main.sh --check scenario "$name" "$s"
    done
done
exec 9<&-

if [ -n "$RESTART" ]; then
    share_env "$RESTART"
    run_check "$RESTART" server_restart /run/ninep/main.sh --check restart "$RESTART"
fi
exit 0
