//! Plain-text rendering of a plan for terminals and logs.

use std::fmt::Write as _;

use crate::plan::{Action, Plan, PlanItem};
use crate::state::short_digest;

/// Renders the plan as an aligned table (NODE, ROLE, ACTION, DIGEST, WHY), a summary line and
/// the warnings. DIGEST is `old→new` in 12-digit short forms (`-` for no installation,
/// `unknown` for an adopted one); just one digest when nothing changes. WHY is last and never
/// truncated: it is the column people act on.
pub fn render_table(plan: &Plan) -> String {
    let headers = ["NODE", "ROLE", "ACTION", "DIGEST", "WHY"];
    let rows: Vec<[String; 5]> = plan
        .items
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.role.as_str().to_string(),
                i.action.as_str().to_string(),
                digest_cell(i),
                i.reason.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (k, cell) in cells.iter().enumerate() {
            if k + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[k] - cell.chars().count();
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out.push('\n');
    out.push_str(&summary_line(plan));
    out.push('\n');
    for w in &plan.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

/// `Plan: 1 provision, 2 reprovision-in-place, 0 resume, 1 hold (drift), 4 none, 0 error.`
pub fn summary_line(plan: &Plan) -> String {
    // `run-hooks` and `state-lost` are left out when zero: the usual line stays as it was.
    let parts: Vec<String> = Action::ALL
        .iter()
        .filter(|&&a| {
            !matches!(a, Action::RunHooks | Action::StateLost) || plan.summary.count(a) > 0
        })
        .map(|&a| {
            let n = plan.summary.count(a);
            if a == Action::Hold {
                format!("{n} {a} (drift)")
            } else {
                format!("{n} {a}")
            }
        })
        .collect();
    format!("Plan: {}.", parts.join(", "))
}

fn digest_cell(item: &PlanItem) -> String {
    let new = short_digest(&item.new_digest);
    match &item.old_digest {
        Some(old)
            if old.known() == Some(item.new_digest.as_str())
                && item.action != Action::Provision =>
        {
            new.to_string()
        }
        Some(old) => format!("{}→{new}", old.short()),
        None => format!("-→{new}"),
    }
}
