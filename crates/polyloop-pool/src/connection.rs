//! Starting one worker: spawn it, send the Welcome, and read its Hello.

use std::collections::HashMap;
use std::sync::Arc;

use polyloop_wire::{
    FrameBuffer, Limits, PROTOCOL_VERSION, ToChild, ToParent, Welcome, WorkerConfig,
    decode_to_parent, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::PoolError;
use crate::builder::Config;
use crate::liveness::Heartbeat;
use crate::process::{WorkerProc, WorkerProgram, spawn_worker};
use polyloop_socket::{ReadHalf, WriteHalf};

/// The tasks a worker announced: name to (registry index, fingerprint).
#[derive(Debug, Default)]
pub(crate) struct RemoteRegistry {
    tasks: HashMap<String, (u32, u64)>,
}

impl RemoteRegistry {
    /// The worker's index for a task, if it has one of that name and those types.
    pub(crate) fn index(&self, name: &str, fingerprint: u64) -> Result<u32, String> {
        match self.tasks.get(name) {
            Some(&(index, theirs)) if theirs == fingerprint => Ok(index),
            Some(_) => Err(format!(
                "the worker program registers `{name}` with other input or output types (a \
                 different build of the program?)"
            )),
            None => Err(format!(
                "the worker program has no task named `{name}` (is it a #[polyloop::task] in \
                 the worker program?)"
            )),
        }
    }
}

/// A worker that completed its handshake.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) proc: Arc<WorkerProc>,
    pub(crate) reader: ReadHalf,
    pub(crate) writer: WriteHalf,
    pub(crate) frames: FrameBuffer,
    pub(crate) registry: Arc<RemoteRegistry>,
    pub(crate) limits: Limits,
    /// The worker's heartbeat, when the pool watches its liveness.
    pub(crate) heartbeat: Option<Heartbeat>,
}

/// Spawns the worker for seat `worker_idx` and completes its handshake. `on_spawn` sees the
/// process as soon as it exists, so that a pool dropped meanwhile can kill it.
pub(crate) async fn connect(
    config: &Config,
    worker_idx: usize,
    on_spawn: impl FnOnce(&Arc<WorkerProc>),
) -> Result<Connection, PoolError> {
    let program = match &config.program {
        Some(program) => program.clone(),
        None => WorkerProgram::current()?,
    };
    let spawned = spawn_worker(&program, config.heartbeat_timeout).map_err(|source| {
        PoolError::Spawn { program: program.path.display().to_string(), source }
    })?;
    let (proc, stream) = (Arc::new(spawned.proc), spawned.stream);
    on_spawn(&proc);
    let pid = proc.pid();
    let handshake = async {
        let (mut reader, mut writer) = polyloop_socket::split(stream)?;
        let limits = Limits::default();
        let welcome = ToChild::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            config: WorkerConfig {
                worker_idx: worker_idx as u32,
                child_concurrency: config.child_concurrency,
                runtime: config.runtime,
                task_timeout_ms: config.task_timeout.map(|t| t.as_millis().max(1) as u64),
                max_frame_len: limits.max_frame_len,
                max_batch_len: limits.max_batch_len,
                max_nesting: config.max_nesting,
            },
            initializer: config.initializer.clone(),
        });
        let mut out = Vec::new();
        encode_frame(&welcome, &mut out, &limits)
            .map_err(|source| PoolError::Handshake { pid, source })?;
        // A worker that exits at once closes the socket: the write may fail, the read tells why.
        let _ = writer.write_all(&out).await;
        // Until the Hello is in, a header that announces more than a handshake needs is refused
        // before anything is allocated for it.
        let mut frames = FrameBuffer::new(Limits::HANDSHAKE);
        loop {
            if frames.has_frame().map_err(|source| PoolError::Handshake { pid, source })? {
                break;
            }
            // A worker that exits before reading the Welcome resets the connection instead of
            // closing it: either way, what matters is how it ended.
            let n = reader.read(frames.spare()).await.unwrap_or(0);
            if n == 0 {
                let status = proc.reap(config.kill_grace).await;
                return Err(PoolError::NotAWorker {
                    pid,
                    status: status.clone(),
                    hint: not_a_worker_hint(&status, config.program.is_some()),
                });
            }
            frames.filled(n);
        }
        let payload = frames.next_frame().ok().flatten().unwrap_or_default();
        let hello = match decode_to_parent(payload, &Limits::HANDSHAKE) {
            Ok(ToParent::Hello(hello)) => hello,
            Ok(ToParent::Results(_)) => {
                let source = polyloop_wire::WireError::Unexpected("results before the handshake");
                return Err(PoolError::Handshake { pid, source });
            }
            Err(source) => return Err(PoolError::Handshake { pid, source }),
        };
        if let Some(error) = hello.init_error {
            return Err(PoolError::Initializer { pid, error });
        }
        let tasks: HashMap<String, (u32, u64)> =
            (0u32..).zip(hello.tasks).map(|(i, t)| (t.name, (i, t.fingerprint))).collect();
        let missing =
            task_names(config.expected.iter().filter(|ours| !tasks.contains_key(ours.name)));
        if !missing.is_empty() {
            return Err(PoolError::MissingTasks { pid, tasks: missing });
        }
        let conflicts =
            task_names(polyloop_wire::SCHEMAS.iter().chain(&config.expected).filter(|ours| {
                tasks.get(ours.name).is_some_and(|&(_, theirs)| theirs != (ours.fingerprint)())
            }));
        if !conflicts.is_empty() {
            return Err(PoolError::RegistryMismatch { pid, tasks: conflicts });
        }
        frames.set_limits(limits);
        let heartbeat = match (spawned.heartbeat, config.heartbeat_timeout) {
            (Some(beats), Some(timeout)) => Some(Heartbeat::new(beats, timeout)?),
            _ => None,
        };
        Ok(Connection {
            heartbeat,
            proc: Arc::clone(&proc),
            reader,
            writer,
            frames,
            registry: Arc::new(RemoteRegistry { tasks }),
            limits,
        })
    };
    let result = match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Ok(result) => result,
        Err(_) => {
            Err(PoolError::HandshakeTimeout { pid, seconds: config.handshake_timeout.as_secs() })
        }
    };
    if result.is_err() {
        proc.kill_and_reap();
    }
    result
}

/// The names of `schemas`, quoted, sorted and each once, for an error message.
fn task_names<'a>(schemas: impl Iterator<Item = &'a polyloop_wire::TaskSchema>) -> Vec<String> {
    let mut names: Vec<String> = schemas.map(|schema| format!("`{}`", schema.name)).collect();
    names.sort();
    names.dedup();
    names
}

/// What to tell a user whose worker ended before its handshake with `status`: what the status
/// says, if it is one a polyloop worker exits with, else what the program must do to become a
/// worker (`custom`: a program given to `worker_program` rather than this one re-executed).
fn not_a_worker_hint(status: &str, custom: bool) -> String {
    let exit = status
        .strip_prefix("exit code ")
        .and_then(|code| code.parse().ok())
        .and_then(polyloop_wire::WorkerExit::from_code);
    match (exit, custom) {
        (Some(exit), _) => format!("{}; its stderr says more", exit.meaning()),
        (None, true) => "the worker program is not a polyloop worker, or failed before it served: \
             it must call polyloop::init() first in main (or use #[polyloop::main]), or \
             polyloop_child::worker_hook() in a worker built without the facade"
            .to_owned(),
        (None, false) => "this program, started as a worker, ran something else: a program that \
             starts a pool must call polyloop::init() first in main, use #[polyloop::main], or \
             define a #[polyloop::task]; a parent built on polyloop-pool alone needs \
             .worker_program(...) naming a worker binary"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::not_a_worker_hint;

    #[test]
    fn the_hint_fits_how_the_worker_ended() {
        assert!(not_a_worker_hint("exit code 71", false).contains("no socket"));
        assert!(not_a_worker_hint("exit code 72", true).contains("parent"));
        assert!(not_a_worker_hint("exit code 0", true).contains("not a polyloop worker"));
        assert!(not_a_worker_hint("killed by signal 6 (SIGABRT)", false).contains("init()"));
        assert!(not_a_worker_hint("exit code 1", false).contains(".worker_program"));
    }
}
