#!/usr/bin/env bash
# A checkout anywhere: as root, what the test servers' own users must run
# or reach of a folder they can't enter (a checkout under /root, mode
# 0700) goes where they can (tests/stack/lib.sh: cm_reachable for the
# unpacked Cyrus and Courier binaries, cm_stack_link for make demo's
# stack); and a build without the development packages names them.
. "$(dirname "$0")/../lib.sh"
# shellcheck source=../stack/lib.sh
. "$CM_TOP/tests/stack/lib.sh"

if ! cm_is_root; then
    not_ok "these checks need root (make test runs as root)" "uid $(id -u)"
else
    closed=$CM_WORK/checkout-closed          # as /root is
    mkdir -p "$closed/pkg/bin" "$CM_WORK/checkout-open"
    chmod 700 "$closed"
    chmod 755 "$CM_WORK/checkout-open"
    printf '#!/bin/sh\necho ran as $(id -un)\n' > "$closed/pkg/bin/hello"
    chmod 755 "$closed/pkg" "$closed/pkg/bin" "$closed/pkg/bin/hello"
    if runuser -u nobody -- test -x "$closed/pkg"; then
        not_ok "nobody can't enter a folder of mode 0700" "it can: $closed"
    else
        ok "nobody can't enter a folder of mode 0700"
    fi

    got=$(cm_reachable nobody "$closed/pkg" "$CM_WORK/checkout-open/pkg")
    check_eq "out of the user's reach, the folder is used from a copy" \
        "$CM_WORK/checkout-open/pkg" "$got"
    check_eq "the user runs the copy" "ran as nobody" \
        "$(runuser -u nobody -- "$got/bin/hello" 2>&1)"
    touch "$got/kept"
    again=$(cm_reachable nobody "$closed/pkg" "$CM_WORK/checkout-open/pkg")
    check_eq "the copy is made once" "$got yes" \
        "$again $([ -e "$again/kept" ] && echo yes || echo no)"
    # unpacked again (make deps after a new version): copied again
    rm -rf "$closed/pkg"
    mkdir -p "$closed/pkg/bin"
    printf '#!/bin/sh\necho new as $(id -un)\n' > "$closed/pkg/bin/hello"
    chmod 755 "$closed/pkg" "$closed/pkg/bin" "$closed/pkg/bin/hello"
    again=$(cm_reachable nobody "$closed/pkg" "$CM_WORK/checkout-open/pkg")
    check_eq "a folder unpacked again is copied again" "new as nobody no" \
        "$(runuser -u nobody -- "$again/bin/hello" 2>&1) $([ -e "$again/kept" ] && echo yes || echo no)"
    touch "$CM_WORK/checkout-file"            # no folder can be made in it
    if cm_reachable nobody "$closed/pkg" "$CM_WORK/checkout-file/pkg" >/dev/null 2>&1; then
        not_ok "a folder that can't be copied is an error" "cm_reachable succeeded"
    else
        ok "a folder that can't be copied is an error"
    fi
    chmod 755 "$closed"
    check_eq "within the user's reach, the folder itself is used" "$closed/pkg" \
        "$(cm_reachable nobody "$closed/pkg" "$CM_WORK/checkout-open/pkg2")"
    check_eq "... and no copy is made" "no" \
        "$([ -e "$CM_WORK/checkout-open/pkg2" ] && echo yes || echo no)"
    chmod 700 "$closed"

    # make demo's stack folder
    cm_stack_link "$closed/demo-stack"
    target=$(readlink "$closed/demo-stack" || true)
    case "$target" in
    /var/lib/casemail/demo-stack-*)
        ok "a stack folder out of postgres' reach is a link into /var/lib/casemail" ;;
    *)  not_ok "a stack folder out of postgres' reach is a link into /var/lib/casemail" \
            "link: ${target:-none}" ;;
    esac
    if [ -n "$target" ]; then
        mkdir -p "$target"
        chmod 755 "$target"
        check "postgres reaches the folder the link names" \
            runuser -u postgres -- test -x "$target"
        cm_setup_dir "$closed/demo-stack"
        check_eq "the stack scripts take the link for the folder it names" \
            "$target" "$D"
        rm -rf "$target"
    fi
    rm -f "$closed/demo-stack"
    # the empty folder a start.sh of an earlier version left there
    mkdir "$closed/demo-stack"
    cm_stack_link "$closed/demo-stack"
    check_eq "an empty stack folder left out of reach becomes the link" "yes" \
        "$([ -L "$closed/demo-stack" ] && echo yes || echo no)"
    rm -f "$closed/demo-stack"
    cm_stack_link "$CM_WORK/checkout-open/demo-stack"
    check_eq "a stack folder within reach stays where it is" "no" \
        "$([ -L "$CM_WORK/checkout-open/demo-stack" ] && echo yes || echo no)"
    rm -rf "$closed" "$CM_WORK/checkout-open" "$CM_WORK/checkout-file"
fi

# a build without the development packages names them
out=$(env -u MAKEFLAGS -u MAKELEVEL make -s -C "$CM_TOP" --no-print-directory pkgs PKGS="libczmq cm-no-such-package" 2>&1)
rc=$?
check_eq "make without a development package stops (exit 2)" "2" "$rc"
check_contains "... naming the package" "cm-no-such-package" "$out"
check_contains "... and what installs the packages" "run 'make deps'" "$out"
check "make with the packages installed goes on" \
    env -u MAKEFLAGS -u MAKELEVEL make -s -C "$CM_TOP" --no-print-directory pkgs
