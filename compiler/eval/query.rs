//! `fwc query`: the verdict for a packet, per family, with the rule that
//! decided it and the chains it went through.

use super::expect::{constraint_of, describe_packet};
use super::space::{self, Constraint};
use super::{Decision, Evaluation, Packet, Program};
use crate::diagnostics::{Code, Diagnostic};
use crate::ir::{Family, Ruleset};
use crate::lower::values::Variables;
use crate::syntax::ast;

/// One family's answer. When the packet leaves fields open and their
/// values are decided differently, `outcomes` has one example per verdict.
#[derive(Clone, Debug)]
pub struct FamilyAnswer {
    pub family: Family,
    pub outcomes: Vec<(Packet, Evaluation)>,
}

#[derive(Clone, Debug)]
pub struct QueryResult {
    pub answers: Vec<FamilyAnswer>,
}

impl QueryResult {
    /// Allowed for every packet the query covers.
    pub fn all_allowed(&self) -> bool {
        self.answers.iter().all(|answer| answer.outcomes.iter().all(|(_, e)| e.decision == Decision::Accept))
    }
}

pub fn run(ruleset: &Ruleset, query: &ast::Packet, variables: &mut Variables) -> Result<QueryResult, Vec<Diagnostic>> {
    let constraint = constraint_of(query, variables)?;
    let families = constraint.families.clone().unwrap_or_else(|| Family::BOTH.to_vec());
    if families.is_empty() {
        return Err(vec![Diagnostic::new(Code::BadPacket, "no packet has these addresses")
            .primary(query.direction.span, "the addresses are of different families")]);
    }
    let program = Program::new(ruleset);
    let mut answers = Vec::new();
    for family in families {
        let one = Constraint { families: Some(vec![family]), ..constraint.clone() };
        let mut outcomes: Vec<(Packet, Evaluation)> = Vec::new();
        let result = space::for_each_packet(ruleset, query.direction.value, &one, |packet| {
            let evaluation = program.evaluate(packet);
            if !outcomes.iter().any(|(_, seen)| seen.decision == evaluation.decision && seen.rule == evaluation.rule) {
                outcomes.push((packet.clone(), evaluation));
            }
            outcomes.len() < 8
        });
        if let Err(count) = result {
            return Err(vec![Diagnostic::new(Code::BadPacket, format!("this query covers {count} kinds of packet"))
                .primary(query.direction.span, "too broad")
                .note("name the protocol, port or addresses")]);
        }
        answers.push(FamilyAnswer { family, outcomes });
    }
    Ok(QueryResult { answers })
}

/// The report for one outcome: the deciding rule as a labelled note.
pub fn explain(ruleset: &Ruleset, packet: &Packet, evaluation: &Evaluation) -> Diagnostic {
    let verdict = match evaluation.decision {
        Decision::Accept => "allowed",
        Decision::Drop => "denied",
        Decision::Reject => "rejected",
    };
    let mut note = Diagnostic::new(Code::TestFailed, format!("{}: {}", verdict, describe_packet(packet)));
    note.severity = crate::diagnostics::Severity::Note;
    note = match evaluation.rule {
        Some(index) => note.primary(ruleset.rules[index].origin.span, format!("{verdict} by this rule")),
        None => note.note(format!("no rule matched: the policy of {} decided", evaluation.path[0])),
    };
    for via in evaluation.rule.map(|index| ruleset.rules[index].origin.via.clone()).unwrap_or_default() {
        note = note.secondary(via, "brought in here");
    }
    if let Some(index) = evaluation.translation {
        note = note.secondary(ruleset.rules[index].origin.span, "translated by this NAT rule");
    }
    note.note(format!("path: {}", evaluation.path.join(" → ")))
}
