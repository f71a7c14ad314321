#!/usr/bin/env bash
# The editor support, on every example policy: the VS Code extension's
# TextMate grammar (tokenized by vscode-textmate, VS Code's own tokenizer),
# its settings given to `fwc lsp` through vscode-languageserver-protocol,
# and the tree-sitter grammar (its corpus and highlight tests, a parse of
# every policy without an ERROR or MISSING node, and src/ regenerated to
# check it is what grammar.js makes). tests/run-all.sh runs it after
# `cargo test`. It needs node, npm and a C compiler; it installs the npm
# packages under editors/vscode/node_modules and the tree-sitter CLI under
# ~/.cache/fwc-tools when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
    command -v "$1" >/dev/null || { echo "tests/editors.sh: \`$1\` is missing: $2" >&2; exit 1; }
}
need node "Node.js runs the TextMate tests and tree-sitter's grammar.js (Debian: nodejs)"
need npm "npm installs vscode-textmate and vscode-oniguruma (Debian: npm)"
need cc "tree-sitter compiles the generated parser (Debian: gcc)"
need cargo "cargo builds the tree-sitter CLI"
passed=0

echo "editors: the VS Code extension: TextMate grammar, and fwc lsp with its settings"
(cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
cargo build --quiet --locked
FWC_BIN="$PWD/target/debug/fwc" node --test editors/vscode/test/
passed=$((passed + 2))

# npm's tree-sitter-cli downloads its binary from GitHub when it installs,
# which a closed network refuses; crates.io has the same release as source.
version=0.27.1
tools="${FWC_TOOLS:-$HOME/.cache/fwc-tools}"
ts="$tools/bin/tree-sitter"
if ! "$ts" --version 2>/dev/null | grep -qx "tree-sitter $version"; then
    echo "editors: building tree-sitter-cli $version into $tools (a few minutes, once)"
    cargo install --quiet --locked --no-default-features --version "$version" --root "$tools" tree-sitter-cli
fi

grammar=editors/tree-sitter-fwc
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "editors: tree-sitter src/ is what grammar.js generates"
"$ts" generate --output "$scratch/src" "$grammar/grammar.js"
diff -r "$grammar/src" "$scratch/src"
passed=$((passed + 1))

echo "editors: tree-sitter corpus and highlight tests"
(cd "$grammar" && "$ts" test)
passed=$((passed + 1))

echo "editors: tree-sitter parses every example policy"
"$ts" build --output "$scratch/fwc.so" "$grammar" >/dev/null
mapfile -t policies < <(find policies stdlib tests/cases/ok -name '*.fw' | sort)
if [ "${#policies[@]}" -lt 50 ]; then
    echo "tests/editors.sh: only ${#policies[@]} policies found" >&2
    exit 1
fi
"$ts" parse --lib-path "$scratch/fwc.so" --lang-name fwc --quiet "${policies[@]}"
echo "${#policies[@]} policies parsed without an error"
passed=$((passed + 1))

echo "editors: $passed passed, 0 failed"
