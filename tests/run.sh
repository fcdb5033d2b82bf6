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

# run_phase LABEL BINDIR: every integration test against the binaries in
# BINDIR; LABEL prefixes test names ("" for the normal build).
run_phase() {
    local label=$1 bindir=$2 t name log rc
    for t in "${tests[@]}"; do
        name=$(basename "$t" .sh)
        echo "== $label$name"
        log=$work/${label//\//-}$name.out
        ( cd "$top" && CM_BIN=$bindir CM_TEST=${label%/}${label:+-}$name timeout 1800 bash "$t" ) > "$log" 2>&1
        rc=$?
        grep -E '^(ok|not ok) ' "$log" | sed -E "s#^(ok|not ok) - #\1 - $label$name: #" | tee -a "$results"
        if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$log"; then
            say "not ok - $label$name: the test script exited with $rc"
            tail -15 "$log" | sed 's/^/    /'
        elif grep -q '^not ok ' "$log"; then
            grep -E '^#' "$log" | tail -20 | sed 's/^/    /'
        fi
    done
}

if [ "$stack_up" = 1 ]; then
    if [ $# -gt 0 ]; then
        tests=()
        for n in "$@"; do tests+=("$top/tests/integration/$n.sh"); done
    else
        tests=("$top"/tests/integration/*.sh)
    fi
    run_phase "" "$CM_BIN"
    # The same tests again on the AddressSanitizer + UBSan build (make asan),
    # with a smaller chaos run; every sanitizer report in any log fails.
    asan_bin=${CM_ASAN_BIN:-$top/bin-asan}
    if [ "${CM_SANITIZE:-1}" != 0 ] && [ -x "$asan_bin/casemail-router" ]; then
        echo "== sanitizer build ($asan_bin)"
        "$asan_bin/casemail-selftest" 2>&1 | grep -E '^(ok|not ok) ' | sed 's/^\(ok\|not ok\) - /\1 - asan\/unit: /' | tee -a "$results"
        # fresh servers: the tests count what lands in their mailboxes
        "$top/tests/stack/stop.sh" "$work/stack" >/dev/null 2>&1
        rm -rf "$work/stack"
        if ! "$top/tests/stack/start.sh" "$work/stack" > "$work/stack-asan.log" 2>&1; then
            stack_up=0
            say "not ok - asan: test stack restarts: $(tail -3 "$work/stack-asan.log" | tr '\n' ' ')"
            tests=()
        fi
        export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1}
        export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
        CHAOS_N=${CM_ASAN_CHAOS_N:-1000} CHAOS_M=${CM_ASAN_CHAOS_M:-100} run_phase "asan/" "$asan_bin"
        reports=$(grep -rlE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' \
                  "$work" --include='*.log' --include='*.out' 2>/dev/null)
        if [ -z "$reports" ]; then
            say "ok - sanitizers: no AddressSanitizer or UBSan report in any log of the run"
        else
            say "not ok - sanitizers: reports in $(echo $reports)"
            grep -rhE -A12 'ERROR: AddressSanitizer|runtime error:' $reports | head -60 | sed 's/^/    /'
        fi
    fi
fi
cleanup
passed=$(grep -c '^ok ' "$results")
failed=$(grep -c '^not ok ' "$results")
echo "test output kept in $work"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
