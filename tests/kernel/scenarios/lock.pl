#!/usr/bin/perl
# lock.pl set|get FILE r|w|u START LEN [HOLD_UNTIL READY]: one fcntl byte-range lock.
# set: F_SETLK; prints "locked" (exit 0) or the errno text (exit 1); with HOLD_UNTIL,
#      creates READY once locked and keeps the lock until the file HOLD_UNTIL exists.
# get: F_GETLK; prints "unlocked" or "read|write START LEN PID".
use strict;
use Fcntl qw(F_SETLK F_GETLK F_RDLCK F_WRLCK F_UNLCK SEEK_SET O_RDWR);
my ($mode, $file, $type, $start, $len, $until, $ready) = @ARGV;
sysopen(my $fh, $file, O_RDWR) or die "open $file: $!\n";
my $t = $type eq "w" ? F_WRLCK : $type eq "r" ? F_RDLCK : F_UNLCK;
my $layout = "s s x4 q q i x4";    # struct flock on x86_64
my $fl = pack($layout, $t, SEEK_SET, $start, $len, 0);
if ($mode eq "get") {
    fcntl($fh, F_GETLK, $fl) or die "F_GETLK: $!\n";
    my ($rt, undef, $s, $l, $pid) = unpack($layout, $fl);
    print $rt == F_UNLCK ? "unlocked\n" : ($rt == F_WRLCK ? "write" : "read") . " $s $l $pid\n";
    exit 0;
}
unless (fcntl($fh, F_SETLK, $fl)) {
    print "$!\n";
    exit 1;
}
print "locked\n";
if ($until) {
    open(my $r, ">", $ready) or die "$ready: $!\n";
    close($r);
    select(undef, undef, undef, 0.1) until -e $until;
}
exit 0;
