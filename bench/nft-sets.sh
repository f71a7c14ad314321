#!/usr/bin/env bash
# What makes `nft -f` slow with many sets: synthetic tables, timed.
#
#     sudo bash bench/nft-sets.sh
#
# Needs root: it loads each table into a network namespace it creates
# (fwcs-PID-N) and deletes, never into the machine's own tables. Each table
# is `table inet t` with one base chain of RULES rules `ip saddr A tcp dport
# … accept` (A distinct per rule) and, by MODE:
#   - none:  every rule matches one port (no set);
#   - named: SETS named sets of three ports, rule i matching set i % SETS;
#   - anon:  every rule matching an anonymous set of three ports;
#   - sets:  the SETS named sets and no rule at all.
# For each case it prints the wall time of `nft -f` (one run, stopped after
# LOAD_TIMEOUT seconds) and the user and system CPU time of nft: the system
# time is the kernel's work on the transaction.
#
# Environment: CASES (default below: "RULES:SETS:MODE" words),
# LOAD_TIMEOUT (300).
set -euo pipefail
CASES=${CASES:-"20000:0:none 20000:1:named 20000:1000:named 20000:5000:named 20000:10000:named 20000:20000:named 10000:10000:named 0:10000:sets 0:20000:sets 5000:0:anon 10000:0:anon"}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-300}

die() { echo "bench/nft-sets.sh: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces)"
for tool in ip nft python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (packages iproute2 nftables python3)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fwc-nftsets.XXXXXX")
PREFIX="fwcs-$$"
cleanup() {
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

generate() { # generate RULES SETS MODE > FILE
    python3 - "$@" <<'EOF'
import sys
rules, sets, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print("table inet t {}\ndelete table inet t\ntable inet t {")
if mode in ("named", "sets"):
    for s in range(sets):
        print(f"\tset ports-{s + 1} {{ type inet_service; flags interval; elements = {{ {s % 60000 + 1}, {s % 60000 + 2}, 65000 }}; }}")
print("\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;")
for r in range(rules if mode != "sets" else 0):
    address = f"10.{r // 65536 % 256}.{r // 256 % 256}.{r % 256}"
    if mode == "named":
        match = f"tcp dport @ports-{r % sets + 1}"
    elif mode == "anon":
        match = f"tcp dport {{ {r % 60000 + 1}, {r % 60000 + 2}, 65000 }}"
    else:
        match = f"tcp dport {r % 60000 + 1}"
    print(f"\t\tip saddr {address} {match} accept")
print("\t}\n}")
EOF
}

echo "| rules | sets | spelling | nft -f | user CPU | system CPU |"
echo "|---|---|---|---|---|---|"
counter=0
for case in $CASES; do
    IFS=: read -r rules sets mode <<<"$case"
    generate "$rules" "$sets" "$mode" > "$TMP/table.nft"
    counter=$((counter + 1)); ns="$PREFIX-$counter"
    ip netns add "$ns"
    if /usr/bin/time -f "%e %U %S" -o "$TMP/time" timeout "$LOAD_TIMEOUT" ip netns exec "$ns" nft -f "$TMP/table.nft"; then
        read -r wall user system < "$TMP/time"
        echo "| $rules | $sets | $mode | $wall s | $user s | $system s |"
    else
        echo "| $rules | $sets | $mode | over $LOAD_TIMEOUT s (stopped) | - | - |"
    fi
    ip netns del "$ns"
done
