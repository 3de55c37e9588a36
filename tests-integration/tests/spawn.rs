//! A worker's sockets reach the worker and nothing else: a program that another thread of the
//! parent starts while the pool spawns its workers inherits none of them. (Such a program would
//! hold the worker's channel open after the worker died, so its death would go unseen.)
#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use polyloop::Pool;

#[polyloop::task]
async fn whoami(_i: u64) -> u32 {
    std::process::id()
}

/// How many of the descriptors of process `pid` are sockets.
fn sockets_of(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[tokio::test]
async fn programs_started_beside_a_spawning_pool_inherit_no_socket() -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    // Another thread of the program starts short-lived programs as fast as it can, and looks at
    // what each one inherited (its stdio is /dev/null, so any socket came from the pool).
    let spawner = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || -> std::io::Result<(usize, usize)> {
            let (mut started, mut leaked) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let mut child = Command::new("sleep")
                    .arg("30")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                started += 1;
                leaked += sockets_of(child.id());
                child.kill()?;
                child.wait()?;
            }
            Ok((started, leaked))
        }
    });
    let mut pids = Vec::new();
    for round in 0..40u64 {
        let pool = Pool::builder().processes(2).build().await?;
        pids.push(tokio::time::timeout(Duration::from_secs(60), pool.apply(whoami, round)).await??);
        pool.close().await?;
    }
    stop.store(true, Ordering::Relaxed);
    let (started, leaked) = spawner.join().expect("the spawner thread")?;
    assert!(started > 0, "the other thread started programs");
    assert_eq!(leaked, 0, "{leaked} worker sockets leaked into {started} unrelated programs");
    assert!(pids.iter().all(|&pid| pid != std::process::id()), "the tasks ran in workers");
    Ok(())
}
