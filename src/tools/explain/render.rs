//! An explanation as text for people, or as JSON for tools.

use std::fmt::Write as _;

use super::{Explanation, Outcome};

fn outcome(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "ok",
        Outcome::Refused => "REFUSED",
        Outcome::Answered => "answered",
        Outcome::Skipped => "skipped",
    }
}

/// Each step with its outcome and facts (a many-line value indented under its name), then
/// the answer.
pub fn render(explanation: &Explanation) -> String {
    let mut out = String::new();
    for step in &explanation.steps {
        let _ = writeln!(out, "{:18} {}", step.name, outcome(step.outcome));
        for (what, value) in &step.facts {
            if value.contains('\n') {
                let _ = writeln!(out, "    {what}:");
                for line in value.lines() {
                    let _ = writeln!(out, "        {line}");
                }
            } else {
                let _ = writeln!(out, "    {what:18} {value}");
            }
        }
    }
    let _ = writeln!(out, "answer: {}", explanation.answer);
    out
}

/// `{"steps": [{"step", "result", "facts": {…}}], "answer"}`.
pub fn render_json(explanation: &Explanation) -> String {
    let steps: Vec<serde_json::Value> = explanation
        .steps
        .iter()
        .map(|step| {
            let facts: serde_json::Map<String, serde_json::Value> = step
                .facts
                .iter()
                .map(|(what, value)| (what.to_string(), serde_json::Value::from(value.as_str())))
                .collect();
            serde_json::json!({
                "step": step.name,
                "result": outcome(step.outcome).to_ascii_lowercase(),
                "facts": facts,
            })
        })
        .collect();
    let document = serde_json::json!({ "steps": steps, "answer": explanation.answer });
    format!("{document:#}\n")
}
