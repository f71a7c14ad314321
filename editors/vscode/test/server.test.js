// `fwc lsp` spoken to by vscode-languageserver-protocol, the JSON-RPC
// implementation under VS Code's language client, with the options the
// extension builds from its settings.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { spawn } = require('node:child_process');
const protocol = require('vscode-languageserver-protocol/node');
const { initializationOptions } = require('../options');

const repository = path.resolve(__dirname, '../../..');
const fwc = process.env.FWC_BIN || path.join(repository, 'target/debug/fwc');

test('fwc lsp takes the extension settings and publishes diagnostics', async (t) => {
  const server = spawn(fwc, ['lsp'], { stdio: ['pipe', 'pipe', 'inherit'] });
  // A failed assertion must not leave the server running.
  t.after(() => server.kill());
  const connection = protocol.createProtocolConnection(
    new protocol.StreamMessageReader(server.stdout),
    new protocol.StreamMessageWriter(server.stdin),
  );
  const published = new Promise((resolve) => {
    connection.onNotification(protocol.PublishDiagnosticsNotification.type, resolve);
  });
  connection.listen();
  const settings = { params: { public: 'ens3' }, deny: ['warnings'] };
  const config = { get: (key, otherwise) => (key in settings ? settings[key] : otherwise) };
  const result = await connection.sendRequest(protocol.InitializeRequest.type, {
    processId: process.pid,
    rootUri: null,
    capabilities: {},
    initializationOptions: initializationOptions(config),
  });
  for (const capability of ['hoverProvider', 'definitionProvider', 'completionProvider', 'documentSymbolProvider', 'documentFormattingProvider']) {
    assert.ok(result.capabilities[capability], capability);
  }
  connection.sendNotification(protocol.InitializedNotification.type, {});
  const uri = 'file:///fwc-extension-test/policy.fw';
  connection.sendNotification(protocol.DidOpenTextDocumentNotification.type, {
    textDocument: { uri, languageId: 'fwc', version: 1, text: 'param public\nallow in on $public tcp 22\n' },
  });
  const diagnostics = await published;
  assert.strictEqual(diagnostics.uri, uri);
  // The param is set (no unset-param), and `deny: warnings` made the
  // redundant allow an error.
  assert.deepStrictEqual(
    diagnostics.diagnostics.map((diagnostic) => [diagnostic.code, diagnostic.severity]),
    [['redundant-rule', protocol.DiagnosticSeverity.Error]],
  );
  await connection.sendRequest(protocol.ShutdownRequest.type);
  const exited = new Promise((resolve) => server.on('exit', resolve));
  connection.sendNotification(protocol.ExitNotification.type);
  assert.strictEqual(await exited, 0);
  connection.dispose();
});
