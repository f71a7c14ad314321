//! Reading `iptables-save` text: tables, chains with their policies, and
//! each `-A` line split into arguments the way iptables-restore splits them.

/// One dump: the tables in the order they appear.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dump {
    pub tables: Vec<TableDump>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDump {
    pub name: String,
    /// `:NAME POLICY` lines in order; `policy` is `None` for user chains (`-`).
    pub chains: Vec<ChainDecl>,
    pub rules: Vec<RawRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainDecl {
    pub name: String,
    pub policy: Option<String>,
}

/// One `-A` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRule {
    /// 1-based line number in the dump.
    pub line: usize,
    /// The line as written, without a leading `[packets:bytes]` counter.
    pub text: String,
    pub chain: String,
    /// The arguments after `-A CHAIN`, unquoted.
    pub args: Vec<String>,
}

/// Why a text is not `iptables-save` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl TableDump {
    pub fn is_user_chain(&self, name: &str) -> bool {
        self.chains.iter().any(|chain| chain.name == name && chain.policy.is_none())
    }
}

/// Parses a whole dump. Comments and blank lines are skipped; anything that
/// is not a table, chain, rule or COMMIT line is an error.
pub fn parse_dump(text: &str) -> Result<Dump, DumpError> {
    let mut dump = Dump::default();
    let mut open: Option<TableDump> = None;
    for (index, raw_line) in text.lines().enumerate() {
        let number = index + 1;
        let error = |message: String| DumpError { line: number, message };
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            if let Some(table) = &open {
                return Err(error(format!("table `{}` has no COMMIT before `*{name}`", table.name)));
            }
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(error(format!("`{line}` is not a table name")));
            }
            open = Some(TableDump { name: name.to_string(), chains: Vec::new(), rules: Vec::new() });
            continue;
        }
        let Some(table) = open.as_mut() else {
            return Err(error(format!("`{}` outside a table (no `*filter` line before it)", shorten(line))));
        };
        if line == "COMMIT" {
            dump.tables.push(open.take().expect("checked above"));
            continue;
        }
        if let Some(declaration) = line.strip_prefix(':') {
            let mut words = declaration.split_whitespace();
            let (Some(name), Some(policy)) = (words.next(), words.next()) else {
                return Err(error(format!("`{line}` is not a chain line (`:NAME POLICY [0:0]`)")));
            };
            let policy = (policy != "-").then(|| policy.to_string());
            table.chains.push(ChainDecl { name: name.to_string(), policy });
            continue;
        }
        // `iptables-save -c` puts the counters in front: `[12:3456] -A …`.
        let rule_text = match line.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
            Some((counters, rest)) if counters.contains(':') => rest.trim_start(),
            _ => line,
        };
        let words = tokenize(rule_text).map_err(error)?;
        match words.as_slice() {
            [append, chain, ..] if append == "-A" || append == "--append" => {
                if !table.chains.iter().any(|declared| &declared.name == chain) {
                    return Err(error(format!("chain `{chain}` is not declared in table `{}`", table.name)));
                }
                table.rules.push(RawRule {
                    line: number,
                    text: rule_text.to_string(),
                    chain: chain.clone(),
                    args: words[2..].to_vec(),
                });
            }
            _ => return Err(error(format!("`{}` is not an iptables-save line", shorten(line)))),
        }
    }
    if let Some(table) = open {
        return Err(DumpError {
            line: text.lines().count(),
            message: format!("table `{}` ends without COMMIT", table.name),
        });
    }
    Ok(dump)
}

fn shorten(line: &str) -> String {
    if line.chars().count() > 60 {
        let cut: String = line.chars().take(57).collect();
        format!("{cut}...")
    } else {
        line.to_string()
    }
}

/// Splits a line as iptables-restore does: white space separates words
/// outside double quotes, and a backslash takes the next character as it is.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else { return Err("a backslash ends the line".to_string()) };
                current.push(next);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("a quoted string is not closed".to_string());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_quotes_and_escapes() {
        let words = tokenize(r#"-A INPUT -m comment --comment "it\'s \"x\" \\ y" -j LOG --log-prefix "[UFW] ""#).unwrap();
        assert_eq!(words, ["-A", "INPUT", "-m", "comment", "--comment", r#"it's "x" \ y"#, "-j", "LOG", "--log-prefix", "[UFW] "]);
        assert!(tokenize("-A INPUT \"open").is_err());
    }

    #[test]
    fn parses_tables_chains_and_counters() {
        let dump = parse_dump("# Generated\n*filter\n:INPUT DROP [1:2]\n:mine - [0:0]\n[3:4] -A INPUT -j mine\nCOMMIT\n").unwrap();
        assert_eq!(dump.tables.len(), 1);
        let table = &dump.tables[0];
        assert_eq!(table.chains[0], ChainDecl { name: "INPUT".into(), policy: Some("DROP".into()) });
        assert!(table.is_user_chain("mine"));
        assert_eq!(table.rules[0].text, "-A INPUT -j mine");
        assert_eq!(table.rules[0].line, 5);
    }

    #[test]
    fn rejects_what_is_not_a_dump() {
        assert_eq!(parse_dump("hello\n").unwrap_err().line, 1);
        assert!(parse_dump("*filter\n:INPUT ACCEPT\n").is_err());
        assert!(parse_dump("*filter\n-A INPUT -j ACCEPT\nCOMMIT\n").is_err());
        assert!(parse_dump("*filter\n:INPUT ACCEPT\n-I INPUT -j ACCEPT\nCOMMIT\n").is_err());
    }
}
