#!/usr/bin/env bash
# Builds fwc's Debian package with dpkg-deb: the binary, its man pages and
# shell completions (made by `fwc generate` from the clap definitions), the
# docs and example policies, and — when dist/ has them — the systemd unit
# and the ifupdown hook, neither of them enabled (docs/install.md).
#
#   dist/build-deb.sh [OUT_DIR]          # default target/debian
#
# FWC_BINARY=PATH packages that binary instead of building
# target/release/fwc. DEBFULLNAME and DEBEMAIL name the maintainer, as
# Debian's tools read them. SOURCE_DATE_EPOCH (default: the last commit's time)
# dates the files, so the same tree gives the same package bytes.
# Prints the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-target/debian}
binary=${FWC_BINARY:-}
if [ -z "$binary" ]; then
    cargo build --release --locked --quiet
    binary=target/release/fwc
fi
version=$("$binary" --version | awk '{print $2}')
arch=$(dpkg --print-architecture)
maintainer="${DEBFULLNAME:-fwc maintainers} <${DEBEMAIL:-fwc@example.org}>"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/DEBIAN"

# The binary, stripped as Debian ships binaries.
install -D -m 0755 "$binary" "$root/usr/bin/fwc"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/fwc"

# Man pages and completions, from the clap definitions.
"$binary" generate man "$root/usr/share/man/man1" >/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d"
"$binary" generate completions bash >"$root/usr/share/bash-completion/completions/fwc"
"$binary" generate completions zsh >"$root/usr/share/zsh/vendor-completions/_fwc"
"$binary" generate completions fish >"$root/usr/share/fish/vendor_completions.d/fwc.fish"

# The boot-time pieces, when they exist, pointed at the packaged binary.
# Installed where nothing runs them until the administrator says so: the
# unit is not enabled, the hook is not in /etc/network/if-pre-up.d.
if [ -f dist/fwc.service ]; then
    install -d "$root/usr/lib/systemd/system"
    sed 's#/usr/local/sbin/fwc#/usr/bin/fwc#g' dist/fwc.service >"$root/usr/lib/systemd/system/fwc.service"
    chmod 0644 "$root/usr/lib/systemd/system/fwc.service"
fi
if [ -f dist/if-pre-up.d/fwc ]; then
    install -d "$root/usr/share/fwc/if-pre-up.d"
    sed 's#/usr/local/sbin/fwc#/usr/bin/fwc#g' dist/if-pre-up.d/fwc >"$root/usr/share/fwc/if-pre-up.d/fwc"
    chmod 0755 "$root/usr/share/fwc/if-pre-up.d/fwc"
fi

# Documentation and examples.
doc="$root/usr/share/doc/fwc"
install -d "$doc/examples/conf.d"
install -m 0644 README.md docs/*.md "$doc/"
install -m 0644 policies/*.fw "$doc/examples/"
install -m 0644 policies/conf.d/*.fw "$doc/examples/conf.d/"
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fwc

Files: *
Copyright: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) the fwc contributors
License: MIT or Apache-2.0
 On Debian systems the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
# A native package (no Debian revision): its changelog is changelog.gz.
printf 'fwc (%s) unstable; urgency=medium\n\n  * Built from the fwc source tree.\n\n -- %s  %s\n' \
    "$version" "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n >"$doc/changelog.gz"

# What the binary links against, as dpkg-shlibdeps says (dpkg-dev).
depends="libc6, libgcc-s1"
if command -v dpkg-shlibdeps >/dev/null; then
    scratch=$(mktemp -d)
    mkdir "$scratch/debian"
    printf 'Source: fwc\n\nPackage: fwc\nArchitecture: any\n' >"$scratch/debian/control"
    shlibs=$(cd "$scratch" && dpkg-shlibdeps -O -e "$root/usr/bin/fwc" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
    rm -rf "$scratch"
    depends=${shlibs:-$depends}
fi

cat >"$root/DEBIAN/control" <<CONTROL
Package: fwc
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Recommends: iptables
Section: net
Priority: optional
Description: firewall policy compiler for iptables, IPv4 and IPv6
 fwc compiles .fw firewall policies to iptables-restore and
 ip6tables-restore input, a POSIX shell script and the text iptables-save
 prints once the rules are loaded. It checks a policy with precise
 diagnostics (shadowed rules, lockouts, IPv4/IPv6 gaps), runs the tests a
 policy carries, and formats policies in one canonical layout.
 .
 The package brings the systemd unit fwc.service and an ifupdown hook
 (/usr/share/fwc/if-pre-up.d/fwc) to load the confirmed rules at boot;
 neither is enabled on installation.
CONTROL

# Checksums of the files, for `dpkg --verify` and debsums.
(cd "$root" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

# Files of every directory dated alike, for reproducible bytes.
find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
deb="$out/fwc_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
