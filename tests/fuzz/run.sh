#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS: runs the libFuzzer harness for SECONDS,
# seeded from the shared corpus, the kept regression inputs, the seeds in
# tests/fuzz/seeds (calendars, uuencode, quotes, nested and partial
# messages, RFC 2231, odd charsets, an RTF body in TNEF), the uuencode
# and TNEF fixtures of the unit tests (each winmail.dat sent as a base64
# attachment) and the hostile-message suite, with the tokens of
# tests/fuzz/mime.dict; then replays every regression input. Prints the
# figures (runs, coverage, crashes) and exits 1 when anything crashed.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-60}
work=$(mktemp -d /tmp/casemail-fuzz.XXXXXX)
seeds=$work/seeds
mkdir -p "$seeds" "$work/corpus" "$top/tests/fuzz/regressions" "$top/tests/fuzz/crashes"
corpus=${CM_CORPUS:-$top/../shared/corpus/hunnysoft}
[ -d "$corpus" ] && cp "$corpus"/* "$seeds"/ 2>/dev/null
cp "$top"/tests/fuzz/regressions/* "$top"/tests/fuzz/seeds/* "$seeds"/ 2>/dev/null
for f in "$top"/tests/unit/uu/*.eml; do [ -f "$f" ] && cp "$f" "$seeds/uu-${f##*/}"; done
for f in "$top"/tests/unit/tnef/*.tnef; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .tnef)
    { printf 'From: Ann <ann@example.com>\r\nTo: soc@example.org\r\nSubject: tnef %s\r\n' "$n"
      printf 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
      printf -- '--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--B\r\n'
      printf 'Content-Type: application/ms-tnef; name="winmail.dat"\r\n'
      printf 'Content-Transfer-Encoding: base64\r\n\r\n'
      base64 -w 76 "$f" | sed 's/$/\r/'
      printf -- '--B--\r\n'; } > "$seeds/tnef-$n.eml"
done
"$top/bin/casemail-message-test" --write-hostile "$seeds" >/dev/null 2>&1 || true
echo "fuzz: $(ls "$seeds" | wc -l) seeds, $secs s"
"$top/bin/fuzz-message" -max_total_time="$secs" -max_len=1048576 -rss_limit_mb=2048 \
    -timeout=10 -dict="$top/tests/fuzz/mime.dict" \
    -artifact_prefix="$top/tests/fuzz/crashes/" -print_final_stats=1 \
    "$work/corpus" "$seeds" > "$work/fuzz.log" 2>&1 || true
grep -E '^(#[0-9]+.*(DONE|pulse)|stat::|==[0-9]+==ERROR|SUMMARY)' "$work/fuzz.log" | tail -12
crashes=$(ls "$top/tests/fuzz/crashes" 2>/dev/null | wc -l)
# every kept regression input must parse without a crash
regress_fail=0
for f in "$top"/tests/fuzz/regressions/*; do
    [ -f "$f" ] || continue
    "$top/bin/fuzz-message" "$f" > /dev/null 2>&1 || { echo "regression input crashes: $f"; regress_fail=1; }
done
echo "fuzz: crashes found: $crashes (in tests/fuzz/crashes/), regression inputs: $(ls "$top/tests/fuzz/regressions" | wc -l)"
rm -rf "$work"
[ "$crashes" -eq 0 ] && [ "$regress_fail" -eq 0 ]
