//! A task's own error type comes back typed when it is a serde type.

use polyloop::{Pool, TaskError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum FetchError {
    NotFound(String),
    Busy { retry_after_ms: u64 },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound(what) => write!(f, "{what} not found"),
            FetchError::Busy { retry_after_ms } => write!(f, "busy, retry in {retry_after_ms} ms"),
        }
    }
}

impl std::error::Error for FetchError {}

#[polyloop::task]
async fn fetch(n: u64) -> Result<u64, FetchError> {
    match n {
        0 => Err(FetchError::NotFound("page 0".into())),
        1 => Err(FetchError::Busy { retry_after_ms: 250 }),
        n => Ok(n),
    }
}

#[polyloop::task]
async fn fail_with_text(n: u64) -> Result<u64, String> {
    Err(format!("{n} is not welcome"))
}

#[polyloop::task]
async fn fail_opaquely(n: u64) -> anyhow::Result<u64> {
    anyhow::bail!("{n} went wrong")
}

#[polyloop::task]
async fn panics(_: u64) -> Result<u64, String> {
    panic!("no value here")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serde_error_comes_back_as_its_own_type() {
    let pool = Pool::builder().processes(1).build().await.unwrap();
    let mut results = pool.map_stream(fetch, 0..3u64);
    let mut errors: Vec<TaskError> = Vec::new();
    while let Some(result) = results.next().await {
        errors.extend(result.err());
    }
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].downcast::<FetchError>(), Some(FetchError::NotFound("page 0".into())));
    assert_eq!(errors[1].downcast::<FetchError>(), Some(FetchError::Busy { retry_after_ms: 250 }));
    // The text and the kind are still there, and another type is not this one.
    assert!(errors[1].is_failed());
    assert_eq!(errors[1].message(), "busy, retry in 250 ms");
    assert_eq!(errors[1].downcast::<String>(), None);

    let text = pool.apply(fail_with_text, 7).await.unwrap_err();
    assert_eq!(text.downcast::<String>().as_deref(), Some("7 is not welcome"));
    let opaque = pool.apply(fail_opaquely, 7).await.unwrap_err();
    assert!(opaque.is_failed() && opaque.downcast::<String>().is_none(), "{opaque:?}");
    let panicked = pool.apply(panics, 7).await.unwrap_err();
    assert!(panicked.is_panic() && panicked.downcast::<String>().is_none(), "{panicked:?}");
    pool.close().await.unwrap();
}
