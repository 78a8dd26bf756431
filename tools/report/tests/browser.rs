//! The report as a person sees it: the fixture run's page opened from a file:// URL in
//! headless Chromium (Debian's `chromium`, which `make setup` installs). No console error
//! (script errors and content-security-policy violations both log one), every figure laid
//! out with a non-zero size (the page's own check script records each figure's rendered box
//! in the DOM), and a screenshot written to `target/tmp/report-screenshot.png`.
//!
//! Without Chromium the test prints a SKIPPED line and passes, except under CI (`CI` set),
//! where a missing browser fails it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Runs the browser with the flags a sandboxed, offline, headless run needs; kills it after
/// `limit` (a hung browser must fail the test, not hang CI). Returns (stdout, stderr).
fn run_browser(bin: &Path, profile: &Path, args: &[String], limit: Duration) -> (String, String) {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let out_pipe = child.stdout.take().unwrap();
    let err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(out_pipe).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(err_pipe).unwrap_or_default());
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (out.join().unwrap(), err.join().unwrap())
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&amp;", "&")
}

#[test]
fn the_report_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium not found under CI: `make setup` installs Debian's chromium");
        }
        eprintln!("SKIPPED: report browser test: chromium not found (make setup installs it)");
        return;
    };
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/report/run");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let status = Command::new(env!("CARGO_BIN_EXE_report"))
        .args(["--layer", "4", "--no-png", "--run"])
        .arg(&fixture)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let url = format!("file://{}", out.join("index.html").display());
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let figures = html.matches("<figure class=\"figure\"").count();
    assert!(figures > 0);

    let limit = Duration::from_secs(120);
    let (dom, log) = run_browser(
        &bin,
        &dir.path().join("profile-dom"),
        &["--dump-dom".into(), url.clone()],
        limit,
    );
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    let check = dom
        .split("data-check=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(unescape)
        .unwrap_or_else(|| panic!("the page's check script did not run; DOM:\n{dom:.2000}"));
    let v: serde_json::Value = serde_json::from_str(&check).unwrap();
    assert_eq!(v["figures"], figures, "{check}");
    assert_eq!(
        v["bad"],
        serde_json::json!([]),
        "figures without a size: {check}"
    );
    assert_eq!(v["errors"], serde_json::json!([]), "script errors: {check}");
    for size in dom.split("data-rendered=\"").skip(1) {
        let wh = size.split('"').next().unwrap();
        let (w, h) = wh.split_once('x').unwrap();
        assert!(
            w.parse::<u32>().unwrap() > 100 && h.parse::<u32>().unwrap() > 50,
            "{wh}"
        );
    }

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    run_browser(
        &bin,
        &dir.path().join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400".into(),
            url,
        ],
        limit,
    );
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 20_000,
        "screenshot of {} bytes: blank page?",
        png.len()
    );
    eprintln!(
        "report browser test: {figures} figures rendered; screenshot {}",
        shot.display()
    );
}
