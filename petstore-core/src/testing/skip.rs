//! The one way a test skips: it says why, unless the environment requires every test
//! to run (CI does, since it installs everything the tests need), in which case the
//! skip is a failure and a broken install step cannot pass unnoticed.
//!
//! Every test crate skips through [`skip`] or the helpers built on it
//! ([`env_or_skip`], [`database_url`], [`program_or_skip`]); none prints its own
//! "skipping" line.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The environment variable that turns every skip into a failure (`.ci/run` sets it).
pub const REQUIRE_ALL: &str = "PETSTORE_REQUIRE_ALL";

/// The environment variable naming the PostgreSQL cluster the PostgreSQL tests use
/// (CI starts one and sets it).
pub const DATABASE_URL: &str = "PETSTORE_TEST_DATABASE_URL";

/// Whether [`REQUIRE_ALL`] is set (to anything but empty or `0`).
pub fn every_test_required() -> bool {
    required(std::env::var(REQUIRE_ALL).ok().as_deref())
}

fn required(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reports that the calling test cannot run because `why` (a broker, a database, a
/// command-line tool is missing), then returns so that the test can return too. With
/// [`REQUIRE_ALL`] set it panics instead: the test fails, naming what is missing.
///
/// ```ignore
/// let Some(url) = petstore_core::testing::database_url() else {
///     return; // skipped, and said so
/// };
/// ```
#[track_caller]
pub fn skip(why: impl std::fmt::Display) {
    if let Err(failure) = decide(every_test_required(), &why) {
        panic!("{failure}");
    }
    eprintln!("skipping: {why} (set {REQUIRE_ALL}=1 to make this a failure)");
}

/// `Err(message)` when a skip must fail.
fn decide(required: bool, why: &dyn std::fmt::Display) -> Result<(), String> {
    if required {
        Err(format!(
            "{REQUIRE_ALL} is set, and this test would skip: {why}"
        ))
    } else {
        Ok(())
    }
}

/// The value of the environment variable `var`, or `None` after [`skip`] when it is
/// unset or empty; `hint` says how to provide it.
#[track_caller]
pub fn env_or_skip(var: &str, hint: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            skip(format_args!("{var} is not set ({hint})"));
            None
        }
    }
}

/// The PostgreSQL cluster of the PostgreSQL tests ([`DATABASE_URL`]), or `None` after
/// [`skip`].
#[track_caller]
pub fn database_url() -> Option<String> {
    env_or_skip(
        DATABASE_URL,
        "CI sets it; locally: eval \"$(scripts/start-postgres)\"",
    )
}

/// Where the command-line program `program` is (a path, or a name looked up on the
/// `PATH`), or `None` after [`skip`] when it is not installed; `hint` says how to
/// install it. A program that is installed but then fails is the test's failure, not
/// a skip: check its exit status.
#[track_caller]
pub fn program_or_skip(program: impl AsRef<OsStr>, hint: &str) -> Option<PathBuf> {
    let program = program.as_ref();
    let found = find_program(program, std::env::var_os("PATH").as_deref());
    if found.is_none() {
        skip(format_args!(
            "{} is not installed ({hint})",
            Path::new(program).display()
        ));
    }
    found
}

fn find_program(program: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    let as_path = Path::new(program);
    if as_path.components().count() > 1 {
        return as_path.is_file().then(|| as_path.to_owned());
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_is_on_for_any_value_but_empty_and_zero() {
        assert!(!required(None));
        assert!(!required(Some("")));
        assert!(!required(Some("0")));
        assert!(required(Some("1")));
        assert!(required(Some("yes")));
    }

    #[test]
    fn a_required_skip_is_a_failure_naming_what_is_missing() {
        assert_eq!(decide(false, &"no broker"), Ok(()));
        assert_eq!(
            decide(true, &"no broker"),
            Err("PETSTORE_REQUIRE_ALL is set, and this test would skip: no broker".to_owned())
        );
    }

    #[test]
    fn programs_are_found_on_the_path_or_by_their_own_path() {
        let dir = std::env::temp_dir().join(format!("petstore-skip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tool = dir.join("some-tool");
        std::fs::write(&tool, "").unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), &dir]).unwrap();
        assert_eq!(
            find_program(OsStr::new("some-tool"), Some(&path)),
            Some(tool.clone())
        );
        assert_eq!(find_program(OsStr::new("other-tool"), Some(&path)), None);
        assert_eq!(find_program(OsStr::new("some-tool"), None), None);
        assert_eq!(find_program(tool.as_os_str(), None), Some(tool.clone()));
        assert_eq!(find_program(dir.join("gone").as_os_str(), None), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
