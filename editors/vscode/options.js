// The server's initializationOptions from the extension's settings, the
// same as `fwc check --set NAME=VALUE -A CODE -W CODE -D CODE`.
'use strict';

/** `config` is a `vscode.WorkspaceConfiguration` for the `fwc` section. */
function initializationOptions(config) {
  return {
    params: config.get('params', {}),
    allow: config.get('allow', []),
    warn: config.get('warn', []),
    deny: config.get('deny', []),
  };
}

module.exports = { initializationOptions };
