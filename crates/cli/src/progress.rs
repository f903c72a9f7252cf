//! The progress display on a terminal: one spinner for the running step, one line per finished step.

use std::sync::Mutex;
use std::time::Duration;

use clientele_jobs::{RunObserver, StepReport, StepStatus, thousands};
use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            bar: Mutex::new(None),
        }
    }

    pub fn finish(&self) {
        if let Ok(mut bar) = self.bar.lock()
            && let Some(b) = bar.take()
        {
            b.finish_and_clear();
        }
    }
}

impl RunObserver for Progress {
    fn step_started(&self, step: &str, kind: &str) {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("{step} [{kind}]"));
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn step_finished(&self, report: &StepReport) {
        let line = format!(
            "{} {} [{}] {:.1}s, rows in {}, out {}",
            match report.status {
                StepStatus::Succeeded => "done",
                StepStatus::Failed => "FAILED",
                StepStatus::Skipped => "skipped",
            },
            report.name,
            report.kind,
            report.duration_ms as f64 / 1000.0,
            thousands(report.rows_in),
            thousands(report.rows_out)
        );
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
        eprintln!("{line}");
    }
}
