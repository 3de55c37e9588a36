//! The suite's figures, collected as the workloads run into the [`SuiteReport`] that
//! `cargo xtask bench` reads.

use std::fmt::Display;
use std::path::Path;

use polyloop_bench_report::{SuiteReport, SweepPoint};

use crate::{Params, SweepSeries};

/// A report being filled in as the workloads run.
#[derive(Debug)]
pub struct Report {
    doc: SuiteReport,
}

impl Report {
    /// An empty report of a run of these sizes.
    pub fn new(params: Params) -> Report {
        Report { doc: SuiteReport::new(params) }
    }

    /// Records polyloop's figure for workload `key`.
    pub fn polyloop(&mut self, key: &str, value: f64) {
        self.doc.polyloop.insert(key, value);
    }

    /// Records the in-process tokio figure for workload `key`.
    pub fn reference(&mut self, key: &str, value: f64) {
        self.doc.reference.insert(key, value);
    }

    /// Records the machine's raw limit for workload `key`.
    pub fn raw(&mut self, key: &str, value: f64) {
        self.doc.raw.insert(key, value);
    }

    /// Records that the figures `keys` could not be measured, and why.
    pub fn error(&mut self, keys: &[&str], err: &dyn Display) {
        let message = format!("{err:#}");
        for key in keys {
            self.doc.errors.insert((*key).to_owned(), message.clone());
        }
    }

    /// Whether a workload failed.
    pub fn has_errors(&self) -> bool {
        !self.doc.errors.is_empty()
    }

    /// Adds a point to the sweep; a rate that is not a finite number is no point.
    pub fn sweep_point(&mut self, series: &SweepSeries, child_concurrency: u32, tasks_per_s: f64) {
        if tasks_per_s.is_finite() {
            self.doc.sweep.points.push(SweepPoint {
                series: series.label.clone(),
                processes: series.processes,
                full_prefetch: series.full_prefetch,
                child_concurrency,
                tasks_per_s,
            });
        }
    }

    /// Records the in-process figure the sweep is drawn against.
    pub fn sweep_reference(&mut self, tasks_per_s: f64) {
        self.doc.sweep.reference_tasks_per_s = Some(tasks_per_s).filter(|rate| rate.is_finite());
    }

    /// The report as indented JSON, ending with a newline.
    pub fn to_json(&self) -> serde_json::Result<String> {
        Ok(serde_json::to_string_pretty(&self.doc)? + "\n")
    }

    /// Writes the JSON to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json()?)
    }
}
