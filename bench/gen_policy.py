#!/usr/bin/env python3
"""Generate a realistic, deterministic firewall policy of N rules for benchmarks.

The same generated rule list can be written as an fwc policy (.fw) and as
the equivalent ferm configuration, so that both tools compile comparable
input:

    python3 bench/gen_policy.py 10000 --fw /tmp/p.fw --ferm /tmp/p.ferm

"N rules" means N rule lines (allow, deny, reject, jump, return) in the
.fw file; the ferm file has exactly one rule statement (a line starting
`domain … table filter chain`) for each of them, in the same order and
chain. Both files also carry the same small header: drop policies in every
direction and an ESTABLISHED,RELATED accept in INPUT and OUTPUT (`use
established` in fwc).

What differs, and why: fwc's `stateful` derives a reply rule per rule; ferm
has no such feature, and a ferm user relies on the header's
ESTABLISHED,RELATED accept instead. So for the same input, fwc emits more
iptables rules than ferm does (bench/build.sh counts both, and checks that
they match once the derived replies are left out). `--stats` prints how
many rules of each kind were generated.

Addresses come only from 198.18.0.0/15 (benchmarking range), 10.0.0.0/8 and
fd00::/8. Nothing is sent anywhere: this writes text files.
"""

import argparse
import ipaddress
import random
import sys

V4_POOLS = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("10.0.0.0/8")]
V6_POOL = ipaddress.ip_network("fd00::/8")

# Ports seen on real servers, weighted toward the common ones by repetition.
COMMON_TCP = [22, 22, 25, 80, 80, 80, 110, 143, 443, 443, 443, 465, 587, 993, 995,
              1194, 2379, 3000, 3306, 5432, 5666, 6379, 8080, 8443, 9000, 9090,
              9100, 9200, 11211, 27017]
COMMON_UDP = [53, 53, 67, 69, 123, 123, 161, 500, 514, 1194, 1812, 1813, 4500,
              5353, 51820]
CHAINS = ["web", "mail", "vpn", "monitoring"]
LOG_PREFIXES = ["blocked: ", "telnet: ", "scan: ", "bad-src: ", "legacy: "]
LIMITS = [("10/second", 20), ("25/minute", 100), ("100/minute", 200), ("5/second", 10)]


def net_text(net):
    """A host without its /32 or /128, as people write it; a block as CIDR."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


class Rule:
    """One rule line, independent of the output syntax."""

    __slots__ = ("action", "direction", "proto", "ports", "src", "dst",
                 "stateful", "log", "limit", "target")

    def __init__(self, action, direction=None, proto=None, ports=None, src=None,
                 dst=None, stateful=False, log=None, limit=None, target=None):
        self.action = action        # allow | deny | reject | jump | return
        self.direction = direction  # in | out | None (inside a chain)
        self.proto = proto          # tcp | udp | None
        self.ports = ports or []    # [int | (lo, hi)]
        self.src = src              # None | ("addr", [nets]) | ("var", name)
        self.dst = dst
        self.stateful = stateful
        self.log = log
        self.limit = limit          # (rate, burst)
        self.target = target        # chain name for jump


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    # ------------------------------------------------------------ values

    def v4(self, host=False):
        pool = self.r.choice(V4_POOLS)
        plen = 32 if host else self.r.choices([32, 28, 24, 22, 20, 16], [30, 10, 35, 10, 10, 5])[0]
        plen = max(plen, pool.prefixlen)
        addr = int(pool.network_address) + self.r.getrandbits(32 - pool.prefixlen)
        return ipaddress.ip_network((addr, plen), strict=False)

    def v6(self, host=False):
        plen = 128 if host else self.r.choices([128, 64, 56, 48], [30, 40, 10, 20])[0]
        addr = int(V6_POOL.network_address) + self.r.getrandbits(128 - V6_POOL.prefixlen)
        return ipaddress.ip_network((addr, plen), strict=False)

    def addr(self, v6_share=0.3, host=False):
        return self.v6(host) if self.r.random() < v6_share else self.v4(host)

    def mixed_set(self):
        n = self.r.randint(2, 5)
        nets = [self.v4() for _ in range(self.r.randint(1, n - 1))]
        nets += [self.v6() for _ in range(n - len(nets))]
        self.r.shuffle(nets)
        return ("addr", list(dict.fromkeys(nets)))  # no member twice

    def port(self, proto):
        if self.r.random() < 0.7:
            return self.r.choice(COMMON_TCP if proto == "tcp" else COMMON_UDP)
        return self.r.randint(1024, 65000)

    def port_range(self):
        lo = self.r.randint(1024, 64000)
        return (lo, lo + self.r.choice([10, 100, 500, 1000]))

    def ports(self, proto):
        """A port list: one port, several, a range, or a mix."""
        kind = self.r.choices(["one", "list", "range", "mixed"], [40, 35, 10, 15])[0]
        if kind == "one":
            return [self.port(proto)]
        if kind == "range":
            return [self.port_range()]
        out = []
        for p in (self.port(proto) for _ in range(self.r.randint(2, 5))):
            if p not in out:
                out.append(p)
        if kind == "mixed":
            out.append(self.port_range())
        return out

    # ------------------------------------------------------------ rules

    def top_rule(self, variables):
        r = self.r
        kind = r.choices(
            ["in_tcp", "out_udp", "deny_from", "in_mixed", "in_v6", "out_tcp",
             "reject", "log", "limit", "out_udp6", "in_var"],
            [26, 12, 12, 10, 6, 6, 6, 5, 5, 5, 7])[0]
        if kind == "in_tcp":
            return Rule("allow", "in", "tcp", [self.port("tcp")], src=("addr", [self.v4()]), stateful=True)
        if kind == "out_udp":
            return Rule("allow", "out", "udp", self.ports("udp"), dst=("addr", [self.v4()]))
        if kind == "deny_from":
            return Rule("deny", "in", src=("addr", [self.addr(host=r.random() < 0.6)]))
        if kind == "in_mixed":
            return Rule("allow", "in", "tcp", self.ports("tcp"), src=self.mixed_set(), stateful=True)
        if kind == "in_v6":
            return Rule("allow", "in", "tcp", [self.port("tcp")], src=("addr", [self.v6()]), stateful=True)
        if kind == "out_tcp":
            return Rule("allow", "out", "tcp", self.ports("tcp"), dst=("addr", [self.v4()]), stateful=True)
        if kind == "reject":
            proto = r.choice(["tcp", "udp"])
            return Rule("reject", "in", proto, [self.port(proto)], src=("addr", [self.addr()]))
        if kind == "log":
            return Rule("deny", "in", "tcp", [self.port("tcp")], src=("addr", [self.addr()]),
                        log=r.choice(LOG_PREFIXES))
        if kind == "limit":
            return Rule("allow", "in", "tcp", [self.port("tcp")], src=("addr", [self.v4()]),
                        stateful=True, limit=r.choice(LIMITS))
        if kind == "out_udp6":
            return Rule("allow", "out", "udp", self.ports("udp"), dst=("addr", [self.v6()]))
        # in_var: a service open to one of the named address sets
        return Rule("allow", "in", "tcp", self.ports("tcp"), src=("var", r.choice(variables)), stateful=True)

    def chain_rule(self):
        r = self.r
        kind = r.choices(["allow", "allow_mixed", "deny", "reject"], [55, 15, 20, 10])[0]
        if kind == "allow":
            return Rule("allow", None, "tcp", self.ports("tcp"), src=("addr", [self.addr()]), stateful=True)
        if kind == "allow_mixed":
            return Rule("allow", None, "tcp", self.ports("tcp"), src=self.mixed_set(), stateful=True)
        if kind == "deny":
            return Rule("deny", None, src=("addr", [self.addr(host=True)]))
        return Rule("reject", None, "tcp", [self.port("tcp")], src=("addr", [self.addr()]))

    def policy(self, n):
        """Returns (variables, chains {name: [Rule]}, top-level [Rule]); n rules in all."""
        if n < 20:
            raise SystemExit("gen_policy: N must be at least 20")
        r = self.r
        variables = {
            "admins": [self.v4(), self.v4(), self.v6()],
            "probes": [self.v4(), self.v6()],
            "partners": [self.v4() for _ in range(4)] + [self.v6() for _ in range(2)],
        }
        variables = {name: list(dict.fromkeys(nets)) for name, nets in variables.items()}
        jumps_per_chain = 2
        n_jumps = jumps_per_chain * len(CHAINS)
        in_chains = max(len(CHAINS) * 2, n * 8 // 100)   # ~8% of rules live in chains
        n_top = n - n_jumps - in_chains
        chains = {}
        left = in_chains
        for i, name in enumerate(CHAINS):
            size = left // (len(CHAINS) - i)
            left -= size
            body = [self.chain_rule() for _ in range(size - 1)]
            body.append(Rule("return"))
            chains[name] = body
        top = [self.top_rule(sorted(variables)) for _ in range(n_top)]
        for name in CHAINS:
            for _ in range(jumps_per_chain):
                ports = self.ports("tcp")
                src = ("addr", [self.v4(), self.v6()]) if r.random() < 0.5 else None
                top.insert(r.randrange(len(top) + 1), Rule("jump", "in", "tcp", ports, src=src, target=name))
        assert n_top + n_jumps + in_chains == n
        return variables, chains, top


# ---------------------------------------------------------------- fwc

def fw_ports(ports):
    return ", ".join(f"{p[0]}-{p[1]}" if isinstance(p, tuple) else str(p) for p in ports)


def fw_addrs(spec):
    if spec[0] == "var":
        return "$" + spec[1]
    nets = spec[1]
    if len(nets) == 1:
        return net_text(nets[0])
    return "{ " + ", ".join(net_text(x) for x in nets) + " }"


def fw_rule(rule):
    if rule.action == "return":
        return "return"
    parts = [rule.action]
    if rule.direction:
        parts.append(rule.direction)
    if rule.proto:
        parts.append(rule.proto)
        if rule.ports:
            parts.append(fw_ports(rule.ports))
    if rule.src:
        parts += ["from", fw_addrs(rule.src)]
    if rule.dst:
        parts += ["to", fw_addrs(rule.dst)]
    if rule.target:
        parts += ["to", rule.target]
    if rule.stateful:
        parts.append("stateful")
    if rule.limit:
        parts += ["limit", rule.limit[0], "burst", str(rule.limit[1])]
    if rule.log:
        parts += ["log", f'"{rule.log}"']
    return " ".join(parts)


def write_fw(out, n, seed, variables, chains, top):
    w = out.write
    w(f"# Generated by bench/gen_policy.py: {n} rules, seed {seed}.\n")
    w("# Benchmark input only: 198.18.0.0/15, 10.0.0.0/8 and fd00::/8.\n\n")
    w("policy in drop\npolicy out drop\npolicy forward drop\nuse established\n\n")
    for name, nets in variables.items():
        w(f"let {name} = {{ " + ", ".join(net_text(x) for x in nets) + " }\n")
    w("\n")
    for name, body in chains.items():
        w(f"chain {name} {{\n")
        for i, rule in enumerate(body):
            if i and i % 50 == 0:
                w(f"    # {name}: block {i // 50}\n")
            w("    " + fw_rule(rule) + "\n")
        w("}\n\n")
    for i, rule in enumerate(top):
        if i % 50 == 0:
            w(f"\n# section {i // 50}\n")
        w(fw_rule(rule) + "\n")


# ---------------------------------------------------------------- ferm

def ferm_ports(ports, key):
    def one(p):
        return f"{p[0]}:{p[1]}" if isinstance(p, tuple) else str(p)
    if len(ports) == 1:
        return f"{key} {one(ports[0])}"
    return f"{key}s (" + " ".join(one(p) for p in ports) + ")"


def families(spec, variables):
    if spec is None:
        return {4, 6}
    nets = variables[spec[1]] if spec[0] == "var" else spec[1]
    return {x.version for x in nets}


def ferm_addrs(spec, key, fams):
    if spec[0] == "var":
        return f"{key} @ipfilter(${spec[1]})"
    nets = spec[1]
    if len(fams) == 2:
        return f"{key} @ipfilter((" + " ".join(net_text(x) for x in nets) + "))"
    if len(nets) == 1:
        return f"{key} {net_text(nets[0])}"
    return f"{key} (" + " ".join(net_text(x) for x in nets) + ")"


FERM_DOMAIN = {frozenset({4}): "ip", frozenset({6}): "ip6", frozenset({4, 6}): "(ip ip6)"}
FERM_CHAIN = {"in": "INPUT", "out": "OUTPUT"}


def ferm_rule(rule, chain, variables):
    fams = families(rule.src, variables) & families(rule.dst, variables)
    parts = ["domain", FERM_DOMAIN[frozenset(fams)], "table filter chain", chain]
    if rule.proto:
        parts += ["proto", rule.proto]
        if rule.ports:
            parts.append(ferm_ports(rule.ports, "dport"))
    if rule.src:
        parts.append(ferm_addrs(rule.src, "saddr", fams))
    if rule.dst:
        parts.append(ferm_addrs(rule.dst, "daddr", fams))
    if rule.stateful:
        if rule.limit:
            parts.append("mod conntrack ctstate NEW")
        else:
            parts.append("mod conntrack ctstate (NEW ESTABLISHED)")
    if rule.limit:
        parts.append(f"mod limit limit {rule.limit[0]} limit-burst {rule.limit[1]}")
    verdict = {
        "allow": "ACCEPT",
        "deny": "DROP",
        "reject": "REJECT reject-with tcp-reset" if rule.proto == "tcp" else "REJECT",
        "return": "RETURN",
        "jump": f"jump {rule.target}",
    }[rule.action]
    if rule.log:
        parts.append(f'{{ LOG log-prefix "{rule.log}"; {verdict}; }}')
    else:
        parts.append(verdict + ";")
    return " ".join(parts)


def write_ferm(out, n, seed, variables, chains, top):
    w = out.write
    w(f"# Generated by bench/gen_policy.py: {n} rules, seed {seed}; the ferm\n")
    w("# equivalent of the .fw policy of the same seed: one rule statement\n")
    w("# (a line starting `domain ... table filter chain`) per .fw rule line.\n\n")
    for name, nets in variables.items():
        w(f"@def ${name} = (" + " ".join(net_text(x) for x in nets) + ");\n")
    w("\n# header: drop policies, replies to allowed traffic (fwc: use established), user chains\n")
    w("domain (ip ip6) table filter {\n")
    w("    chain (INPUT OUTPUT FORWARD) policy DROP;\n")
    w("    chain (INPUT OUTPUT) mod conntrack ctstate (ESTABLISHED RELATED) ACCEPT;\n")
    for name in chains:
        w(f"    chain {name};\n")
    w("}\n\n")
    for name, body in chains.items():
        for i, rule in enumerate(body):
            if i % 50 == 0:
                w(f"# {name}: block {i // 50}\n")
            w(ferm_rule(rule, name, variables) + "\n")
        w("\n")
    for i, rule in enumerate(top):
        if i % 50 == 0:
            w(f"\n# section {i // 50}\n")
        w(ferm_rule(rule, FERM_CHAIN[rule.direction], variables) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rules", type=int, help="number of rule lines (N >= 20)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--fw", metavar="FILE", help="write the fwc policy here ('-': stdout)")
    ap.add_argument("--ferm", metavar="FILE", help="write the equivalent ferm configuration here")
    ap.add_argument("--stats", action="store_true", help="print rule counts to stderr")
    args = ap.parse_args()
    if not args.fw and not args.ferm:
        args.fw = "-"
    variables, chains, top = Gen(args.seed).policy(args.rules)
    for path, writer in ((args.fw, write_fw), (args.ferm, write_ferm)):
        if not path:
            continue
        if path == "-":
            writer(sys.stdout, args.rules, args.seed, variables, chains, top)
        else:
            with open(path, "w", encoding="ascii") as out:
                writer(out, args.rules, args.seed, variables, chains, top)
    if args.stats:
        everything = top + [r for body in chains.values() for r in body]
        kinds = {}
        for r in everything:
            key = r.action + (" stateful" if r.stateful else "") + (" log" if r.log else "") \
                + (" limit" if r.limit else "")
            kinds[key] = kinds.get(key, 0) + 1
        print(f"rules: {len(everything)} ({len(top)} top-level, "
              f"{sum(len(b) for b in chains.values())} in {len(chains)} chains)", file=sys.stderr)
        for key in sorted(kinds):
            print(f"  {key}: {kinds[key]}", file=sys.stderr)


if __name__ == "__main__":
    main()
