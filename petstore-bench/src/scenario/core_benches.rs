//! The criterion benches of `petstore-core` (event append, fan-out to N subscribers,
//! JSON encoding of the envelope), each beside its bare baseline in the same bench
//! run; reported here as throughput ratios (bare time / core time).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, ensure};

use super::Config;
use crate::report::{Row, Target};

const SCENARIO: &str = "core";

/// The workspace root (this crate's parent directory).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .to_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Median time of one criterion benchmark, in nanoseconds.
fn median_ns(home: &Path, id: &str) -> anyhow::Result<f64> {
    let path = home.join(id).join("new").join("estimates.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    json["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no median in {}", path.display()))
}

/// A row: metric, bare benchmark id, core benchmark id.
type Pair = (String, String, String);

pub(crate) async fn run(cfg: &Config, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let home = target_dir().join("criterion-petstore-bench");
    let groups: [(&str, Vec<Pair>); 3] = [
        (
            "append",
            vec![(
                "event append: service create_pet vs Vec push + broadcast".to_owned(),
                "append/bare_vec_push_and_broadcast".to_owned(),
                "append/service_create_pet".to_owned(),
            )],
        ),
        (
            "fan_out",
            [10, 100, 1000]
                .map(|n| {
                    (
                        format!(
                            "fan-out of one event to {n} subscribers: event log vs tokio broadcast"
                        ),
                        format!("fan_out/bare_broadcast/{n}"),
                        format!("fan_out/event_log/{n}"),
                    )
                })
                .to_vec(),
        ),
        (
            "encode_envelope",
            vec![(
                "envelope JSON, serialised once per event: Event vs plain struct".to_owned(),
                "encode_envelope/bare_plain_struct".to_owned(),
                "encode_envelope/event_to_json".to_owned(),
            )],
        ),
    ];
    let mut failed = Vec::new();
    // One cargo bench per group, so that one failing group still leaves the others.
    for (group, pairs) in groups {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = tokio::process::Command::new(cargo);
        cmd.current_dir(workspace())
            .args([
                "bench",
                "-p",
                "petstore-core",
                "--bench",
                "core",
                "--",
                "--noplot",
            ])
            .env("CRITERION_HOME", &home)
            .stdin(Stdio::null())
            // Criterion's own report goes to stderr with the rest of the progress.
            .stdout(Stdio::from(std::io::stderr()))
            .stderr(Stdio::inherit());
        if cfg.quick {
            cmd.args(["--warm-up-time", "0.5", "--measurement-time", "1"]);
        }
        cmd.arg(format!("^{group}/"));
        eprintln!("  core: cargo bench -p petstore-core --bench core -- ^{group}/");
        let status = cmd.status().await.context("running cargo bench")?;
        if !status.success() {
            failed.push(format!(
                "`cargo bench -p petstore-core --bench core -- ^{group}/` failed ({status}; its output is above)"
            ));
            continue;
        }
        for (metric, bare, full) in pairs {
            let a = median_ns(&home, &bare)?;
            let b = median_ns(&home, &full)?;
            rows.push(Row::new(
                SCENARIO,
                &metric,
                time(a),
                time(b),
                a / b,
                "x",
                Target::Info,
            ));
        }
    }
    ensure!(failed.is_empty(), "{}", failed.join("; "));
    Ok(())
}

fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}
