#!/bin/sh
# mount.sh mount|umount NAME: (un)mount one configured share at /mnt/NAME.
#
# /run/ninep/mounts has one line per share: NAME TRANSPORT PORT OPTIONS PEER BASE SCENARIOS...
# TRANSPORT tcp: the server at 10.0.2.2:$SERVER_PORT through QEMU user networking.
# TRANSPORT fd: the virtio-serial port /dev/virtio-ports/PORT (QEMU relays it to the
# server's UNIX socket). trans=fd cannot use the port directly (virtio_console has no
# read_iter/write_iter), so two cats relay it through FIFOs, the port opened once.
. /run/ninep/conf.sh
action=$1
name=$2
line=$(grep "^$name " /run/ninep/mounts) || { echo "mount.sh: no share $name" >&2; exit 2; }
set -- $line
transport=$2
port=$3
opts=$4
mnt=/mnt/$name
relay=/run/ninep/relay/$name

# Kill the relay's cats and wait until they are gone (the port opens only once).
stop_relay() {
    [ -f "$relay/pids" ] || return 0
    pids=$(cat "$relay/pids")
    kill -9 $pids 2>/dev/null
    n=0
    while kill -0 $pids 2>/dev/null && [ $n -lt 100 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    rm -f "$relay/pids"
}

case $action in
mount)
    mkdir -p "$mnt"
    if [ "$transport" = tcp ]; then
        exec timeout -s KILL "${MOUNT_TIMEOUT:-60}" mount -t 9p \
            -o "trans=tcp,port=$SERVER_PORT,$opts" 10.0.2.2 "$mnt"
    fi
    stop_relay
    # While QEMU's chardev is not connected to the server, the port reads EOF: wait.
    dev=$(readlink "/dev/virtio-ports/$port")
    state=/sys/kernel/debug/virtio-ports/${dev##*/}
    n=0
    until grep -q "host_connected: 1" "$state" 2>/dev/null; do
        n=$((n + 1))
        [ $n -lt 300 ] || { echo "mount.sh: $port: the host side never connected" >&2; exit 1; }
        sleep 0.1
    done
    mkdir -p "$relay"
    rm -f "$relay/in" "$relay/out"
    mkfifo "$relay/in" "$relay/out"
    exec 3<>"/dev/virtio-ports/$port" || exit 1
    cat <&3 >"$relay/in" &
    echo $! >"$relay/pids"
    cat "$relay/out" >&3 &
    echo $! >>"$relay/pids"
    exec 3>&-
    timeout -s KILL "${MOUNT_TIMEOUT:-60}" mount -t 9p -o "trans=fd,rfdno=4,wfdno=5,$opts" "$name" "$mnt" \
        4<"$relay/in" 5>"$relay/out"
    status=$?
    [ $status = 0 ] || stop_relay
    exit $status
    ;;
umount)
    timeout -s KILL 60 umount "$mnt" || timeout -s KILL 60 umount -l "$mnt"
    status=$?
    [ "$transport" = fd ] && stop_relay
    exit $status
    ;;
*)
    echo "usage: mount.sh mount|umount NAME" >&2
    exit 2
    ;;
esac
