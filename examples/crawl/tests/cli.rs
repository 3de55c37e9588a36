//! The `crawl` binary end to end: the demo the README's first command runs, and its errors.

use std::path::PathBuf;
use std::process::Command;

fn out_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("crawl-cli-{}-{name}.tsv", std::process::id()))
}

#[test]
fn the_demo_crawls_the_embedded_site_and_checks_it() {
    let out = out_file("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_crawl"))
        .args(["--site-pages", "100", "--processes", "2", "--timeout", "3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("with 2 worker processes"), "{stdout}");
    assert!(stdout.contains("check           exactly the"), "{stdout}");
    assert!(stdout.contains("1 timeout, 3 http status, 1 non-utf-8"), "{stdout}");
    // One log line per failed URL, with its kind.
    assert!(stderr.contains("error: non-utf-8: http://127.0.0.1:"), "{stderr}");

    let tsv = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let mut lines = tsv.lines();
    assert_eq!(lines.next(), Some("source_url\tparsed_url"));
    let n_links = lines.inspect(|line| assert_eq!(line.split('\t').count(), 2, "{line}")).count();
    assert!(stdout.contains(&format!("links found     {n_links},")), "{n_links}: {stdout}");
}

#[test]
fn a_missing_url_file_is_a_one_line_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_crawl"))
        .args(["--urls", "/nonexistent/urls.txt", "--out"])
        .arg(out_file("missing"))
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: cannot read urls from /nonexistent/urls.txt: No such file or directory (os error 2)\n"
    );
}
