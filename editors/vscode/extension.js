// The fwc extension: .fw files get the TextMate grammar (package.json) and
// the language server, `fwc lsp`, started over standard input and output.
'use strict';

const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

const { initializationOptions } = require('./options');

let client;

async function start() {
  const command = vscode.workspace.getConfiguration('fwc').get('path', 'fwc');
  client = new LanguageClient(
    'fwc',
    'fwc',
    { command, args: ['lsp'] },
    {
      documentSelector: [
        { scheme: 'file', language: 'fwc' },
        { scheme: 'untitled', language: 'fwc' },
      ],
      initializationOptions: initializationOptions(vscode.workspace.getConfiguration('fwc')),
    },
  );
  await client.start();
}

async function activate(context) {
  await start();
  // The settings are the server's initialization options: restart on change.
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration('fwc')) {
        await deactivate();
        await start();
      }
    }),
  );
}

async function deactivate() {
  if (client) {
    await client.stop();
    client = undefined;
  }
}

module.exports = { activate, deactivate };
