//! How `apply` shows what happens: the plan before it starts, progress per node while it
//! runs, a summary at the end. Three reporters behind one trait: live bars per node on a
//! terminal, plain lines otherwise, JSON event lines for machines.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use roundhouse_apply::ProgressSink;
use roundhouse_apply::exec::{NodeResult, Progress, Report};
use roundhouse_plan::Plan;

/// Where apply's output goes.
pub trait Reporter: Send + Sync {
    /// The plan, before anything is done (and before confirmation is asked for).
    fn plan(&self, plan: &Plan);
    /// One step of one node.
    fn progress(&self, p: &Progress);
    /// The outcome of the run.
    fn finish(&self, report: &Report);
}

/// The executor's progress callback, feeding `reporter`.
pub fn sink(reporter: Arc<dyn Reporter>) -> ProgressSink {
    Arc::new(move |p: &Progress| reporter.progress(p))
}

type Out = Mutex<Box<dyn Write + Send>>;

fn write_out(out: &Out, text: &str) {
    // Progress output is best effort: a closed pipe must not fail the rollout itself.
    let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = w.write_all(text.as_bytes());
    let _ = w.flush();
}

/// `{"event":"plan"|"progress"|"summary", …}` lines, one JSON object each.
pub struct JsonReporter {
    out: Out,
}

impl JsonReporter {
    /// Writes to `out` (stdout in the CLI).
    pub fn new(out: Box<dyn Write + Send>) -> JsonReporter {
        JsonReporter {
            out: Mutex::new(out),
        }
    }

    fn line(&self, value: serde_json::Value) {
        write_out(&self.out, &format!("{value}\n"));
    }
}

impl Reporter for JsonReporter {
    fn plan(&self, plan: &Plan) {
        self.line(serde_json::json!({ "event": "plan", "plan": plan }));
    }
    fn progress(&self, p: &Progress) {
        self.line(serde_json::json!({ "event": "progress", "progress": p }));
    }
    fn finish(&self, report: &Report) {
        self.line(serde_json::json!({ "event": "summary", "report": report }));
    }
}

/// Plain text: the plan table, one line per step (`TIME NODE KIND MESSAGE`, continuation
/// lines indented), then the summary. For logs and pipes.
pub struct LineReporter {
    out: Out,
}

impl LineReporter {
    /// Writes to `out` (stderr in the CLI).
    pub fn new(out: Box<dyn Write + Send>) -> LineReporter {
        LineReporter {
            out: Mutex::new(out),
        }
    }
}

/// One progress event as plain lines.
pub fn progress_lines(p: &Progress) -> String {
    let mut lines = p.message.lines();
    let first = lines.next().unwrap_or("");
    let mut s = format!("{} {:<20} {:<12} {first}\n", p.at, p.node, p.kind);
    for more in lines {
        s.push_str(&format!("{:<24} {:<20} {:<12} | {more}\n", "", "", ""));
    }
    s
}

/// The final summary as text.
pub fn summary_text(report: &Report) -> String {
    let mut s = format!(
        "\napply: {} succeeded, {} failed, {} not started\n",
        report.succeeded(),
        report.failed(),
        report.not_started()
    );
    for o in &report.outcomes {
        match &o.result {
            NodeResult::Failed(why) => s.push_str(&format!("  failed: {why}\n")),
            NodeResult::NotStarted(why) => {
                s.push_str(&format!("  not started: {}: {why}\n", o.node))
            }
            NodeResult::Succeeded => {}
        }
    }
    s
}

impl Reporter for LineReporter {
    fn plan(&self, plan: &Plan) {
        write_out(&self.out, &roundhouse_plan::render_table(plan));
    }
    fn progress(&self, p: &Progress) {
        write_out(&self.out, &progress_lines(p));
    }
    fn finish(&self, report: &Report) {
        write_out(&self.out, &summary_text(report));
    }
}

/// Live progress on a terminal: one spinner line per node in flight showing its latest step,
/// an overall bar, and a permanent line per finished node.
pub struct BarReporter {
    multi: MultiProgress,
    total: ProgressBar,
    nodes: Mutex<BTreeMap<String, ProgressBar>>,
}

impl BarReporter {
    /// Draws on stderr.
    pub fn stderr() -> BarReporter {
        BarReporter::with_target(ProgressDrawTarget::stderr())
    }

    /// Draws on `target` (tests use a hidden one).
    pub fn with_target(target: ProgressDrawTarget) -> BarReporter {
        let multi = MultiProgress::with_draw_target(target);
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} nodes {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        BarReporter {
            multi,
            total,
            nodes: Mutex::new(BTreeMap::new()),
        }
    }

    fn node_bar(&self, node: &str) -> ProgressBar {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .entry(node.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:<20} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(node.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            })
            .clone()
    }

    /// The line currently shown for `node`, if it is in flight.
    #[cfg(test)]
    pub fn shown(&self, node: &str) -> Option<String> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.get(node).map(|b| b.message())
    }

    /// Nodes counted as finished.
    #[cfg(test)]
    pub fn finished(&self) -> u64 {
        self.total.position()
    }
}

impl Reporter for BarReporter {
    fn plan(&self, plan: &Plan) {
        // Before any bar exists: plain text on the terminal, as the operator must read it.
        eprint!("{}", roundhouse_plan::render_table(plan));
        self.total.set_length(plan.summary.changes() as u64);
    }

    fn progress(&self, p: &Progress) {
        let first = p.message.lines().next().unwrap_or("");
        match p.kind {
            "queued" => {}
            "succeeded" | "failed" | "not-started" => {
                let bar = {
                    let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
                    nodes.remove(&p.node)
                };
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                let mark = match p.kind {
                    "succeeded" => "ok    ",
                    "failed" => "FAILED",
                    _ => "skip  ",
                };
                // Permanent, above the live lines; the whole message (a failure's output tail
                // matters).
                let _ = self
                    .multi
                    .println(format!("{mark} {:<20} {}", p.node, p.message));
                self.total.inc(1);
            }
            _ => self.node_bar(&p.node).set_message(first.to_string()),
        }
    }

    fn finish(&self, report: &Report) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
        eprint!("{}", summary_text(report));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bootdata::Mac;
    use roundhouse_apply::exec::Outcome;
    use roundhouse_plan::{Action, Timestamp};

    fn p(node: &str, kind: &'static str, message: &str) -> Progress {
        Progress {
            at: Timestamp::from_unix_millis(0),
            node: node.into(),
            mac: Mac::parse("52:54:00:00:00:01").unwrap(),
            kind,
            message: message.into(),
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn report() -> Report {
        Report {
            outcomes: vec![
                Outcome {
                    node: "w1".into(),
                    action: Action::RunHooks,
                    result: NodeResult::Failed("node w1: hook h: `false` exited".into()),
                },
                Outcome {
                    node: "w2".into(),
                    action: Action::Provision,
                    result: NodeResult::Succeeded,
                },
            ],
        }
    }

    #[test]
    fn lines_keep_their_format() {
        let buf = Buf::default();
        let r = LineReporter::new(Box::new(buf.clone()));
        r.progress(&p("w1", "step", "power action output:\nline two"));
        r.finish(&report());
        // Continuation lines line up under the message: time (24), node (20), kind (12).
        let indent = " ".repeat(24 + 1 + 20 + 1 + 12 + 1);
        assert_eq!(
            buf.text(),
            format!(
                "1970-01-01T00:00:00Z w1                   step         power action output:\n\
                 {indent}| line two\n\
                 \napply: 1 succeeded, 1 failed, 0 not started\n  failed: node w1: hook h: `false` exited\n"
            )
        );
    }

    #[test]
    fn json_events_are_one_object_per_line() {
        let buf = Buf::default();
        let r = JsonReporter::new(Box::new(buf.clone()));
        r.progress(&p("w1", "started", "provision"));
        r.finish(&report());
        let lines: Vec<serde_json::Value> = buf
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["event"], "progress");
        assert_eq!(lines[0]["progress"]["node"], "w1");
        assert_eq!(lines[0]["progress"]["kind"], "started");
        assert_eq!(lines[1]["event"], "summary");
        assert_eq!(lines[1]["report"]["outcomes"][0]["result"], "failed");
        assert_eq!(lines[1]["report"]["outcomes"][0]["action"], "run-hooks");
    }

    #[test]
    fn bars_follow_each_node_until_it_ends() {
        let r = BarReporter::with_target(ProgressDrawTarget::hidden());
        r.progress(&p("w1", "queued", "provision: why"));
        assert_eq!(r.shown("w1"), None, "queued nodes get no line yet");
        r.progress(&p("w1", "started", "provision"));
        r.progress(&p("w2", "started", "run-hooks"));
        r.progress(&p("w1", "step", "waiting for the fetch\nmore"));
        assert_eq!(r.shown("w1").as_deref(), Some("waiting for the fetch"));
        assert_eq!(r.shown("w2").as_deref(), Some("run-hooks"));
        r.progress(&p("w1", "succeeded", "runs config abc"));
        assert_eq!(r.shown("w1"), None);
        assert_eq!(r.finished(), 1);
        r.progress(&p("w2", "failed", "node w2: hook"));
        assert_eq!(r.finished(), 2);
    }
}
