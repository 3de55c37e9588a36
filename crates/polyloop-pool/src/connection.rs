//! Starting one worker: spawn it, send the Welcome, and read its Hello.

use std::collections::HashMap;
use std::sync::Arc;

use polyloop_wire::{
    FrameBuffer, Limits, PROTOCOL_VERSION, ToChild, ToParent, Welcome, WorkerConfig,
    decode_to_parent, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::PoolError;
use crate::builder::Config;
use crate::process::{WorkerProc, WorkerProgram, spawn_worker};

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
    pub(crate) reader: OwnedReadHalf,
    pub(crate) writer: OwnedWriteHalf,
    pub(crate) frames: FrameBuffer,
    pub(crate) registry: Arc<RemoteRegistry>,
    pub(crate) limits: Limits,
}

/// Spawns the worker for slot `worker_idx` and completes its handshake. `on_spawn` sees the
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
    let (proc, stream) = spawn_worker(&program).map_err(|source| PoolError::Spawn {
        program: program.path.display().to_string(),
        source,
    })?;
    let proc = Arc::new(proc);
    on_spawn(&proc);
    let pid = proc.pid();
    let handshake = async {
        stream.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(stream)?;
        let (mut reader, mut writer) = stream.into_split();
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
        let mut frames = FrameBuffer::new(limits);
        loop {
            if frames.has_frame().map_err(|source| PoolError::Handshake { pid, source })? {
                break;
            }
            // A worker that exits before reading the Welcome resets the connection instead of
            // closing it: either way, what matters is how it ended.
            let n = reader.read(frames.spare()).await.unwrap_or(0);
            if n == 0 {
                let status = proc.reap(config.kill_grace).await;
                return Err(PoolError::NotAWorker { pid, status });
            }
            frames.filled(n);
        }
        let payload = frames.next_frame().ok().flatten().unwrap_or_default();
        let hello = match decode_to_parent(payload, &limits) {
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
        let mut conflicts: Vec<String> = polyloop_wire::SCHEMAS
            .iter()
            .filter(|ours| {
                tasks.get(ours.name).is_some_and(|&(_, theirs)| theirs != (ours.fingerprint)())
            })
            .map(|ours| format!("`{}`", ours.name))
            .collect();
        if !conflicts.is_empty() {
            conflicts.sort();
            return Err(PoolError::RegistryMismatch { pid, tasks: conflicts });
        }
        Ok(Connection {
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
