#!/usr/bin/env bash
# tests/run.sh: the whole test suite, as `make test` runs it.
#   tests/run.sh [NAME...]   NAME = tests/integration/NAME.sh (default: all)
# Runs the unit self-tests, starts the private test stack (PostgreSQL,
# Dovecot, Postfix on loopback; tests/stack/), runs each integration test
# against it, stops the stack, and ends with "N passed, N failed".
# Every check prints "ok - ..." or "not ok - ..."; a test script that dies
# without saying why counts as one failure. CM_BIN picks the binaries
# (bin-asan for the sanitizer build).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
export CM_TOP=$top
export CM_BIN=${CM_BIN:-$top/bin}
work=$(mktemp -d /tmp/casemail-test.XXXXXX)
# mktemp makes it 0700: the stack's postgres and dovecot users must get in.
chmod 755 "$work"
export CM_WORK=$work
results=$work/results
: > "$results"
stack_up=0

cleanup() {
    if [ "$stack_up" = 1 ]; then
        "$top/tests/stack/stop.sh" "$work/stack" >/dev/null 2>&1 || true
        stack_up=0
    fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

say() { printf '%s\n' "$*" | tee -a "$results"; }

echo "== unit self-tests"
"$CM_BIN/casemail-selftest" | grep -E '^(ok|not ok) ' | tee -a "$results"
if [ -x "$CM_BIN/casemail-message-test" ]; then
    "$CM_BIN/casemail-message-test" "${CM_CORPUS:-$top/../shared/corpus/hunnysoft}" | grep -E '^(ok|not ok) ' | tee -a "$results"
fi

if [ -x "$top/bin/fuzz-message" ] && [ "${CM_FUZZ_SECONDS:-60}" != 0 ]; then
    echo "== fuzz (${CM_FUZZ_SECONDS:-60} s)"
    if "$top/tests/fuzz/run.sh" "${CM_FUZZ_SECONDS:-60}" > "$work/fuzz.log" 2>&1; then
        say "ok - fuzz: $(grep -E 'number_of_executed_units' "$work/fuzz.log" | awk '{print $2}') inputs, no crash"
    else
        say "not ok - fuzz: $(tail -3 "$work/fuzz.log" | tr '\n' ' ')"
    fi
fi

echo "== test stack"
if "$top/tests/stack/start.sh" "$work/stack" > "$work/stack.log" 2>&1; then
    stack_up=1
    say "ok - test stack starts (PostgreSQL, Dovecot, Postfix)"
else
    say "not ok - test stack starts: $(tail -5 "$work/stack.log" | tr '\n' ' ')"
fi

if [ "$stack_up" = 1 ]; then
    if [ $# -gt 0 ]; then
        tests=()
        for n in "$@"; do tests+=("$top/tests/integration/$n.sh"); done
    else
        tests=("$top"/tests/integration/*.sh)
    fi
    for t in "${tests[@]}"; do
        name=$(basename "$t" .sh)
        echo "== $name"
        log=$work/$name.out
        ( cd "$top" && CM_TEST=$name timeout 1200 bash "$t" ) > "$log" 2>&1
        rc=$?
        grep -E '^(ok|not ok) ' "$log" | sed "s/^\(ok\|not ok\) - /\1 - $name: /" | tee -a "$results"
        if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$log"; then
            say "not ok - $name: the test script exited with $rc"
            tail -15 "$log" | sed 's/^/    /'
        elif grep -q '^not ok ' "$log"; then
            grep -E '^#' "$log" | tail -20 | sed 's/^/    /'
        fi
    done
fi
cleanup
passed=$(grep -c '^ok ' "$results")
failed=$(grep -c '^not ok ' "$results")
echo "test output kept in $work"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
