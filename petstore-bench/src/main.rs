//! Load benchmarks of the Pet Store adapters, each figure a ratio against a bare
//! baseline measured in the same run (alternating A/B rounds, median of per-round
//! ratios). See BENCHMARKS.md at the workspace root.
//!
//! Run with: CARGO_TARGET_DIR=/var/tmp/petstore-target cargo run --release -p petstore-bench
//! (`-- --quick` for a one-minute smoke run, `-- --scenario rest-get,grpc-get` for some rows).

mod bare;
mod bare_sql;
mod load;
mod measure;
mod pg;
mod report;
mod scenario;
mod server_process;
mod stack;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

use report::Row;
use scenario::Config;
use scenario::fanout::{Proto, Side};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "petstore-bench",
    about = "Pet Store load benchmarks: every figure a ratio against a bare baseline measured in the same run"
)]
struct Cli {
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// A short smoke run (about a minute of measuring; figures are indicative only).
    #[arg(long)]
    quick: bool,
    /// A/B rounds per row (default 5; 3 with --quick).
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per measurement (default 3; 0.5 with --quick).
    #[arg(long)]
    round_secs: Option<f64>,
    /// Also write the report (Markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Exit with an error when a row misses its target or is not run (a failed
    /// scenario always does).
    #[arg(long)]
    strict: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: the server process of the idle-memory rows.
    #[command(hide = true)]
    HoldServer {
        #[arg(long, value_enum)]
        proto: Proto,
        #[arg(long, value_enum)]
        side: Side,
    },
}

/// The scenarios, in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    GrpcGet,
    RestGet,
    RestPost,
    RestPostSqlite,
    RestPostPostgres,
    GraphqlGet,
    SseFanout,
    SseIdle,
    WsFanout,
    WsIdle,
    Mqtt,
    Webhooks,
    Core,
    Observability,
    CrossInstance,
    Restart,
}

impl Scenario {
    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The servers' own logs, on demand (e.g. `RUST_LOG=petstore_mqtt=info`).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if let Some(Command::HoldServer { proto, side }) = cli.command {
        return match scenario::fanout::hold_server(proto, side) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hold-server: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("petstore-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let cfg = Config {
        quick: cli.quick,
        rounds: cli.rounds.unwrap_or(if cli.quick { 3 } else { 5 }).max(1),
        round: Duration::from_secs_f64(cli.round_secs.unwrap_or(if cli.quick { 0.5 } else { 3.0 })),
        warmup: Duration::from_secs_f64(if cli.quick { 0.3 } else { 1.0 }),
        fanout: if cli.quick {
            vec![200]
        } else {
            vec![1000, 5000]
        },
        idle: if cli.quick { 500 } else { 5000 },
        soak: Duration::from_secs(if cli.quick { 3 } else { 60 }),
        exe: std::env::current_exe()?,
    };
    let scenarios = if cli.scenario.is_empty() {
        Scenario::value_variants().to_vec()
    } else {
        cli.scenario.clone()
    };
    if scenarios.contains(&Scenario::Observability) {
        // Before any server starts: a process has one recorder and one subscriber.
        scenario::observability::install()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let load_start = measure::loadavg();
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut errors = 0;
    for s in &scenarios {
        let name = s.name();
        eprintln!("== {name} (load average {})", measure::loadavg());
        let t = Instant::now();
        let result = rt.block_on(async {
            match s {
                Scenario::GrpcGet => scenario::grpc::run(&cfg, &mut rows).await,
                Scenario::RestGet => scenario::rest::run_get(&cfg, &mut rows).await,
                Scenario::RestPost => scenario::rest::run_post(&cfg, &mut rows).await,
                Scenario::RestPostSqlite => scenario::rest::run_post_sqlite(&cfg, &mut rows).await,
                Scenario::RestPostPostgres => {
                    scenario::rest::run_post_postgres(&cfg, &mut rows).await
                }
                Scenario::GraphqlGet => scenario::rest::run_graphql(&cfg, &mut rows).await,
                Scenario::SseFanout => scenario::fanout::run(&cfg, Proto::Sse, &mut rows).await,
                Scenario::SseIdle => {
                    scenario::fanout::idle_memory(&cfg, Proto::Sse, &mut rows).await
                }
                Scenario::WsFanout => scenario::fanout::run(&cfg, Proto::Ws, &mut rows).await,
                Scenario::WsIdle => scenario::fanout::idle_memory(&cfg, Proto::Ws, &mut rows).await,
                Scenario::Mqtt => scenario::mqtt::run(&cfg, &mut rows).await,
                Scenario::Webhooks => scenario::webhooks::run(&cfg, &mut rows).await,
                Scenario::Core => scenario::core_benches::run(&cfg, &mut rows).await,
                Scenario::Observability => scenario::observability::run(&cfg, &mut rows).await,
                Scenario::CrossInstance => scenario::cluster::run(&cfg, &mut rows).await,
                Scenario::Restart => scenario::restart::run(&cfg, &mut rows).await,
            }
        });
        if let Err(e) = result {
            eprintln!("   {name} FAILED: {e:#}");
            rows.push(Row::error(&name, &e));
            errors += 1;
        }
        eprintln!("   {name}: {:.0} s", t.elapsed().as_secs_f64());
    }
    let load_end = measure::loadavg();

    let mut text = String::new();
    text.push_str(&format!(
        "petstore-bench{}: {} rounds x {:.1} s per row, {} cores, load average {} at start, {} at end, {:.0} s in all\n\n",
        if cfg.quick { " --quick" } else { "" },
        cfg.rounds,
        cfg.round.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_start,
        load_end,
        started.elapsed().as_secs_f64()
    ));
    text.push_str(&report::table(&rows));
    let missed = rows.iter().filter(|r| r.failed()).count();
    let not_run = rows.iter().filter(|r| r.not_run).count();
    text.push_str(&format!(
        "\n{} rows, {} missed their target or failed, {not_run} not run, {errors} scenarios failed\n",
        rows.len(),
        missed
    ));
    print!("{text}");
    if let Some(path) = &cli.out {
        std::fs::write(path, &text)?;
    }
    // Servers, brokers and subscribers may still hold tasks: do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(if errors > 0 || (cli.strict && missed + not_run > 0) {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}
