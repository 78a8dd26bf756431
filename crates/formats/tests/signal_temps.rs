//! The registry of temporary paths a signal handler removes. Its own test binary: removing
//! every registered temporary would break other tests' writes running at the same time.

use hd_formats::atomic::{register_temp, remove_temps, Outputs};

/// Staged temporaries are registered, so a signal handler can remove them.
#[test]
fn registered_temporaries_are_removed_on_request() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.txt");
    let mut outs = Outputs::new();
    outs.stage(&a, |w| w.write_all(b"a")).unwrap();
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    let folder = d.path().join(".staging");
    std::fs::create_dir_all(folder.join("deep")).unwrap();
    let _g = register_temp(&folder);
    assert!(remove_temps() >= 2);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    std::mem::forget(outs); // its temp file is gone already
}
