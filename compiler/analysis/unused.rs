//! Names the policy defines and never uses.

use crate::diagnostics::{Code, Diagnostic};
use crate::lower::Lowered;
use crate::source::Sources;
use crate::syntax::ast;

pub fn unused_checks(lowered: &Lowered, sources: &Sources) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    // Variables used only by `expect` lines count as used.
    let mut in_tests = Vec::new();
    for (test, _) in &lowered.tests {
        for expect in &test.expects {
            for addresses in [&expect.packet.from, &expect.packet.to].into_iter().flatten() {
                collect(&addresses.items, &mut in_tests);
            }
            if let Some(on) = &expect.packet.on {
                for interface in std::iter::once(&on.first).chain(&on.second) {
                    if let ast::InterfaceValue::Variable(name) = &interface.value {
                        in_tests.push(name.clone());
                    }
                }
            }
        }
    }
    let mut variables: Vec<(&String, &crate::lower::values::Variable)> = lowered.variables.map.iter().collect();
    variables.sort_by_key(|(_, variable)| variable.span);
    for (name, variable) in variables {
        let user = matches!(sources.get(variable.span.file).origin, crate::source::Origin::Path(_));
        if !variable.used && user && !in_tests.contains(name) && name != "ssh_port" {
            diagnostics.push(
                Diagnostic::new(Code::UnusedVariable, format!("`${name}` is never used"))
                    .primary(variable.span, "defined here")
                    .note("remove it, or use it in a rule"),
            );
        }
    }
    for (name, span) in &lowered.unused_services {
        diagnostics.push(
            Diagnostic::new(Code::UnusedService, format!("service `{name}` is never used"))
                .primary(*span, "defined here")
                .note(format!("remove it, or use it: `allow in service {name}`")),
        );
    }
    diagnostics
}

fn collect(items: &[ast::AddressItem], names: &mut Vec<String>) {
    for item in items {
        match item {
            ast::AddressItem::Variable(name) => names.push(name.value.clone()),
            ast::AddressItem::Set(_, inner) => collect(inner, names),
            ast::AddressItem::Literal(_) => {}
        }
    }
}
