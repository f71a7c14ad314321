#!/usr/bin/env bash
# Build-time benchmark: fwc against ferm on the same generated policies.
#
#     bash bench/build.sh
#
# Builds fwc in release mode, generates policies of 1,000, 10,000 and
# 100,000 rules (bench/gen_policy.py: a .fw policy and the equivalent ferm
# configuration, in a temporary directory), and for each size measures, in
# this one run and interleaved so that both tools see the same machine load:
#   - wall time of `fwc build POLICY -o DIR` (best of 5; best of 3 at 100k)
#   - wall time of `ferm --remote CONF` (same), which only prints the
#     iptables-restore text: it neither runs iptables nor reads netfilter
#     (checked below with strace; `--noexec --lines` still runs
#     iptables-save, so it is not used)
#   - peak RSS of each (/usr/bin/time -f %M), and the input sizes
# and prints markdown tables with absolute figures and fwc/ferm ratios.
#
# Environment: SIZES="1000 10000" to change the sizes, SEED (default 1),
# KEEP=1 to keep the temporary directory, BASELINE=REV (a git revision) to
# also build that revision of fwc (in a temporary worktree) and time it in
# the same interleaved runs, against the working tree's fwc. Exits non-zero if anything fails;
# missing the performance targets is reported, not a failure.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 10000 100000"}
SEED=${SEED:-1}

die() { echo "bench/build.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------- tools

need=()
command -v ferm >/dev/null 2>&1 || [ -x /usr/sbin/ferm ] || need+=(ferm)
[ -x /usr/bin/time ] || need+=(time)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${need[@]}" >&2; } \
        || die "could not install ${need[*]}"
fi
FERM=$(command -v ferm || echo /usr/sbin/ferm)
[ -x "$FERM" ] || die "ferm not found after install"

cargo build --release --quiet >&2 || die "cargo build --release failed"
FWC=$PWD/target/release/fwc
[ -x "$FWC" ] || die "no $FWC after the build"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fwc-bench.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "keeping $TMP" >&2
else
    trap 'rm -rf "$TMP"; [ -z "${BASELINE:-}" ] || git worktree remove --force "$TMP.baseline" >/dev/null 2>&1 || true' EXIT
fi

# BASELINE=REV: that revision's fwc, built apart from the working tree.
BASE_FWC=
if [ -n "${BASELINE:-}" ]; then
    base_rev=$(git rev-parse --short "$BASELINE^{commit}") || die "BASELINE=$BASELINE is not a revision"
    echo "building baseline $base_rev" >&2
    git worktree add --detach "$TMP.baseline" "$base_rev" >&2 || die "cannot check out $base_rev"
    (cd "$TMP.baseline" && CARGO_TARGET_DIR="$TMP/baseline-target" cargo build --release --quiet >&2) \
        || die "cargo build --release failed for $base_rev"
    BASE_FWC=$TMP/baseline-target/release/fwc
fi

# now_us: wall clock in microseconds, without forking (bash 5 EPOCHREALTIME).
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 (EPOCHREALTIME)"
now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }

# run_fwc N / run_ferm N: one build of size N, output into $TMP; fail loudly.
run_fwc()  { "$FWC" build "$TMP/p$1.fw" -o "$TMP/fwc-out$1" >"$TMP/fwc$1.log" 2>&1 \
                 || { cat "$TMP/fwc$1.log" >&2; die "fwc build failed on $1 rules"; }; }
run_base() { "$BASE_FWC" build "$TMP/p$1.fw" -o "$TMP/base-out$1" >"$TMP/base$1.log" 2>&1 \
                 || { cat "$TMP/base$1.log" >&2; die "baseline fwc build failed on $1 rules"; }; }
run_ferm() { "$FERM" --remote "$TMP/p$1.ferm" >"$TMP/ferm-out$1" 2>"$TMP/ferm$1.log" \
                 || { cat "$TMP/ferm$1.log" >&2; die "ferm failed on $1 rules"; }; }

# peak_rss_kb CMD...: the command's peak RSS in KiB.
peak_rss_kb() {
    /usr/bin/time -f %M -o "$TMP/rss" "$@" || die "failed under /usr/bin/time: $*"
    tail -n 1 "$TMP/rss"
}

# ---------------------------------------------------------------- ferm stays off the kernel

python3 bench/gen_policy.py 100 --seed "$SEED" --ferm "$TMP/check.ferm" || die "generator failed"
strace -f -qq -o "$TMP/strace" -e trace=execve,socket "$FERM" --remote "$TMP/check.ferm" >/dev/null \
    || die "ferm --remote failed under strace"
if grep -E 'execve\(' "$TMP/strace" | grep -v ENOENT | grep -vqE 'execve\("[^"]*/(ferm|perl[0-9.]*)"'; then
    grep execve "$TMP/strace" >&2
    die "ferm --remote ran another program (it must not touch netfilter)"
fi
if grep -qE 'AF_NETLINK|PF_NETLINK' "$TMP/strace"; then
    die "ferm --remote opened a netlink socket (it must not touch netfilter)"
fi

# ---------------------------------------------------------------- measure

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

declare -A FW_BYTES FERM_BYTES FWC_US FERM_US FWC_KB FERM_KB FWC_LINES FWC_OWN FERM_LINES BASE_US BASE_KB
for n in $SIZES; do
    echo "== $n rules" >&2
    python3 bench/gen_policy.py "$n" --seed "$SEED" --fw "$TMP/p$n.fw" --ferm "$TMP/p$n.ferm" \
        || die "generator failed for $n"
    got=$(grep -cE '^[[:space:]]*(allow|deny|reject|jump|return)([[:space:]]|$)' "$TMP/p$n.fw")
    [ "$got" -eq "$n" ] || die "p$n.fw has $got rule lines, not $n"
    got=$(grep -c '^domain .* table filter chain ' "$TMP/p$n.ferm")
    [ "$got" -eq "$n" ] || die "p$n.ferm has $got rule statements, not $n"
    FW_BYTES[$n]=$(stat -c %s "$TMP/p$n.fw")
    FERM_BYTES[$n]=$(stat -c %s "$TMP/p$n.ferm")

    # First runs: correctness, peak memory, and warm caches.
    FWC_KB[$n]=$(peak_rss_kb "$FWC" build "$TMP/p$n.fw" -o "$TMP/fwc-out$n")
    [ -z "$BASE_FWC" ] || BASE_KB[$n]=$(peak_rss_kb "$BASE_FWC" build "$TMP/p$n.fw" -o "$TMP/base-out$n")
    FERM_KB[$n]=$(peak_rss_kb sh -c 'exec "$1" --remote "$2" >"$3"' sh "$FERM" "$TMP/p$n.ferm" "$TMP/ferm-out$n")
    for f in rules.v4 rules.v6 rules.sh saved.v4 saved.v6 rules.nft; do
        [ -s "$TMP/fwc-out$n/$f" ] || die "fwc wrote no $f for $n rules"
    done
    # Rule for rule, ferm's statements are fwc's rules before consolidation
    # (which merges neighbours that differ in one list).
    "$FWC" build --no-consolidate "$TMP/p$n.fw" -o "$TMP/fwc-exact$n" >/dev/null 2>&1 || die "fwc build --no-consolidate failed for $n"
    FWC_LINES[$n]=$(cat "$TMP/fwc-exact$n/rules.v4" "$TMP/fwc-exact$n/rules.v6" | grep -c '^-A ')
    # Without the reply rules that `stateful` derives (ESTABLISHED-only
    # rules and the .reply chains) and the allows for the answers `reject`
    # sends (RELATED-only): what the ferm file spells out itself.
    FWC_OWN[$n]=$(cat "$TMP/fwc-exact$n/rules.v4" "$TMP/fwc-exact$n/rules.v6" | grep '^-A ' \
        | grep -v -e '--ctstate ESTABLISHED -j' -e '--ctstate RELATED -j' -e '^-A [^ ]*\.reply ' | wc -l)
    FERM_LINES[$n]=$(grep -c '^-A ' "$TMP/ferm-out$n")
    [ "${FERM_LINES[$n]}" -gt 0 ] || die "ferm printed no rules for $n"
    [ "${FWC_OWN[$n]}" -eq "${FERM_LINES[$n]}" ] \
        || echo "warning: $n rules: fwc emits ${FWC_OWN[$n]} rules besides derived replies, ferm ${FERM_LINES[$n]}; the inputs may no longer be equivalent" >&2

    reps=5; [ "$n" -ge 100000 ] && reps=3
    best_fwc=; best_ferm=; best_base=
    for ((i = 1; i <= reps; i++)); do
        t0=$(now_us); run_fwc "$n"; t1=$(now_us)
        d=$((t1 - t0)); { [ -z "$best_fwc" ] || [ "$d" -lt "$best_fwc" ]; } && best_fwc=$d
        if [ -n "$BASE_FWC" ]; then
            t0=$(now_us); run_base "$n"; t1=$(now_us)
            d=$((t1 - t0)); { [ -z "$best_base" ] || [ "$d" -lt "$best_base" ]; } && best_base=$d
        fi
        t0=$(now_us); run_ferm "$n"; t1=$(now_us)
        d=$((t1 - t0)); { [ -z "$best_ferm" ] || [ "$d" -lt "$best_ferm" ]; } && best_ferm=$d
        echo "   run $i/$reps: fwc $((best_fwc / 1000)) ms best, ferm $((best_ferm / 1000)) ms best" >&2
    done
    FWC_US[$n]=$best_fwc
    BASE_US[$n]=$best_base
    FERM_US[$n]=$best_ferm
done

# ---------------------------------------------------------------- report

ms()    { awk -v us="$1" 'BEGIN { v = us / 1000; printf (v < 100 ? "%.1f ms" : "%.0f ms"), v }'; }
mb()    { awk -v kb="$1" 'BEGIN { printf "%.1f MB", kb * 1024 / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf (r < 0.1 ? "%.3f" : "%.2f"), r }'; }
per()   { awk -v kb="$1" -v bytes="$2" 'BEGIN { printf "%.1f×", kb * 1024 / bytes }'; }
num()   { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

ferm_version=$("$FERM" --version 2>/dev/null | head -n 1)
echo "## fwc vs ferm: build time"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- machine: $(nproc) cores (nproc), $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(free -g | awk '/^Mem:/ { print $2 " GiB" }') memory; load average $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after"
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- compiler stdlib Cargo.toml Cargo.lock 2>/dev/null || revision+=" with uncommitted changes"
echo "- fwc $revision ($(rustc --version)), release build; ${ferm_version:-ferm}, \`--remote\`"
echo "- seed $SEED; time: best of 5 (best of 3 at 100,000 rules), runs of both tools interleaved; memory: peak RSS"
echo
echo "| rules | fwc time | ferm time | time fwc/ferm | fwc peak RSS | ferm peak RSS | RSS fwc/ferm |"
echo "|------:|---------:|----------:|--------------:|-------------:|--------------:|-------------:|"
for n in $SIZES; do
    echo "| $(num "$n") | $(ms "${FWC_US[$n]}") | $(ms "${FERM_US[$n]}") | $(ratio "${FWC_US[$n]}" "${FERM_US[$n]}") \
| $(mb "${FWC_KB[$n]}") | $(mb "${FERM_KB[$n]}") | $(ratio "${FWC_KB[$n]}" "${FERM_KB[$n]}") |"
done
echo
echo "| rules | .fw input | ferm input | fwc RSS / input | ferm RSS / input | iptables rules, fwc | fwc without derived replies | iptables rules, ferm |"
echo "|------:|----------:|-----------:|----------------:|-----------------:|--------------------:|----------------------------:|---------------------:|"
for n in $SIZES; do
    echo "| $(num "$n") | $(num "${FW_BYTES[$n]}") B | $(num "${FERM_BYTES[$n]}") B \
| $(per "${FWC_KB[$n]}" "${FW_BYTES[$n]}") | $(per "${FERM_KB[$n]}" "${FERM_BYTES[$n]}") \
| $(num "${FWC_LINES[$n]}") | $(num "${FWC_OWN[$n]}") | $(num "${FERM_LINES[$n]}") |"
done
echo
if [ -n "$BASE_FWC" ]; then
    echo "Against baseline fwc $base_rev, timed in the same interleaved runs:"
    echo
    echo "| rules | baseline time | fwc time | time fwc/baseline | baseline peak RSS | fwc peak RSS | RSS fwc/baseline |"
    echo "|------:|--------------:|---------:|------------------:|------------------:|-------------:|-----------------:|"
    for n in $SIZES; do
        echo "| $(num "$n") | $(ms "${BASE_US[$n]}") | $(ms "${FWC_US[$n]}") | $(ratio "${FWC_US[$n]}" "${BASE_US[$n]}") \
| $(mb "${BASE_KB[$n]}") | $(mb "${FWC_KB[$n]}") | $(ratio "${FWC_KB[$n]}" "${BASE_KB[$n]}") |"
    done
    echo
fi
echo "Targets: 10,000 rules under 20 ms, 100,000 under 200 ms, peak RSS under 10× the input."
echo
for n in $SIZES; do
    case $n in 10000) limit=20000 ;; 100000) limit=200000 ;; *) limit= ;; esac
    line="- $(num "$n") rules:"
    if [ -n "$limit" ]; then
        if [ "${FWC_US[$n]}" -lt "$limit" ]; then line+=" time met"; else line+=" time MISSED"; fi
        line+=" ($(ms "${FWC_US[$n]}") vs $(ms "$limit"));"
    fi
    if [ $((FWC_KB[$n] * 1024)) -lt $((FW_BYTES[$n] * 10)) ]; then line+=" memory met"; else line+=" memory MISSED"; fi
    line+=" ($(per "${FWC_KB[$n]}" "${FW_BYTES[$n]}") the input)"
    echo "$line"
done
