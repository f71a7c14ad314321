#!/usr/bin/env bash
# Order-analysis benchmark: what the shadowed/redundant analysis adds to
# `fwc build`, on the generated policies (bench/gen_policy.py).
#
#     bash bench/analysis.sh
#
# For each size, interleaved in one run so that every build sees the same
# machine load (best of 5; best of 3 at 100,000 rules):
#   - `fwc build P`: the full build, order analysis included;
#   - `fwc build -A shadowed-rule -A redundant-rule P`: the same build with
#     the order analysis switched off (it is skipped when nothing it finds
#     would be reported), so the difference is the analysis' cost;
#   - the build with the host checks (lockout, neighbour discovery,
#     unused chains, return paths, family gaps) switched off as well: the
#     difference is what all the analysis adds to a build, where it runs
#     beside the writing of the outputs;
#   - the same two without writing anything (`fwc check`): what the
#     analysis costs on its own;
#   - with BASELINE_FWC=PATH, another fwc binary's full build, as a ratio.
# Also prints whether the analysis finished (no `analysis-incomplete`) and
# how many shadowed and redundant rules it reported.
#
# Environment: SIZES (default "1000 10000 100000"), SEED (default 1),
# BASELINE_FWC=PATH.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 10000 100000"}
SEED=${SEED:-1}

die() { echo "bench/analysis.sh: $*" >&2; exit 1; }

cargo build --release --quiet >&2 || die "cargo build --release failed"
FWC=$PWD/target/release/fwc
BASE=${BASELINE_FWC:-}
[ -z "$BASE" ] || [ -x "$BASE" ] || die "BASELINE_FWC=$BASE is not executable"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fwc-analysis.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 (EPOCHREALTIME)"
now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }

# timed VAR CMD...: runs CMD (output to $TMP/log), keeps the best time in VAR.
timed() {
    local var=$1 t0 t1 d
    shift
    t0=$(now_us)
    "$@" >"$TMP/log" 2>&1 || true
    t1=$(now_us)
    d=$((t1 - t0))
    if [ -z "${!var}" ] || [ "$d" -lt "${!var}" ]; then printf -v "$var" %s "$d"; fi
}

ms() { awk -v us="$1" 'BEGIN { printf "%.0f", us / 1000 }'; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| rules | build | build without order analysis | order analysis adds | build without any analysis | all analysis adds | check | check without any analysis | all analysis adds to check | result | shadowed | redundant |%s\n' \
    "${BASE:+ baseline build | build / baseline |}"
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|%s\n' "${BASE:+---:|---:|}"
for n in $SIZES; do
    python3 bench/gen_policy.py "$n" --seed "$SEED" --fw "$TMP/p$n.fw" || die "generator failed for $n"
    "$FWC" build "$TMP/p$n.fw" -o "$TMP/out" >"$TMP/diag$n" 2>&1 || true
    [ -s "$TMP/out/rules.v4" ] || { cat "$TMP/diag$n" >&2; die "fwc build wrote no rules for $n"; }
    result=complete
    if grep -q 'analysis-incomplete' "$TMP/diag$n"; then result="stopped (budget)"; fi
    shadowed=$(grep -c '^warning\[shadowed-rule\]' "$TMP/diag$n" || true)
    redundant=$(grep -c '^warning\[redundant-rule\]' "$TMP/diag$n" || true)
    reps=5; [ "$n" -ge 100000 ] && reps=3
    full= off= none= base= check= bare=
    for ((i = 1; i <= reps; i++)); do
        timed full "$FWC" build "$TMP/p$n.fw" -o "$TMP/out"
        timed off "$FWC" build -A shadowed-rule -A redundant-rule "$TMP/p$n.fw" -o "$TMP/out"
        timed none "$FWC" build -A shadowed-rule -A redundant-rule -A lockout -A no-neighbour-discovery \
            -A unused-chain -A return-path -A ipv6-gap -A ipv4-gap "$TMP/p$n.fw" -o "$TMP/out"
        timed check "$FWC" check "$TMP/p$n.fw"
        timed bare "$FWC" check -A shadowed-rule -A redundant-rule -A lockout -A no-neighbour-discovery \
            -A unused-chain -A return-path -A ipv6-gap -A ipv4-gap "$TMP/p$n.fw"
        [ -z "$BASE" ] || timed base "$BASE" build "$TMP/p$n.fw" -o "$TMP/base"
    done
    extra=
    [ -z "$BASE" ] || extra=" $(ms "$base") ms | $(awk -v a="$full" -v b="$base" 'BEGIN { printf "%.2f", a / b }') |"
    printf '| %s | %s ms | %s ms | %s ms | %s ms | %s ms | %s ms | %s ms | %s ms | %s | %s | %s |%s\n' "$n" "$(ms "$full")" "$(ms "$off")" \
        "$(ms $((full - off)))" "$(ms "$none")" "$(ms $((full - none)))" "$(ms "$check")" "$(ms "$bare")" "$(ms $((check - bare)))" \
        "$result" "$shadowed" "$redundant" "$extra"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
