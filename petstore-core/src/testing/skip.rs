//! The one way a test skips: it says why, unless the environment requires every test
//! to run (CI does, since it installs everything the tests need), in which case the
//! skip is a failure and a broken install step cannot pass unnoticed.

/// The environment variable that turns every skip into a failure (`.ci/run` sets it).
pub const REQUIRE_ALL: &str = "PETSTORE_REQUIRE_ALL";

/// Whether [`REQUIRE_ALL`] is set (to anything but empty or `0`).
pub fn every_test_required() -> bool {
    std::env::var(REQUIRE_ALL).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Reports that the calling test cannot run because `why` (a broker, a database, a
/// command-line tool is missing), then returns so that the test can return too. With
/// [`REQUIRE_ALL`] set it panics instead: the test fails, naming what is missing.
///
/// ```ignore
/// let Ok(url) = std::env::var("PETSTORE_TEST_DATABASE_URL") else {
///     petstore_core::testing::skip("PETSTORE_TEST_DATABASE_URL is not set");
///     return;
/// };
/// ```
#[track_caller]
pub fn skip(why: impl std::fmt::Display) {
    if every_test_required() {
        panic!("{REQUIRE_ALL} is set, and this test would skip: {why}");
    }
    eprintln!("skipping: {why} (set {REQUIRE_ALL}=1 to make this a failure)");
}
