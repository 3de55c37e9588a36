//! What a task's caller is told: a worker's outcome for it, or why its worker was lost.

use std::time::Duration;

use polyloop_wire::Outcome;

use super::Kill;
use crate::TaskError;
use crate::bytes::SmallBytes;
use crate::error::Kind;
use crate::job::{Output, RawResult, TaskKey};

/// The result a worker's `outcome` for the single task `key` gives its caller. Small outputs
/// stay encoded (the caller decodes them on its own thread); larger ones are decoded here, where
/// the frame is. A chunk's `Part` is not for a single task: `None`.
pub(super) fn task_result(
    key: &TaskKey,
    outcome: Outcome<'_>,
    max_nesting: u32,
    task_timeout: Option<Duration>,
) -> Option<RawResult> {
    Some(match outcome {
        Outcome::Ok(bytes) if SmallBytes::fits_inline(bytes.len()) => {
            Ok(Output::Encoded(SmallBytes::copy_from(bytes)))
        }
        Outcome::Ok(bytes) => (key.decode)(key.name, bytes, max_nesting),
        Outcome::Part(_) => return None,
        outcome => Err(TaskError::from_outcome(key.name, outcome, task_timeout)?),
    })
}

/// Which worker was lost, and how: the words its tasks' errors are made of.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lost<'a> {
    pub(super) worker: usize,
    pub(super) pid: u32,
    /// How the process ended, as its exit status reads.
    pub(super) status: &'a str,
    pub(super) task_timeout: Option<Duration>,
}

impl Lost<'_> {
    /// Why the worker's tasks fail, given why its driver killed it (`None`: it died by itself).
    pub(super) fn reason(&self, kill: Option<&Kill>) -> String {
        let Lost { worker, pid, status, .. } = *self;
        match kill {
            Some(Kill::Broken(why)) => {
                format!("worker {worker} (pid {pid}) was killed because {why}")
            }
            Some(Kill::Overran(_)) => format!(
                "worker {worker} (pid {pid}) was killed ({status}) because another of its tasks \
                 ran longer than {:?} without yielding",
                self.task_timeout.unwrap_or_default()
            ),
            None => format!("worker {worker} (pid {pid}) died: {status}"),
        }
    }

    /// The error of the task that overran its timeout and got its worker killed.
    pub(super) fn overran(&self, task: &'static str) -> TaskError {
        let Lost { worker, pid, .. } = *self;
        let msg = format!(
            "ran longer than {:?} without yielding; worker {worker} (pid {pid}) was killed",
            self.task_timeout.unwrap_or_default()
        );
        TaskError::new(Kind::Timeout, task, msg)
    }
}

#[cfg(test)]
mod tests {
    use polyloop_wire::RemoteError;

    use super::*;
    use crate::job::decode;

    const KEY: TaskKey = TaskKey { name: "t::echo", fingerprint: 1, decode: decode::<String> };
    const TIMEOUT: Option<Duration> = Some(Duration::from_millis(250));

    fn error(outcome: Outcome<'_>) -> TaskError {
        task_result(&KEY, outcome, 128, TIMEOUT).unwrap().expect_err("an error outcome")
    }

    #[test]
    fn outputs_small_stay_encoded_and_large_are_decoded() {
        let small = postcard::to_allocvec("hi").unwrap();
        assert!(matches!(
            task_result(&KEY, Outcome::Ok(&small), 128, None),
            Some(Ok(Output::Encoded(_)))
        ));
        let large = postcard::to_allocvec(&"x".repeat(4096)).unwrap();
        let Some(Ok(Output::Decoded(value))) = task_result(&KEY, Outcome::Ok(&large), 128, None)
        else {
            panic!("a large output is decoded where it arrived");
        };
        assert_eq!(value.downcast_ref::<String>().map(String::len), Some(4096));
        let truncated = &large[..large.len() - 1];
        assert!(
            task_result(&KEY, Outcome::Ok(truncated), 128, None)
                .unwrap()
                .unwrap_err()
                .is_serialization()
        );
    }

    #[test]
    fn each_error_outcome_has_its_kind() {
        let remote = RemoteError { message: "no such file".into(), chain: vec![], value: None };
        let failed = error(Outcome::Failed(remote));
        assert!(failed.is_failed());
        assert_eq!(failed.message(), "no such file");
        assert!(error(Outcome::Panicked("boom".into())).is_panic());
        let timed_out = error(Outcome::TimedOut);
        assert!(timed_out.is_timeout());
        assert_eq!(timed_out.message(), "ran longer than 250ms and was cancelled");
        assert!(error(Outcome::Cancelled).is_cancelled());
        assert!(error(Outcome::Serialization("bad input".into())).is_serialization());
        let unknown = error(Outcome::UnknownTask(9));
        assert!(unknown.is_unknown_task());
        assert_eq!(unknown.message(), "the worker has no task 9");
        assert_eq!(unknown.task_name(), "t::echo");
        assert!(
            task_result(&KEY, Outcome::Part(&[]), 128, TIMEOUT).is_none(),
            "not a single result"
        );
    }

    #[test]
    fn a_lost_worker_says_who_and_why() {
        let lost = Lost { worker: 1, pid: 42, status: "killed by SIGKILL", task_timeout: TIMEOUT };
        assert_eq!(lost.reason(None), "worker 1 (pid 42) died: killed by SIGKILL");
        let broken = Kill::Broken("it sent an invalid frame".into());
        assert_eq!(
            lost.reason(Some(&broken)),
            "worker 1 (pid 42) was killed because it sent an invalid frame"
        );
        assert_eq!(
            lost.reason(Some(&Kill::Overran(Some(3)))),
            "worker 1 (pid 42) was killed (killed by SIGKILL) because another of its tasks ran \
             longer than 250ms without yielding"
        );
        let overran = lost.overran("t::spin");
        assert!(overran.is_timeout());
        assert_eq!(
            overran.message(),
            "ran longer than 250ms without yielding; worker 1 (pid 42) was killed"
        );
    }
}
