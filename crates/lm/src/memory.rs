//! Whether a model fits: the memory a load needs against what the machine has, checked before
//! anything large is touched, so a model too big for the machine is one clear line, never the
//! kernel's OOM killer.

use crate::error::{LmError, Result};
use std::path::Path;

/// Bytes this process can use: `HD_MEMORY_LIMIT` when set (bytes; for tests, or to cap a
/// run), else the smaller of the kernel's `MemAvailable` and the cgroup's free allowance.
pub fn available() -> Option<u64> {
    if let Some(v) = std::env::var_os("HD_MEMORY_LIMIT") {
        return v.to_str().and_then(|s| s.trim().parse().ok());
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let avail = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)?;
    let cg = |f: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{f}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let cgroup_free = match (cg("memory.max"), cg("memory.current")) {
        (Some(max), Some(cur)) => Some(max.saturating_sub(cur)),
        _ => None,
    };
    Some(cgroup_free.map_or(avail, |c| c.min(avail)))
}

/// One line when `need` bytes exceed what [`available`] says; fine when it cannot tell.
pub fn check_fits(path: &Path, need: u64, what: &str) -> Result<()> {
    match available() {
        Some(have) if need > have => Err(LmError::format(
            path,
            format!(
                "{what} need {} of memory, this machine has {} available (set HD_MEMORY_LIMIT \
                 to override the check)",
                gib(need),
                gib(have)
            ),
        )),
        _ => Ok(()),
    }
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}
