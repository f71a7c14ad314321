#!/usr/bin/env bash
# Apply-time benchmark: what `fwc apply` and `fwc diff` cost on top of the
# bare restore programs, on the same built rules, in the same run.
#
#     sudo bash bench/apply.sh
#
# Builds fwc in release mode, generates policies (bench/gen_policy.py) of
# SIZES rules (default "100 1000 10000"), builds each, and in a network
# namespace of its own (nothing of the machine's own tables is touched)
# measures, best of RUNS (default 5), each from the same starting point:
#   - baseline: `iptables-restore -w < rules.v4; ip6tables-restore -w < rules.v6`
#     into empty tables;
#   - `fwc apply BUILD --confirm 0 --force` into empty tables: two dumps,
#     planning, the scratch-namespace pre-flight of both families, the
#     backups, both loads and the read-back;
#   - `fwc apply BUILD --confirm 0 --force` when nothing changes (two dumps
#     and the comparison);
#   - `fwc diff BUILD` in sync;
# and prints a markdown table with absolute times and ratios to the
# baseline. BACKEND=iptables-nft|iptables-legacy picks the programs
# (default: iptables, the system's alternative). BACKEND=nft measures
# `fwc apply --backend nft` (the scratch-namespace load and listing, the
# backup, one `nft -f`, the read-back) against a bare `nft -f rules.nft`
# into a namespace without table inet fwc; its rule count is that of
# rules.nft (rules of table inet fwc, not counting set members).
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=${SIZES:-"100 1000 10000"}
RUNS=${RUNS:-5}
BACKEND=${BACKEND:-iptables}

[ "$(id -u)" -eq 0 ] || { echo "bench/apply.sh: run as root (network namespaces)" >&2; exit 2; }
cargo build --release --quiet
FWC=$PWD/target/release/fwc

work=$(mktemp -d)
ns=fwcbench-$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$ns"

case $BACKEND in
    nft) ;;
    iptables) r4=iptables-restore; r6=ip6tables-restore ;;
    iptables-nft) r4=iptables-nft-restore; r6=ip6tables-nft-restore ;;
    iptables-legacy) r4=iptables-legacy-restore; r6=ip6tables-legacy-restore ;;
    *) echo "bench/apply.sh: unknown BACKEND $BACKEND" >&2; exit 2 ;;
esac
empty='*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT'
in_ns() { ip netns exec "$ns" "$@"; }
reset() {
    if [ "$BACKEND" = nft ]; then
        in_ns nft delete table inet fwc 2>/dev/null || true
    else
        printf '%s\n' "$empty" | in_ns "$r4" -w
        printf '%s\n' "$empty" | in_ns "$r6" -w
    fi
    rm -rf "$work/state"
}
# Best wall time of RUNS runs of "$@" in milliseconds; PREPARE runs first,
# untimed, each time.
best() {
    local prepare=$1; shift
    local best=
    for _ in $(seq "$RUNS"); do
        $prepare
        local start end
        start=$(date +%s%N)
        "$@" >/dev/null 2>&1 || { rc=$?; [ $rc -eq 3 ] || { echo "bench/apply.sh: $* failed ($rc)" >&2; exit 1; }; }
        end=$(date +%s%N)
        local ms=$(( (end - start) / 1000000 ))
        if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    done
    echo "$best"
}
nothing() { :; }
baseline() {
    if [ "$BACKEND" = nft ]; then
        in_ns nft -f "$build/rules.nft"
    else
        in_ns "$r4" -w < "$build/rules.v4" && in_ns "$r6" -w < "$build/rules.v6"
    fi
}
# Rules in the build: `-A` lines of both families, or rules.nft's rules
# (the lines of its chains but their `type … hook` lines).
kernel_rules() {
    if [ "$BACKEND" = nft ]; then
        awk '/^\tchain / { inside = 1; next } /^\t}/ { inside = 0 } inside && /^\t\t/ && !/^\t\ttype / { n++ } END { print n + 0 }' "$build/rules.nft"
    else
        cat "$build/rules.v4" "$build/rules.v6" | grep -c '^-A'
    fi
}
apply() { FWC_STATE_DIR=$work/state FWC_BACKEND=$BACKEND in_ns "$FWC" apply "$build" --confirm 0 --force; }
diff_build() { FWC_STATE_DIR=$work/state FWC_BACKEND=$BACKEND in_ns "$FWC" diff "$build"; }

if [ "$BACKEND" = nft ]; then
    echo "| rules (policy) | rules in table inet fwc | nft -f (baseline) | fwc apply | ratio | apply, no change | ratio | fwc diff | ratio |"
else
    echo "| rules (policy) | kernel rules v4+v6 | restore (baseline) | fwc apply | ratio | apply, no change | ratio | fwc diff | ratio |"
fi
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for size in $SIZES; do
    python3 bench/gen_policy.py "$size" --fw "$work/p$size.fw"
    build=$work/b$size
    "$FWC" build "$work/p$size.fw" -o "$build" --no-test >/dev/null 2>&1
    kernel=$(kernel_rules)
    t_base=$(best reset baseline)
    t_apply=$(best reset apply)
    reset; apply >/dev/null 2>&1
    t_same=$(best nothing apply)
    t_diff=$(best nothing diff_build)
    ratio() { awk -v a="$1" -v b="$t_base" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 1) }'; }
    echo "| $size | $kernel | ${t_base} ms | ${t_apply} ms | $(ratio "$t_apply") | ${t_same} ms | $(ratio "$t_same") | ${t_diff} ms | $(ratio "$t_diff") |"
done
