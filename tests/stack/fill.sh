#!/usr/bin/env bash
# tests/stack/fill.sh - put message files straight into a user's Maildir
# folder (cur/, no flags), fast: 10,000 files in about a second. Dovecot sees
# them at the next SELECT/STATUS/NOOP (it rescans the Maildir).
#
# Usage: tests/stack/fill.sh DIR USER FOLDER FILE...
#        tests/stack/fill.sh DIR USER FOLDER -d SRCDIR   (every file in SRCDIR, sorted by name)
#   USER    "alice" or "alice@example.test"
#   FOLDER  IMAP name with "/" separator: INBOX, Archive/2024, ...; created if missing
# Files are named TIME.PpidQn.localhost,S=SIZE,W=VSIZE:2, (unique), as
# Dovecot names the mail it delivers: S= the file's size, W= its size with a
# CR before every bare LF (what IMAP sends), so the server need not read a
# message to learn its size. Owned by the mail user, written to tmp/ and
# renamed into cur/. Prints the number of files written.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -ge 4 ] || cm_die "usage: $0 DIR USER FOLDER FILE... | $0 DIR USER FOLDER -d SRCDIR"
cm_load "$1"
user=$(cm_user_addr "$2")
folder=$3
shift 3
grep -q "^$user:" "$DC_USERS" || cm_die "no such user in $DC_USERS: $user"
case "$folder" in /*|*..*|*/|'') cm_die "bad folder name: $folder" ;; esac
cm_make_folder "$user" "$folder"
dest=$(cm_maildir "$user" "$folder")
uid=-1
gid=-1
if cm_is_root; then
    uid=$(id -u "$CM_VMAIL_USER")
    gid=$(id -g "$CM_VMAIL_USER")
fi
mode=files
if [ "$1" = "-d" ]; then
    [ $# -eq 2 ] && [ -d "$2" ] || cm_die "-d needs one source folder"
    mode=dir
    shift
fi

perl -e '
    use strict; use warnings;
    my ($dest, $uid, $gid, $mode, @src) = @ARGV;
    if ($mode eq "dir") {
        my $d = $src[0];
        opendir(my $dh, $d) or die "fill: $d: $!\n";
        @src = map { "$d/$_" } sort grep { -f "$d/$_" } readdir($dh);
        closedir($dh);
    }
    my $t = time; my $n = 0;
    for my $f (@src) {
        $n++;
        # sizes in the name, as Dovecot names the mail it delivers: S= the
        # file, W= as IMAP sends it (a CR before every bare LF)
        open(my $in, "<:raw", $f) or die "fill: $f: $!\n";
        my $body = do { local $/; <$in> };
        close($in);
        $body = "" unless defined $body;
        my $bare = 0;
        $bare++ while $body =~ /(?<!\r)\n/g;
        my $name = sprintf("%d.P%dQ%d.localhost,S=%d,W=%d:2,", $t, $$, $n,
                           length($body), length($body) + $bare);
        my $tmp = "$dest/tmp/$name";
        open(my $out, ">:raw", $tmp) or die "fill: $tmp: $!\n";
        print $out $body or die "fill: $tmp: $!\n";
        close($out) or die "fill: $tmp: $!\n";
        chown($uid, $gid, $tmp) if $uid >= 0;
        rename($tmp, "$dest/cur/$name") or die "fill: rename $tmp: $!\n";
    }
    print "$n\n";
' "$dest" "$uid" "$gid" "$mode" "$@"
