//! `fwc lsp` as an editor drives it: the binary is spawned, and the tests
//! speak JSON-RPC over its standard input and output.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// A language client with a server of its own.
struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
    /// Every `publishDiagnostics` received, in order: (uri, version, diagnostics).
    published: Vec<(String, Option<i64>, Vec<Value>)>,
}

impl Client {
    fn start(initialization_options: Value) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fwc"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fwc lsp starts");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (sender, messages) = mpsc::channel();
        std::thread::spawn(move || loop {
            // Content-Length framing, as the protocol's base layer says.
            let mut length = None;
            loop {
                let mut line = String::new();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(value) = line.strip_prefix("Content-Length: ") {
                    length = Some(value.parse::<usize>().expect("a length"));
                }
            }
            let mut body = vec![0; length.expect("Content-Length header")];
            stdout.read_exact(&mut body).expect("the body");
            if sender.send(serde_json::from_slice(&body).expect("JSON")).is_err() {
                return;
            }
        });
        let mut client = Client { child, stdin, messages, next_id: 0, published: Vec::new() };
        let result = client.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": {}, "initializationOptions": initialization_options}),
        );
        assert_eq!(result["capabilities"]["hoverProvider"], true, "{result}");
        client.notify("initialized", json!({}));
        client
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{}", body.len(), body).expect("write to fwc lsp");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    fn receive(&mut self) -> Value {
        let message = self.messages.recv_timeout(Duration::from_secs(60)).expect("fwc lsp answers within a minute");
        if message["method"] == "textDocument/publishDiagnostics" {
            let params = &message["params"];
            self.published.push((
                params["uri"].as_str().expect("uri").to_string(),
                params["version"].as_i64(),
                params["diagnostics"].as_array().expect("diagnostics").clone(),
            ));
        }
        message
    }

    /// Sends a request and returns its result; notifications that come
    /// first are recorded.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let message = self.receive();
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    /// Waits for the diagnostics of `uri` at `version`, then for everything
    /// published with them (the server publishes all files of one
    /// compilation before it reads the next message), and returns the
    /// diagnostics each file has now.
    fn diagnostics(&mut self, uri: &str, version: i64) -> BTreeMap<String, Vec<Value>> {
        let start = self.published.len();
        loop {
            let seen = self.published[start..].iter().any(|(u, v, _)| u == uri && *v == Some(version));
            if seen {
                break;
            }
            self.receive();
        }
        self.request("textDocument/documentSymbol", json!({"textDocument": {"uri": uri}}));
        // What an editor shows now: the last list each file was sent.
        let mut latest = BTreeMap::new();
        for (uri, _, diagnostics) in &self.published {
            latest.insert(uri.clone(), diagnostics.clone());
        }
        latest
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "fw", "version": 1, "text": text}}),
        );
    }

    fn change(&mut self, uri: &str, version: i64, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        );
    }

    fn close(&mut self, uri: &str) {
        self.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}}));
        // Settle: what the close publishes arrives before this answer.
        self.request("textDocument/documentSymbol", json!({"textDocument": {"uri": uri}}));
    }

    fn shutdown(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let status = self.child.wait().expect("fwc lsp exits");
        assert!(status.success(), "fwc lsp exit status {status}");
    }
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("fwc-lsp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("scratch directory");
    directory
}

/// The LSP position of a byte offset: a line and a column in UTF-16 code
/// units, counted here independently of the server.
fn position(text: &str, offset: usize) -> Value {
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    json!({"line": line, "character": before[line_start..].encode_utf16().count()})
}

fn range(text: &str, start: usize, end: usize) -> Value {
    json!({"start": position(text, start), "end": position(text, end)})
}

fn codes(diagnostics: &[Value]) -> Vec<&str> {
    diagnostics.iter().map(|diagnostic| diagnostic["code"].as_str().expect("code")).collect()
}

#[test]
fn diagnostics_follow_edits_through_includes() {
    let directory = scratch("edits");
    let main = directory.join("main.fw");
    let drop_in = directory.join("conf.d/admins.fw");
    std::fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
    let on_disk = "allow in tcp 22 from $admins stateful\n";
    std::fs::write(&drop_in, on_disk).unwrap();
    // Non-ASCII text before each error: `é` is two bytes and one UTF-16
    // unit, `😀` four bytes, one character and two units.
    let first = "# café 😀: a comment before the errors\n\
                 deny in tcp 23 log \"télé 😀: \" limit 0/second\n\
                 include \"conf.d/*.fw\"\n";
    std::fs::write(&main, "").unwrap();
    let (main_uri, drop_in_uri) = (uri(&main), uri(&drop_in));

    let mut client = Client::start(Value::Null);
    client.open(&main_uri, first);
    let published = client.diagnostics(&main_uri, 1);
    let main_diagnostics = &published[&main_uri];
    assert_eq!(codes(main_diagnostics), ["bad-rate"], "{main_diagnostics:?}");
    let zero = first.find("0/second").unwrap();
    assert_eq!(main_diagnostics[0]["range"]["start"], position(first, zero));
    assert_eq!(main_diagnostics[0]["range"]["start"], json!({"line": 1, "character": 37}));
    assert_eq!(main_diagnostics[0]["severity"], 1);
    assert_eq!(main_diagnostics[0]["source"], "fwc");
    // The included file was never opened: its error is published to it.
    let included = &published[&drop_in_uri];
    assert_eq!(codes(included), ["undefined-variable"], "{included:?}");
    let admins = on_disk.find("$admins").unwrap();
    assert_eq!(included[0]["range"], range(on_disk, admins, admins + "$admins".len()));

    // Define the variable and fix the rate: both files are clean.
    let second = "# café 😀: a comment before the errors\n\
                  let admins = 198.18.0.0/24\n\
                  deny in tcp 23 log \"télé 😀: \" limit 1/second\n\
                  include \"conf.d/*.fw\"\n";
    client.change(&main_uri, 2, second);
    let published = client.diagnostics(&main_uri, 2);
    assert!(published[&main_uri].iter().all(|diagnostic| diagnostic["severity"] != 1), "{published:?}");
    // Without a `policy`, an allow is redundant: a warning, no error.
    assert_eq!(codes(&published[&drop_in_uri]), ["redundant-rule"], "{published:?}");

    // An unsaved edit of the drop-in counts, though the disk still has
    // the old text; a new unsaved drop-in is found by the wildcard.
    client.open(&drop_in_uri, on_disk);
    client.change(&drop_in_uri, 2, "allow in tcp 99999 from $admins\n");
    let published = client.diagnostics(&drop_in_uri, 2);
    assert_eq!(codes(&published[&drop_in_uri]), ["port-out-of-range"], "{published:?}");
    let unsaved = directory.join("conf.d/unsaved.fw");
    client.open(&uri(&unsaved), "allow in service no-such-service\n");
    let published = client.diagnostics(&uri(&unsaved), 1);
    assert_eq!(codes(&published[&uri(&unsaved)]), ["unknown-service"], "{published:?}");
    assert_eq!(codes(&published[&drop_in_uri]), ["port-out-of-range"], "{published:?}");

    // Closing the policy leaves the drop-ins to compile on their own.
    client.close(&main_uri);
    client.close(&uri(&unsaved));
    client.change(&drop_in_uri, 3, "allow in tcp 22\n");
    let published = client.diagnostics(&drop_in_uri, 3);
    assert!(published[&drop_in_uri].iter().all(|diagnostic| diagnostic["severity"] != 1), "{published:?}");

    // A buffer never saved is compiled too.
    let untitled = "untitled:Untitled-1";
    client.open(untitled, "allow in tcp 70000\n");
    let published = client.diagnostics(untitled, 1);
    assert_eq!(codes(&published[untitled]), ["port-out-of-range"], "{published:?}");
    client.shutdown();
    std::fs::remove_dir_all(&directory).unwrap();
}

/// A case's `# args:` header as `fwc check` arguments and as the server's
/// initialization options.
fn case_args(text: &str) -> (Vec<String>, Value) {
    let mut args = Vec::new();
    let mut options = json!({"params": {}, "allow": [], "warn": [], "deny": []});
    for line in text.lines().take_while(|line| line.starts_with('#')) {
        let Some(words) = line.strip_prefix("# args:") else { continue };
        let words: Vec<&str> = words.split_whitespace().collect();
        for pair in words.chunks(2) {
            args.extend([pair[0].to_string(), pair[1].to_string()]);
            match pair[0] {
                "--set" => {
                    let (name, value) = pair[1].split_once('=').expect("NAME=VALUE");
                    options["params"][name] = json!(value);
                }
                "-A" => options["allow"].as_array_mut().unwrap().push(json!(pair[1])),
                "-W" => options["warn"].as_array_mut().unwrap().push(json!(pair[1])),
                "-D" => options["deny"].as_array_mut().unwrap().push(json!(pair[1])),
                other => panic!("unknown case argument {other}"),
            }
        }
    }
    (args, options)
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// What `fwc check --format json` says, as the server must publish it:
/// (uri, code, severity, message, range). A diagnostic in a stdlib module
/// goes where its first label in a file points, else to the policy's start.
fn check_json(policy: &Path, args: &[String]) -> Vec<(String, String, i64, String, Value)> {
    let output = Command::new(env!("CARGO_BIN_EXE_fwc"))
        .arg("check")
        .arg(policy)
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("fwc check runs");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let mut out = Vec::new();
    for line in stdout.lines() {
        let diagnostic: Value = serde_json::from_str(line).expect("one JSON object a line");
        let in_file = |value: &Value| value["file"].as_str().is_some_and(|file| !file.starts_with('<'));
        let place = if in_file(&diagnostic) {
            Some(diagnostic.clone())
        } else {
            diagnostic["labels"].as_array().unwrap().iter().find(|label| in_file(label)).cloned()
        };
        let (file, start, end) = match &place {
            Some(place) => (
                PathBuf::from(place["file"].as_str().unwrap()),
                place["start_byte"].as_u64().unwrap() as usize,
                place["end_byte"].as_u64().unwrap() as usize,
            ),
            None => (policy.to_path_buf(), 0, 0),
        };
        let text = std::fs::read_to_string(&file).expect("the diagnostic's file");
        let severity = match diagnostic["severity"].as_str().unwrap() {
            "error" => 1,
            "warning" => 2,
            other => panic!("severity {other}"),
        };
        out.push((
            uri(&normalize(&file)),
            diagnostic["code"].as_str().unwrap().to_string(),
            severity,
            diagnostic["message"].as_str().unwrap().to_string(),
            range(&text, start, end),
        ));
    }
    out
}

#[test]
fn diagnostics_equal_fwc_check_for_every_case() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files = Vec::new();
    for kind in ["err", "ok"] {
        for entry in std::fs::read_dir(cases.join(kind)).expect("case directory") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|extension| extension == "fw") {
                files.push(path);
            }
        }
    }
    files.sort();
    // One server per set of arguments.
    let mut groups: BTreeMap<Vec<String>, Vec<(PathBuf, String)>> = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("case");
        groups.entry(case_args(&text).0).or_default().push((path, text));
    }
    let (mut compared, mut with_diagnostics) = (0, 0);
    let mut failures = Vec::new();
    for (args, cases) in groups {
        let mut client = Client::start(case_args(&cases[0].1).1);
        for (path, text) in cases {
            let expected = check_json(&path, &args);
            let policy_uri = uri(&path);
            client.open(&policy_uri, &text);
            let published = client.diagnostics(&policy_uri, 1);
            let mut actual = Vec::new();
            for (uri, diagnostics) in &published {
                for diagnostic in diagnostics {
                    actual.push((
                        uri.clone(),
                        diagnostic["code"].as_str().unwrap().to_string(),
                        diagnostic["severity"].as_i64().unwrap(),
                        diagnostic["message"].as_str().unwrap().to_string(),
                        diagnostic["range"].clone(),
                    ));
                }
            }
            let mut sorted_expected = expected.clone();
            sorted_expected.sort_by_key(|entry| format!("{entry:?}"));
            actual.sort_by_key(|entry| format!("{entry:?}"));
            // check prints a diagnostic of a file included twice twice;
            // the server publishes it once.
            sorted_expected.dedup();
            if actual != sorted_expected {
                failures.push(format!("{}:\n  lsp:   {actual:?}\n  check: {sorted_expected:?}", path.display()));
            }
            compared += 1;
            with_diagnostics += usize::from(!expected.is_empty());
            client.close(&policy_uri);
        }
        client.shutdown();
    }
    assert!(failures.is_empty(), "{} case(s) differ:\n{}", failures.len(), failures.join("\n"));
    assert!(compared >= 80 && with_diagnostics >= 50, "{compared} cases, {with_diagnostics} with diagnostics");
}

/// The position of the `nth` (0-based) occurrence of `needle` in `text`,
/// plus `into` bytes.
fn at(text: &str, needle: &str, nth: usize, into: usize) -> Value {
    let offset = text.match_indices(needle).nth(nth).unwrap_or_else(|| panic!("`{needle}` #{nth}")).0;
    position(text, offset + into)
}

fn hover(client: &mut Client, uri: &str, position: Value) -> String {
    let result = client.request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": position}));
    assert_eq!(result["contents"]["kind"], "markdown", "{result}");
    result["contents"]["value"].as_str().expect("hover text").to_string()
}

fn definition(client: &mut Client, uri: &str, position: Value) -> Vec<(String, Value)> {
    let result = client.request("textDocument/definition", json!({"textDocument": {"uri": uri}, "position": position}));
    result
        .as_array()
        .unwrap_or_else(|| panic!("locations: {result}"))
        .iter()
        .map(|location| (location["uri"].as_str().unwrap().to_string(), location["range"].clone()))
        .collect()
}

fn completion(client: &mut Client, uri: &str, version: i64, text: &str, typed: &str) -> Vec<String> {
    let edited = format!("{text}{typed}");
    client.change(uri, version, &edited);
    let result = client.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": uri}, "position": position(&edited, edited.len())}),
    );
    result.as_array().expect("items").iter().map(|item| item["label"].as_str().unwrap().to_string()).collect()
}

#[test]
fn hover_definition_completion_and_symbols() {
    let directory = scratch("features");
    let main = directory.join("main.fw");
    let drop_in = directory.join("conf.d/etcd.fw");
    std::fs::create_dir_all(drop_in.parent().unwrap()).unwrap();
    let text = "# café 😀\n\
                use baseline except ssh-in\n\
                let admins = { 198.18.0.0/24, fd00:1::/48 }\n\
                service exporter = tcp 9100\n\
                include \"conf.d/*.fw\"\n\
                allow in tcp http, 8443 stateful\n\
                allow in service exporter from $admins stateful\n\
                jump in tcp 8080 to audit\n\
                chain audit {\n    deny from 198.18.9.0/24\n    return\n}\n";
    let etcd = "allow out tcp 4001 to $admins stateful\n";
    std::fs::write(&main, text).unwrap();
    std::fs::write(&drop_in, etcd).unwrap();
    let (main_uri, etcd_uri) = (uri(&main), uri(&drop_in));
    let mut client = Client::start(Value::Null);
    client.open(&main_uri, text);
    client.open(&etcd_uri, etcd);
    client.diagnostics(&main_uri, 1);

    // Hover: what a variable, a service, a module and a chain expand to.
    let variable = hover(&mut client, &main_uri, at(text, "$admins", 0, 2));
    assert!(variable.contains("let admins = { 198.18.0.0/24, fd00:1::/48 }"), "{variable}");
    assert!(variable.contains("addresses: `198.18.0.0/24`, `fd00:1::/48`"), "{variable}");
    // The same variable, hovered in the drop-in that uses it.
    assert_eq!(hover(&mut client, &etcd_uri, at(etcd, "$admins", 0, 1)), variable);
    let service = hover(&mut client, &main_uri, at(text, "http", 0, 1));
    assert!(service.contains("service http      = tcp 80") && service.contains("stdlib/services.fw"), "{service}");
    let own = hover(&mut client, &main_uri, at(text, "exporter", 1, 0));
    assert!(own.contains("service exporter = tcp 9100"), "{own}");
    let module = hover(&mut client, &main_uri, at(text, "baseline", 0, 0));
    assert!(module.contains("stdlib module `baseline`") && module.contains("-A INPUT -i lo -j ACCEPT"), "{module}");
    assert!(!module.contains("--dport 22 "), "ssh-in is left out: {module}");
    let chain = hover(&mut client, &main_uri, at(text, "audit", 0, 0));
    assert!(chain.contains("chain audit {") && chain.contains("-A audit -s 198.18.9.0/24 -j DROP"), "{chain}");
    // What a rule compiles to: the lines `fwc build` writes for it.
    let rule = hover(&mut client, &main_uri, at(text, "allow in tcp http", 0, 0));
    let build = |file: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_fwc"))
            .args(["build", main.to_str().unwrap(), "--emit", file])
            .output()
            .expect("fwc build runs");
        String::from_utf8(output.stdout).unwrap()
    };
    let (v4, v6) = (build("rules.v4"), build("rules.v6"));
    let lines: Vec<&str> = rule.lines().filter(|line| line.starts_with("-A ")).collect();
    assert_eq!(lines.len(), 4, "in and reply, for IPv4 and IPv6: {rule}");
    for line in &lines {
        let line = line.split("   #").next().unwrap();
        assert!(v4.lines().chain(v6.lines()).any(|built| built == line), "`{line}` is not in the built rules");
    }
    assert!(rule.contains("-A INPUT -p tcp -m multiport --dports 80,8443 -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT"), "{rule}");

    // Go to definition: variables across files, services, chains, includes.
    let admins_name = text.find("admins =").unwrap();
    assert_eq!(
        definition(&mut client, &etcd_uri, at(etcd, "$admins", 0, 3)),
        [(main_uri.clone(), range(text, admins_name, admins_name + "admins".len()))]
    );
    let audit_name = text.find("audit {").unwrap();
    assert_eq!(
        definition(&mut client, &main_uri, at(text, "audit", 0, 2)),
        [(main_uri.clone(), range(text, audit_name, audit_name + "audit".len()))]
    );
    let exporter_name = text.find("exporter =").unwrap();
    assert_eq!(
        definition(&mut client, &main_uri, at(text, "exporter", 1, 2)),
        [(main_uri.clone(), range(text, exporter_name, exporter_name + "exporter".len()))]
    );
    assert_eq!(definition(&mut client, &main_uri, at(text, "conf.d", 0, 1)), [(etcd_uri.clone(), range("", 0, 0))]);

    // Document symbols: declarations, and the chain with its rules.
    let symbols = client.request("textDocument/documentSymbol", json!({"textDocument": {"uri": main_uri}}));
    let names: Vec<&str> = symbols.as_array().unwrap().iter().map(|symbol| symbol["name"].as_str().unwrap()).collect();
    for name in ["admins", "exporter", "audit", "use baseline except ssh-in", "include conf.d/*.fw"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let audit = symbols.as_array().unwrap().iter().find(|symbol| symbol["name"] == "audit").unwrap();
    assert_eq!(audit["kind"], 3, "a namespace");
    assert_eq!(audit["children"].as_array().unwrap().len(), 2, "{audit}");
    assert_eq!(audit["selectionRange"], range(text, audit_name, audit_name + "audit".len()));

    // Completion, on lines still being typed (the file does not parse).
    let variables = completion(&mut client, &main_uri, 2, text, "allow in from $ad");
    assert_eq!(variables, ["$admins"]);
    let parts = completion(&mut client, &main_uri, 3, text, "use baseline except ss");
    assert_eq!(parts, ["ssh-in"]);
    let chains = completion(&mut client, &main_uri, 4, text, "jump in tcp 22 to a");
    assert_eq!(chains, ["audit"]);
    let services = completion(&mut client, &main_uri, 5, text, "allow in service expo");
    assert_eq!(services, ["exporter"]);
    let keywords = completion(&mut client, &main_uri, 6, text, "al");
    assert_eq!(keywords, ["allow"]);
    let options = completion(&mut client, &main_uri, 7, text, "allow in tcp 22 state");
    assert_eq!(options, ["state", "stateful"]);
    client.shutdown();
    std::fs::remove_dir_all(&directory).unwrap();
}

/// Applies LSP text edits (UTF-16 positions, none overlapping) to a text.
fn apply(text: &str, edits: &[Value]) -> String {
    let offset = |position: &Value| {
        let (line, character) = (position["line"].as_u64().unwrap() as usize, position["character"].as_u64().unwrap() as usize);
        let line_start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
        let mut units = 0;
        for (index, c) in text[line_start..].char_indices() {
            if units >= character || c == '\n' {
                return line_start + index;
            }
            units += c.len_utf16();
        }
        text.len()
    };
    let mut edits: Vec<(usize, usize, &str)> = edits
        .iter()
        .map(|edit| (offset(&edit["range"]["start"]), offset(&edit["range"]["end"]), edit["newText"].as_str().unwrap()))
        .collect();
    edits.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    let mut out = text.to_string();
    for (start, end, new_text) in edits {
        out.replace_range(start..end, new_text);
    }
    out
}

#[test]
fn formatting_is_fwc_fmt() {
    let directory = scratch("format");
    let path = directory.join("messy.fw");
    let messy = "# héllo 😀\nlet   admins={198.18.0.0/24,fd00:1::/48}\nallow in tcp 22 from $admins    stateful # ssh\n\n\n\nchain audit {\ndeny from 198.18.9.0/24\n   return\n}\njump in to audit\n";
    let mut client = Client::start(Value::Null);
    let document = uri(&path);
    client.open(&document, messy);
    let formatting = |client: &mut Client| {
        client.request(
            "textDocument/formatting",
            json!({"textDocument": {"uri": document}, "options": {"tabSize": 4, "insertSpaces": true}}),
        )
    };
    let edits = formatting(&mut client);
    let edits = edits.as_array().expect("edits");
    assert!(!edits.is_empty());
    let mut fmt = Command::new(env!("CARGO_BIN_EXE_fwc"))
        .args(["fmt", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("fwc fmt runs");
    fmt.stdin.take().unwrap().write_all(messy.as_bytes()).unwrap();
    let expected = String::from_utf8(fmt.wait_with_output().unwrap().stdout).unwrap();
    assert_ne!(expected, messy);
    let formatted = apply(messy, edits);
    assert_eq!(formatted, expected);
    // Formatted text needs no edit; text that does not parse gets none.
    client.change(&document, 2, &formatted);
    assert_eq!(formatting(&mut client), json!([]));
    client.change(&document, 3, "allow in tcp 22 from\n");
    assert_eq!(formatting(&mut client), Value::Null);
    client.shutdown();
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn bad_messages_are_answered_and_the_server_goes_on() {
    let mut client = Client::start(Value::Null);
    // A notification with bad parameters is logged.
    client.notify("textDocument/didOpen", json!({"textDocument": {"uri": 7}}));
    let log = loop {
        let message = client.receive();
        if message["method"] == "window/logMessage" {
            break message;
        }
    };
    assert_eq!(log["params"]["type"], 1, "{log}");
    // A request the server does not know is an error; one about a document
    // it has never seen has no answer.
    client.next_id += 1;
    let id = client.next_id;
    client.send(json!({"jsonrpc": "2.0", "id": id, "method": "textDocument/rename", "params": {}}));
    let answer = loop {
        let message = client.receive();
        if message["id"] == id {
            break message;
        }
    };
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    let nowhere = json!({"textDocument": {"uri": "file:///nowhere.fw"}, "position": {"line": 0, "character": 0}});
    assert_eq!(client.request("textDocument/hover", nowhere), Value::Null);
    client.shutdown();
}
