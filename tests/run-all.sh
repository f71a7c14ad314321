#!/usr/bin/env bash
# Runs the whole test suite, kernel tests included. Needs root: the kernel
# tests create network namespaces and load rules into them (never into the
# host's own tables). Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run-all.sh: run as root (the kernel tests use network namespaces)" >&2
    exit 2
fi

# Debian packages the suite uses: the netfilter tools, iproute2 for
# namespaces and veth pairs, netbase for /etc/protocols (protocol names in
# saved files), python3 for the small traffic endpoints of behaviour tests,
# conntrack to flush connection state between differential probes, and the
# rule generators whose output `fwc import` must round-trip (ferm, ufw,
# Shorewall, FireHOL; util-linux and mount for their namespaces; util-linux
# also for `unshare --net`, fwc apply's pre-flight, and iproute2 for its `ss`);
# ipset for the address sets consolidated iptables rules match against;
# python3-jsonschema validates `fwc check --format sarif` against the SARIF
# schema (tests/it/sarif.rs); dist/build-deb.sh, which tests/it/package.rs
# runs, strips the binary (binutils) and asks dpkg-shlibdeps (dpkg-dev) for
# its dependencies, and lintian checks the package; groff-base checks the
# man pages `fwc generate` writes.
# tests/editors.sh runs the editor grammars' tests with Node.js and npm
# (the TextMate tokenizer, tree-sitter's grammar.js) and gcc (tree-sitter
# compiles the generated parser); a machine without them gets Debian's.
packages=(iptables nftables ipset iproute2 netbase python3 conntrack ferm ufw shorewall shorewall6 firehol util-linux mount
          python3-jsonschema binutils dpkg-dev lintian groff-base)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
command -v cc >/dev/null || packages+=(gcc)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo test --locked
bash tests/editors.sh
