//! A missing fixture skips locally and fails under CI. One test in
//! this binary, since it sets the process's `CI` variable.

use hd_testkit::present_or_skip;
use std::path::Path;

#[test]
fn missing_fixture_skips_locally_and_fails_under_ci() {
    let missing = Path::new("/nonexistent/hidden-dims/model.gguf");
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The only test of this binary: nothing else reads the environment concurrently.
    std::env::remove_var("CI");
    assert_eq!(present_or_skip(missing, "test"), None);
    assert_eq!(present_or_skip(here, "test").as_deref(), Some(here));
    std::env::set_var("CI", "1");
    let r = std::panic::catch_unwind(|| present_or_skip(missing, "test"));
    assert!(r.is_err(), "a missing fixture passed under CI");
}
