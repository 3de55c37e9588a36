//! The suite's figures, written as the JSON document `cargo xtask bench` reads.
//!
//! Sections: `params` (sizes of this run), `polyloop` and `reference` (one figure per workload key,
//! the same keys `benches/python/aiomp_suite.py` writes under `aiomultiprocess`), `raw` (limits of
//! the machine), `sweep`, and `errors` (workload key to message, for figures that failed).

use std::fmt::Display;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::{Params, SweepSeries};

#[derive(Debug)]
pub struct Report {
    params: Params,
    polyloop: Map<String, Value>,
    reference: Map<String, Value>,
    raw: Map<String, Value>,
    sweep: Vec<Value>,
    sweep_reference: Option<f64>,
    errors: Map<String, Value>,
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

impl Report {
    pub fn new(params: Params) -> Report {
        Report {
            params,
            polyloop: Map::new(),
            reference: Map::new(),
            raw: Map::new(),
            sweep: Vec::new(),
            sweep_reference: None,
            errors: Map::new(),
        }
    }

    pub fn polyloop(&mut self, key: &str, value: f64) {
        self.polyloop.insert(key.to_owned(), number(value));
    }

    pub fn reference(&mut self, key: &str, value: f64) {
        self.reference.insert(key.to_owned(), number(value));
    }

    pub fn raw(&mut self, key: &str, value: f64) {
        self.raw.insert(key.to_owned(), number(value));
    }

    /// Records that the figures `keys` could not be measured, and why.
    pub fn error(&mut self, keys: &[&str], err: &dyn Display) {
        let message = format!("{err:#}");
        for key in keys {
            self.errors.insert((*key).to_owned(), Value::String(message.clone()));
        }
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn sweep_point(&mut self, series: &SweepSeries, child_concurrency: u32, tasks_per_s: f64) {
        self.sweep.push(json!({
            "series": series.label,
            "processes": series.processes,
            "full_prefetch": series.full_prefetch,
            "child_concurrency": child_concurrency,
            "tasks_per_s": number(tasks_per_s),
        }));
    }

    pub fn sweep_reference(&mut self, tasks_per_s: f64) {
        self.sweep_reference = Some(tasks_per_s);
    }

    pub fn to_json(&self) -> Value {
        let mut params = serde_json::to_value(&self.params).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut params {
            // The labels of the report quote these derived figures.
            map.insert(
                "sleep_ideal_s".into(),
                number(
                    self.params
                        .sleep_ideal_s(self.params.sleep_tasks, self.params.sleep_concurrency),
                ),
            );
        }
        json!({
            "suite": "polyloop-benches",
            "quick": self.params.quick,
            "params": params,
            "polyloop": self.polyloop,
            "reference": self.reference,
            "raw": self.raw,
            "sweep": {
                "n": self.params.sweep_n,
                "points": self.sweep,
                "reference_tasks_per_s": self.sweep_reference.map_or(Value::Null, number),
            },
            "errors": self.errors,
        })
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json()).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}
