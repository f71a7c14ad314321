// The TextMate grammar on every example policy, tokenized by VS Code's own
// tokenizer (vscode-textmate with the Oniguruma regex engine):
// - no token is left unscoped or scoped invalid;
// - comments, strings, variables, numbers and addresses, and keywords get
//   their scopes, found here by a scan of the text independent of the
//   grammar's regular expressions.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const repository = path.resolve(__dirname, '../../..');

function policies() {
  const found = [];
  const walk = (directory) => {
    for (const entry of fs.readdirSync(directory, { withFileTypes: true })) {
      const full = path.join(directory, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.fw')) found.push(full);
    }
  };
  for (const directory of ['policies', 'stdlib', 'tests/cases/ok', 'tests/cases/err']) {
    walk(path.join(repository, directory));
  }
  return found.sort();
}

async function loadGrammar() {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (text) => new oniguruma.OnigString(text),
    }),
    loadGrammar: async (scopeName) => {
      if (scopeName !== 'source.fwc') return null;
      const file = path.join(__dirname, '../syntaxes/fwc.tmLanguage.json');
      return vsctm.parseRawGrammar(fs.readFileSync(file, 'utf8'), file);
    },
  });
  return registry.loadGrammar('source.fwc');
}

/** Every line's tokens: [{ start, end, text, scopes }]. */
function tokenize(grammar, text) {
  let state = vsctm.INITIAL;
  return text.split('\n').map((line) => {
    const result = grammar.tokenizeLine(line, state);
    state = result.ruleStack;
    return result.tokens.map((token) => ({
      start: token.startIndex,
      end: Math.min(token.endIndex, line.length),
      text: line.slice(token.startIndex, token.endIndex),
      scopes: token.scopes,
    }));
  });
}

const KEYWORDS = new Set([
  'allow', 'deny', 'reject', 'jump', 'return', 'masquerade', 'snat', 'dnat', 'redirect', 'forward-port',
  'in', 'out', 'forward', 'policy', 'let', 'param', 'service', 'chain', 'keep', 'include', 'use', 'except',
  'ignore', 'test', 'expect', 'on', 'from', 'to', 'not', 'any', 'sport', 'port', 'flags', 'mac', 'state',
  'stateful', 'log', 'limit', 'rate', 'burst', 'comment', 'ipv4', 'ipv6', 'with', 'to-source',
  'to-destination', 'to-port',
]);
const PROTOCOLS = new Set(['tcp', 'udp', 'udplite', 'sctp', 'icmp', 'icmpv6', 'esp', 'ah', 'gre', 'igmp', 'ospf', 'vrrp']);
const CONSTANTS = new Set(['accept', 'drop', 'new', 'established', 'related', 'invalid', 'untracked']);

/**
 * What the text says each span is, found without the grammar: comments
 * (a `#` outside a string), strings, variables, numbers and addresses,
 * and words of the language. Words after `use`/`except` (module names),
 * `service NAME =`, `chain NAME`, `ignore CODE` and `with KIND` are names.
 */
function expectations(line) {
  const out = [];
  let index = 0;
  let inString = false;
  let stringStart = 0;
  while (index < line.length) {
    const c = line[index];
    if (inString) {
      if (c === '\\') index += 1;
      else if (c === '"') {
        out.push({ start: stringStart, end: index + 1, scope: 'string.quoted.double' });
        inString = false;
      }
    } else if (c === '"') {
      inString = true;
      stringStart = index;
    } else if (c === '#') {
      out.push({ start: index, end: line.length, scope: 'comment.line' });
      return { spans: out, code: line.slice(0, index) };
    }
    index += 1;
  }
  return { spans: out, code: line };
}

function codeSpans(code, stringSpans) {
  const out = [];
  const insideString = (position) => stringSpans.some((span) => span.start <= position && position < span.end);
  const names = /^\s*(use|service|chain|ignore)\b/.test(code);
  const patterns = [
    [/\$[A-Za-z_][\w-]*/g, 'variable.other'],
    [/(?<![\w:.$-])\d{1,3}(?:\.\d{1,3}){3}(?:\/\d+)?(?![\w:.])/g, 'constant.numeric'],
    [/(?<![\w:.$-])[0-9a-fA-F]*:[0-9a-fA-F:.]*(?:\/\d+)?(?![\w:.])/g, 'constant.numeric'],
    [/(?<![\w:.$/-])\d+(?![\w:.])/g, 'constant.numeric'],
  ];
  for (const [pattern, scope] of patterns) {
    for (const match of code.matchAll(pattern)) {
      if (!insideString(match.index)) out.push({ start: match.index, end: match.index + match[0].length, scope });
    }
  }
  for (const match of code.matchAll(/(?<![\w$:.-])[A-Za-z_][\w-]*(?![\w:.])/g)) {
    if (insideString(match.index)) continue;
    const word = match[0];
    const before = code.slice(0, match.index).trim().split(/\s+/).pop();
    if (['with', 'ignore', 'to', 'except', 'use', 'chain'].includes(before) || (names && before === 'service') || before === ',') continue;
    let scope = null;
    if (KEYWORDS.has(word)) scope = /^(keyword|storage)\./;
    else if (PROTOCOLS.has(word)) scope = /^support\.type\.protocol\./;
    else if (CONSTANTS.has(word)) scope = /^constant\.language\./;
    if (scope) out.push({ start: match.index, end: match.index + word.length, scope });
  }
  return out;
}

test('the TextMate grammar scopes every example policy', async () => {
  const grammar = await loadGrammar();
  assert.ok(grammar, 'the grammar loads');
  const files = policies();
  assert.ok(files.length >= 80, `${files.length} policies`);
  let checked = 0;
  const problems = [];
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    const lines = text.split('\n');
    const tokens = tokenize(grammar, text);
    lines.forEach((line, number) => {
      const where = `${path.relative(repository, file)}:${number + 1}`;
      for (const token of tokens[number]) {
        if (token.text.trim() === '') continue;
        const scopes = token.scopes.slice(1);
        if (scopes.length === 0) problems.push(`${where}: \`${token.text}\` has no scope`);
        if (scopes.some((scope) => scope.startsWith('invalid'))) problems.push(`${where}: \`${token.text}\` is invalid`);
      }
      const { spans, code } = expectations(line);
      const strings = spans.filter((span) => span.scope.startsWith('string'));
      for (const span of spans.concat(codeSpans(code, strings))) {
        const covering = tokens[number].filter((token) => token.start < span.end && span.start < token.end);
        const matches = (scope) => (span.scope instanceof RegExp ? span.scope.test(scope) : scope.startsWith(span.scope));
        for (const token of covering) {
          if (!token.scopes.some(matches)) {
            problems.push(`${where}: \`${token.text}\` in \`${line.slice(span.start, span.end)}\` should be ${span.scope}, is ${token.scopes.join(' ')}`);
          }
        }
        checked += 1;
      }
    });
  }
  assert.deepStrictEqual(problems, []);
  assert.ok(checked > 2000, `${checked} spans checked`);
});
