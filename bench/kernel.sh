#!/usr/bin/env bash
# Kernel-side benchmark: rules per backend, load time, per-packet cost.
#
#     sudo bash bench/kernel.sh
#
# Needs root: it creates network namespaces (fwcb-PID-*) and loads rules
# into them, never into the machine's own tables, and deletes them on exit.
# Builds fwc in release mode and, for generated policies of 100, 1,000,
# 10,000 and 100,000 rules (bench/gen_policy.py, seed 1), measures:
#   - build time of `fwc build POLICY --stats` (best of 3), and the rule
#     counts it prints: rules fwc lowers to, iptables rules (both families)
#     and nft rules after consolidation;
#   - how many rules a packet that falls through INPUT (matching only the
#     last rule) is tested against: the rules of INPUT and of the chains it
#     jumps to, per backend;
#   - the named sets in rules.nft;
#   - time to load the rules into a fresh namespace (best of 3):
#     ipset restore + iptables-restore + ip6tables-restore, `nft -f
#     rules.nft`, and `sh rules.sh` — one iptables call per rule, as a bash
#     setup loads them (only up to SH_MAX rules: it is quadratic); each
#     load is stopped after LOAD_TIMEOUT seconds;
#   - with BASELINE_FWC set to another fwc binary (say, a build of an
#     earlier commit), the sets in its rules.nft and the time `nft -f` takes
#     to load it (once, stopped after LOAD_TIMEOUT), against this build's;
# and, for BLOCKS (10,000) address blocks denied by one `deny in from
# $blocks` ahead of an allow, the UDP packet rate iperf3 gets through a
# veth pair into the namespace holding the rules: no rules, the blocks as
# linear iptables rules (`--no-consolidate`), as an ipset, as linear nft
# rules, and as an nft set. Ratios are against "no rules" measured in the
# same run.
#
# Environment: SIZES (default "100 1000 10000 100000"), SH_MAX (1000),
# LOAD_TIMEOUT (600), BASELINE_FWC (unset), BLOCKS (10000),
# SECONDS_PER_RUN (3), SEED (1), KEEP=1 keeps the temporary directory.
# Installs iperf3 (Debian package) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"100 1000 10000 100000"}
SH_MAX=${SH_MAX:-1000}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-600}
BASELINE_FWC=${BASELINE_FWC:-}
BLOCKS=${BLOCKS:-10000}
RUN_SECONDS=${SECONDS_PER_RUN:-3}
SEED=${SEED:-1}

die() { echo "bench/kernel.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces)"
for tool in ip iptables-restore ip6tables-restore nft ipset python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (packages iproute2 iptables nftables ipset python3)"
done
if ! command -v iperf3 >/dev/null 2>&1; then
    echo "installing: iperf3" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q iperf3 >&2 || { apt-get update -q >&2 && apt-get install -y -q iperf3 >&2; } || die "could not install iperf3"
fi

cargo build --release --quiet >&2 || die "cargo build --release failed"
FWC=$PWD/target/release/fwc

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fwc-kbench.XXXXXX")
PREFIX="fwcb-$$"
cleanup() {
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    [ "${KEEP:-0}" = 1 ] && echo "keeping $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT
COUNTER=0
fresh_ns() { COUNTER=$((COUNTER + 1)); NS="$PREFIX-$COUNTER"; ip netns add "$NS"; ip -n "$NS" link set lo up; }

now_us() { echo $(( $(date +%s%N) / 1000 )); }
# A time in microseconds, or "stopped" for a load that ran out of time.
ms() { if [ "$1" = stopped ]; then echo "over $LOAD_TIMEOUT s (stopped)"; else awk -v us="$1" 'BEGIN { printf "%.1f ms", us / 1000 }'; fi; }
ratio() { # ratio A B: A / B; an A that was stopped gives a lower bound
    awk -v a="$1" -v b="$2" -v limit="$LOAD_TIMEOUT" 'BEGIN {
        if (b !~ /^[0-9]+$/ || b == 0) print "-"
        else if (a == "stopped") printf "over %.0f", limit * 1000000 / b
        else printf "%.2f", a / b }'
}
# bounded COMMAND…: runs it in the current namespace $NS for at most LOAD_TIMEOUT seconds.
bounded() { timeout "$LOAD_TIMEOUT" ip netns exec "$NS" "$@"; }

# Rules a packet falling through INPUT is tested against: INPUT's rules
# and those of every chain it jumps to (each once).
iptables_path() {
    python3 - "$@" <<'EOF'
import re, sys
rules = {}
for path in sys.argv[1:]:
    for line in open(path):
        if line.startswith("*"):
            table = line[1:].strip()
        m = re.match(r"-A (\S+) (.*)", line)
        if m and table == "filter":
            rules.setdefault((path, m.group(1)), []).append(m.group(2))
def count(path, chain, seen):
    total = 0
    for rule in rules.get((path, chain), []):
        total += 1
        j = re.search(r"-j (\S+)", rule)
        if j and (path, j.group(1)) in rules and j.group(1) not in seen:
            seen.add(j.group(1))
            total += count(path, j.group(1), seen)
    return total
print(sum(count(path, "INPUT", set()) for path in sys.argv[1:]))
EOF
}
nft_path() {
    python3 - "$1" <<'EOF'
import re, sys
rules, chain = {}, None
for line in open(sys.argv[1]):
    m = re.match(r"\tchain (\S+) \{", line)
    if m:
        chain = m.group(1); rules[chain] = []; continue
    if chain and line.startswith("\t\t") and not line.startswith("\t\ttype "):
        rules[chain].append(line)
    if line.startswith("\t}"):
        chain = None
def count(chain, seen):
    total = 0
    for rule in rules.get(chain, []):
        total += 1
        j = re.search(r"jump (\S+)", rule)
        if j and j.group(1) not in seen:
            seen.add(j.group(1)); total += count(j.group(1), seen)
    return total
print(count("INPUT", set()))
EOF
}

# timed_load STEP DIR: microseconds that STEP takes to load DIR's rules
# into a fresh namespace, or "stopped" (each step is bounded by
# LOAD_TIMEOUT). The namespace is deleted either way.
timed_load() {
    fresh_ns
    local start end
    start=$(now_us)
    if ! "$1" "$2"; then ip netns del "$NS"; echo stopped; return; fi
    end=$(now_us)
    ip netns del "$NS"
    echo $((end - start))
}
iptables_step() {
    if grep -qv '^#' "$1/ipsets.restore"; then bounded ipset restore < "$1/ipsets.restore" || return 1; fi
    bounded iptables-restore < "$1/rules.v4" && bounded ip6tables-restore < "$1/rules.v6"
}
nft_step() { bounded nft -f "$1/rules.nft"; }
sh_step() { bounded sh "$1/rules.sh" >/dev/null; }
load_iptables() { timed_load iptables_step "$1"; }
load_nft() { timed_load nft_step "$1"; }
load_sh() { timed_load sh_step "$1"; }
best_of() { # best_of N COMMAND ARGS…: the smallest of N runs' outputs; "stopped" if one was stopped
    local n=$1 best= value; shift
    for _ in $(seq "$n"); do
        value=$("$@")
        if [ "$value" = stopped ]; then echo stopped; return; fi
        if [ -z "$best" ] || [ "$value" -lt "$best" ]; then best=$value; fi
    done
    echo "$best"
}
nft_sets() { grep -c $'^\tset ' "$1/rules.nft" || true; }

echo "## Rules and load time (seed $SEED)"
echo
baseline_head=; baseline_rule=
if [ -n "$BASELINE_FWC" ]; then
    baseline_head=" baseline rules.nft: nft, sets | load: baseline nft -f | baseline / this nft -f |"
    baseline_rule="---|---|---|"
fi
echo "| rules in the policy | build | lowered | iptables (v4+v6) | nft | nft sets | tested by a packet falling through INPUT: iptables / nft | load: iptables-restore | load: nft -f | nft -f / iptables-restore | load: sh rules.sh (one call per rule) | sh / iptables-restore | sh / nft |$baseline_head"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|$baseline_rule"
for n in $SIZES; do
    python3 bench/gen_policy.py "$n" --seed "$SEED" --fw "$TMP/p$n.fw" >/dev/null
    out="$TMP/out$n"
    build_best=
    for _ in 1 2 3; do
        start=$(now_us)
        "$FWC" build "$TMP/p$n.fw" --no-test --stats -o "$out" 2>"$TMP/stats$n" >/dev/null || die "fwc build failed for $n rules"
        took=$(( $(now_us) - start ))
        if [ -z "$build_best" ] || [ "$took" -lt "$build_best" ]; then build_best=$took; fi
    done
    stats=$(grep '^rules:' "$TMP/stats$n")
    lowered=$(sed -n 's/^rules: \([0-9]*\) before.*/\1/p' <<<"$stats")
    ipt=$(sed -n 's/.*; iptables \([0-9]*\) .*/\1/p' <<<"$stats")
    nft=$(sed -n 's/.*; nft \([0-9]*\).*/\1/p' <<<"$stats")
    path_ipt=$(iptables_path "$out/rules.v4" "$out/rules.v6")
    path_nft=$(nft_path "$out/rules.nft")
    load_i=$(best_of 3 load_iptables "$out")
    load_n=$(best_of 3 load_nft "$out")
    if [ "$n" -le "$SH_MAX" ]; then
        load_s=$(best_of 1 load_sh "$out")
        sh_text=$(ms "$load_s"); r1=$(ratio "$load_s" "$load_i"); r2=$(ratio "$load_s" "$load_n")
    else
        sh_text="not run (SH_MAX=$SH_MAX)"; r1=-; r2=-
    fi
    baseline_cells=
    if [ -n "$BASELINE_FWC" ]; then
        "$BASELINE_FWC" build "$TMP/p$n.fw" --no-test --stats -o "$out-baseline" 2>"$TMP/stats$n-baseline" >/dev/null \
            || die "the baseline fwc build failed for $n rules"
        nft_b=$(sed -n 's/.*; nft \([0-9]*\).*/\1/p' "$TMP/stats$n-baseline")
        load_b=$(load_nft "$out-baseline")
        baseline_cells=" $nft_b, $(nft_sets "$out-baseline") | $(ms "$load_b") | $(ratio "$load_b" "$load_n") |"
    fi
    echo "| $n | $(ms "$build_best") | $lowered | $ipt | $nft | $(nft_sets "$out") | $path_ipt / $path_nft | $(ms "$load_i") | $(ms "$load_n") | $(ratio "$load_n" "$load_i") | $sh_text | $r1 | $r2 |$baseline_cells"
done
echo

# ---------------------------------------------------------------- per packet

python3 - "$BLOCKS" > "$TMP/blocks.fw" <<'EOF'
import sys
n = int(sys.argv[1])
# Distinct, non-adjacent /32s in 10.0.0.0/8 (never the sender's address).
blocks = [f"10.{(i * 2) // 65536 % 256}.{(i * 2) // 256 % 256}.{(i * 2) % 256}" for i in range(n)]
print("# Generated by bench/kernel.sh: a deny list of", n, "blocks before an allow.")
print("policy in drop")
print("ignore no-neighbour-discovery \"a benchmark over IPv4\"")
print("let blocks = {", ", ".join(blocks), "}")
print("deny in from $blocks")
print("allow in tcp 5201 ipv4 stateful")
print("allow in udp 5201 ipv4 stateful")
EOF
"$FWC" build "$TMP/blocks.fw" --no-test -o "$TMP/blocks-sets" 2>/dev/null || die "fwc build of the blocks policy failed"
"$FWC" build "$TMP/blocks.fw" --no-test --no-consolidate -o "$TMP/blocks-linear" 2>/dev/null || die "fwc build --no-consolidate failed"

# rate LOADER DIR: UDP packets per second (64-byte payloads) iperf3 gets
# from a peer namespace into a host namespace with the rules loaded.
rate() {
    fresh_ns; local host=$NS
    fresh_ns; local peer=$NS
    ip -n "$host" link add eth0 type veth peer name eth0 netns "$peer"
    ip -n "$host" addr add 198.19.0.1/24 dev eth0; ip -n "$host" link set eth0 up
    ip -n "$peer" addr add 198.19.0.2/24 dev eth0; ip -n "$peer" link set eth0 up
    case "$1" in
        none) ;;
        iptables)
            if grep -qv '^#' "$2/ipsets.restore"; then ip netns exec "$host" ipset restore < "$2/ipsets.restore"; fi
            ip netns exec "$host" iptables-restore < "$2/rules.v4" ;;
        nft) ip netns exec "$host" nft -f "$2/rules.nft" ;;
    esac
    ip netns exec "$host" iperf3 -s -1 -D -B 198.19.0.1 >/dev/null 2>&1
    sleep 0.5
    ip netns exec "$peer" iperf3 -c 198.19.0.1 -u -b 0 -l 64 -t "$RUN_SECONDS" -J > "$TMP/iperf.json" \
        || die "iperf3 failed ($1 $2)"
    python3 - "$TMP/iperf.json" <<'EOF'
import json, sys
end = json.load(open(sys.argv[1]))["end"]["sum"]
print(int((end["packets"] - end["lost_packets"]) / end["seconds"]))
EOF
    ip netns del "$host"; ip netns del "$peer"
}
best_rate() { # the best of 3 runs
    local best=0 value
    for _ in 1 2 3; do value=$(rate "$@"); [ "$value" -gt "$best" ] && best=$value; done
    echo "$best"
}
none=$(best_rate none -)
echo "## Per-packet cost: $BLOCKS address blocks ahead of the matching rule"
echo
echo "| rules in the host namespace | kernel rules tested per packet | UDP packets/s received (64-byte payloads) | rate / no rules |"
echo "|---|---|---|---|"
echo "| none | 0 | $none | 1.00 |"
for case in "iptables linear:iptables:$TMP/blocks-linear" "iptables + ipset:iptables:$TMP/blocks-sets" \
            "nft linear:nft:$TMP/blocks-linear" "nft + named set:nft:$TMP/blocks-sets"; do
    IFS=: read -r name loader dir <<<"$case"
    if [ "$loader" = iptables ]; then tested=$(iptables_path "$dir/rules.v4"); else tested=$(nft_path "$dir/rules.nft"); fi
    value=$(best_rate "$loader" "$dir")
    echo "| $name | $tested | $value | $(ratio "$value" "$none") |"
done
