//! `--config petstore.toml`: every flag of the command line, read from a TOML file.
//!
//! Precedence: a flag beats its `PETSTORE_*` variable, which beats the file, which
//! beats the built-in default. The file's values become the flags' defaults, so clap
//! applies that order itself and checks the file's values exactly as it checks flags.
//!
//! ```toml
//! http-addr = "0.0.0.0:8080"
//! seed = false
//! rate-limit = true
//! trusted-proxies = ["10.0.0.0/8", "192.168.1.1"]
//! drain-delay = 5
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{CommandFactory as _, FromArgMatches as _};

use crate::server::Cli;

/// Parses the process's command line, environment and `--config` file.
pub fn parse_cli() -> anyhow::Result<Cli> {
    parse_cli_from(std::env::args_os())
}

/// [`parse_cli`] over `args` (the first is the program name). `--help` and
/// `--version` print and exit, as clap does; bad input is an error.
pub fn parse_cli_from<I, T>(args: I) -> anyhow::Result<Cli>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    if let Some(path) = config_path(&args) {
        for (key, value) in read(&path)? {
            let id = command
                .get_arguments()
                .find(|a| a.get_long() == Some(key.as_str()) && a.get_id() != "config")
                .map(|a| a.get_id().clone())
                .with_context(|| format!("{}: unknown setting `{key}`", path.display()))?;
            // Parsed once per process: the leak is a few bytes for its whole life.
            let value: &'static str = Box::leak(value.into_boxed_str());
            command = command.mut_arg(id, |a| a.default_value(value));
        }
    }
    let matches = match command.try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => return Err(anyhow::anyhow!(e.render().to_string())),
    };
    Ok(Cli::from_arg_matches(&matches)?)
}

/// `--config PATH`, `--config=PATH` or `PETSTORE_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("PETSTORE_CONFIG").map(PathBuf::from)
}

/// The file's settings as flag values: keys are long flag names (`_` is read as
/// `-`), values strings, numbers, booleans or arrays (joined with commas).
fn read(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("{} is not a valid settings file", path.display()))
}

fn parse(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let table: toml::Table = text.parse()?;
    let mut settings = Vec::new();
    for (key, value) in table {
        let value = match value {
            toml::Value::Array(items) => items
                .into_iter()
                .map(scalar)
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("`{key}`"))?
                .join(","),
            other => scalar(other).with_context(|| format!("`{key}`"))?,
        };
        settings.push((key.replace('_', "-"), value));
    }
    Ok(settings)
}

fn scalar(value: toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!("a {} is not a setting value", other.type_str()),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn file(text: &str) -> tempfile_path::TempFile {
        tempfile_path::TempFile::new(text)
    }

    /// A file under the system temp dir, removed on drop.
    mod tempfile_path {
        pub(super) struct TempFile(pub(super) std::path::PathBuf);

        impl TempFile {
            pub(super) fn new(text: &str) -> Self {
                let path = std::env::temp_dir().join(format!(
                    "petstore-config-{}-{}.toml",
                    std::process::id(),
                    uuid_like()
                ));
                std::fs::write(&path, text).unwrap();
                Self(path)
            }
        }

        fn uuid_like() -> u64 {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            N.fetch_add(1, Ordering::Relaxed)
        }

        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn parse_with(path: &Path, extra: &[&str]) -> anyhow::Result<Cli> {
        let mut args = vec![
            "petstore-server".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        parse_cli_from(args)
    }

    #[test]
    fn the_file_sets_every_kind_of_flag_and_flags_override_it() {
        let f = file(
            r#"
http-addr = "127.0.0.1:9999"
grpc_addr = "127.0.0.1:9998"
seed = false
rate-limit = true
no-mqtt = true
trusted-proxies = ["10.0.0.0/8", "192.168.1.1"]
drain-delay = 2.5
log-format = "json"
"#,
        );
        let cli = parse_with(&f.0, &[]).unwrap();
        let args = &cli.args;
        assert_eq!(args.http_addr.to_string(), "127.0.0.1:9999");
        assert_eq!(args.grpc_addr.to_string(), "127.0.0.1:9998");
        assert!(!args.seed);
        assert!(args.rate_limit);
        assert!(args.no_mqtt);
        assert_eq!(args.drain_delay, Duration::from_millis(2500));
        assert_eq!(cli.log_format, crate::telemetry::LogFormat::Json);
        let proxies = format!("{:?}", args.trusted_proxies);
        assert!(
            proxies.contains("10.0.0.0/8") && proxies.contains("192.168.1.1"),
            "{proxies}"
        );

        // A flag beats the file.
        let cli = parse_with(&f.0, &["--http-addr", "127.0.0.1:7777", "--seed=true"]).unwrap();
        assert_eq!(cli.args.http_addr.to_string(), "127.0.0.1:7777");
        assert!(cli.args.seed);
        assert_eq!(cli.args.grpc_addr.to_string(), "127.0.0.1:9998");
    }

    /// Durations are a number of seconds or a duration with units, from the file as
    /// from a flag; zero is refused where a timeout must pass, and so is nonsense.
    #[test]
    fn durations_take_seconds_or_units() {
        let f = file(
            r#"
http-request-timeout = "1m 30s"
http-header-timeout = "500ms"
drain-delay = "5s"
grpc-keepalive-interval = 12
"#,
        );
        let args = parse_with(&f.0, &[]).unwrap().args;
        assert_eq!(args.http_request_timeout, Duration::from_secs(90));
        assert_eq!(args.http_header_timeout, Duration::from_millis(500));
        assert_eq!(args.drain_delay, Duration::from_secs(5));
        assert_eq!(args.grpc_keepalive_interval, Duration::from_secs(12));
        let args = parse_with(
            &f.0,
            &["--grpc-request-timeout", "2.5", "--drain-delay", "0"],
        )
        .unwrap()
        .args;
        assert_eq!(args.grpc_request_timeout, Duration::from_millis(2500));
        assert_eq!(args.drain_delay, Duration::ZERO);
        for (flag, bad) in [
            ("--http-request-timeout", "0"),
            ("--http-request-timeout", "0s"),
            ("--http-request-timeout", "-1"),
            ("--http-request-timeout", "soon"),
            ("--drain-delay", "1e3"),
            ("--drain-delay", "5 parsecs"),
            ("--drain-delay", "18446744073709551615s"),
            ("--drain-delay", "366d"),
        ] {
            // `--flag=value`, so that clap never takes `-1` for a flag of its own.
            let error = parse_with(&f.0, &[&format!("{flag}={bad}")]).err();
            let error = error
                .unwrap_or_else(|| panic!("{flag} {bad} is taken"))
                .to_string();
            assert!(error.contains(bad), "{flag} {bad}: {error}");
        }
    }

    /// The README's table names every flag with its variable.
    #[test]
    fn the_readme_lists_every_flag_and_its_variable() {
        let readme = include_str!("../README.md");
        let command = crate::server::Cli::command();
        let mut listed = 0;
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) {
                continue;
            }
            assert!(
                readme.contains(&format!("`--{long}")),
                "--{long} is not in the README"
            );
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let env = env.unwrap_or_else(|| panic!("--{long} has no environment variable"));
            assert!(
                readme.contains(&format!("`{env}`")),
                "{env} is not in the README"
            );
            listed += 1;
        }
        assert!(listed >= 30, "{listed} flags");
    }

    #[test]
    fn without_a_file_the_defaults_hold() {
        let cli = parse_cli_from(["petstore-server"]).unwrap();
        assert_eq!(cli.args.http_addr.to_string(), "127.0.0.1:8080");
        assert!(cli.args.seed);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let unknown = file("htp-addr = \"127.0.0.1:1\"\n");
        let e = parse_with(&unknown.0, &[]).unwrap_err().to_string();
        assert!(e.contains("unknown setting `htp-addr`"), "{e}");

        let bad_value = file("http-addr = \"nowhere\"\n");
        let e = format!("{:#}", parse_with(&bad_value.0, &[]).unwrap_err());
        assert!(e.contains("nowhere"), "{e}");

        let not_toml = file("http-addr = \n");
        let e = format!("{:#}", parse_with(&not_toml.0, &[]).unwrap_err());
        assert!(e.contains("not a valid settings file"), "{e}");

        let table = file("[http]\naddr = 1\n");
        let e = format!("{:#}", parse_with(&table.0, &[]).unwrap_err());
        assert!(e.contains("not a setting value"), "{e}");

        let missing = parse_cli_from(["petstore-server", "--config", "/nonexistent/petstore.toml"]);
        assert!(format!("{:#}", missing.unwrap_err()).contains("reading"));
    }
}
