#!/usr/bin/env python3
"""Seeds the structure-aware target: turns policies into token bytes.

Each byte of a compile_tokens input picks fwc_fuzz::TOKENS[byte % len]
(fuzz/src/harness.rs). This reads that table from the source and writes,
for each policy given, the bytes that spell it greedily with the longest
tokens (comment lines and characters no token covers are dropped).

    python3 fuzz/seed_tokens.py OUT_DIR tests/cases/ok/*.fw policies/*.fw
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def tokens():
    source = open(os.path.join(HERE, "src", "harness.rs"), encoding="utf-8").read()
    table = source.split("pub const TOKENS: &[&str] = &[", 1)[1].split("\n];", 1)[0]
    table = "\n".join(line for line in table.splitlines() if not line.strip().startswith("//"))
    out = []
    for literal in re.findall(r'"((?:[^"\\]|\\.)*)"', table):
        text = re.sub(r"\\u\{([0-9a-fA-F]+)\}", lambda m: chr(int(m.group(1), 16)), literal)
        text = text.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r").replace("\\0", "\0")
        text = text.replace('\\"', '"').replace("\\\\", "\\")
        out.append(text)
    return out


def spell(text, table):
    order = sorted(range(len(table)), key=lambda i: -len(table[i]))
    out = bytearray()
    at = 0
    while at < len(text):
        for index in order:
            token = table[index]
            if token.strip() == "" and token not in ("\n",):
                continue  # spaces are put between words by tokens_to_text
            if token and text.startswith(token, at):
                out.append(index)
                at += len(token)
                break
        else:
            at += 1
    return bytes(out)


def main():
    out_dir, paths = sys.argv[1], sys.argv[2:]
    table = tokens()
    assert len(table) <= 256, len(table)
    os.makedirs(out_dir, exist_ok=True)
    for path in paths:
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"(?m)^\s*#.*\n", "", text)  # comment lines: noise here
        name = "seed-" + path.replace("/", "_")
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(spell(text, table))


if __name__ == "__main__":
    main()
