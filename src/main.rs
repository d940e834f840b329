//! Entry point: parse the command line, install tracing, run. No logic.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the decision path allocates many small short-lived strings (headers, claims), where
/// it is faster than glibc's malloc and keeps the resident set tighter (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cognito_authz::cmd::cli::{Cli, Command, LogFormat, LogLevel};
use cognito_authz::config::{ConfigError, Settings};
use cognito_authz::telemetry::traces::{self, ExportSettings, Traces};

/// Exit statuses: 0 done, 1 a runtime failure, 2 bad command-line usage (clap), 78 a bad setting
/// (EX_CONFIG, sysexits.h). `check` answers 1 for a denial and 69 (EX_UNAVAILABLE) when it could
/// get no answer.
const EX_CONFIG: u8 = 78;
const EX_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` reads its settings (file included) before logging starts, so the file's log-format
    // and log-level apply; a flag or environment variable still wins over them.
    let settings = match &cli.command {
        Command::Serve(args) => Some(args.settings()),
        _ => None,
    };
    let (format, level) = match &settings {
        Some(Ok(s)) => (s.log_format, s.log_level),
        _ => (Settings::default().log_format, Settings::default().log_level),
    };
    let checking = matches!(cli.command, Command::Check(_));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("starting the tokio runtime");
    // `serve` exports spans when an OTLP endpoint is set (the exporter needs the runtime).
    let traces = match &settings {
        // The settings hold what a flag, the environment or the file gave for the variables they
        // mirror; the other `OTEL_*` variables come from the environment.
        Some(Ok(s)) => match ExportSettings::from_env(|name| {
            let given = match name {
                "OTEL_EXPORTER_OTLP_ENDPOINT" => &s.otlp_endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL" => &s.otlp_protocol,
                "OTEL_SERVICE_NAME" => &s.otel_service_name,
                "OTEL_TRACES_SAMPLER" => &s.otel_traces_sampler,
                "OTEL_TRACES_SAMPLER_ARG" => &s.otel_traces_sampler_arg,
                _ => return std::env::var(name).ok(),
            };
            given.clone()
        }) {
            Ok(None) => None,
            Ok(Some(export)) => {
                let _inside = runtime.enter();
                match Traces::start(export) {
                    Ok(traces) => Some(traces),
                    Err(error) => {
                        eprintln!("cognito-authz: {error}");
                        return ExitCode::from(EX_CONFIG);
                    }
                }
            }
            Err(error) => {
                eprintln!("cognito-authz: {error}");
                return ExitCode::from(EX_CONFIG);
            }
        },
        _ => None,
    };
    install_tracing(cli.log_format.unwrap_or(format), cli.log_level.unwrap_or(level), traces.as_ref());
    let result = runtime.block_on(async {
        match (cli.command, settings) {
            (_, Some(settings)) => match settings {
                Ok(settings) => cognito_authz::cmd::serve(settings).await,
                Err(error) => Err(error.into()),
            },
            (Command::Dev(args), None) => cognito_authz::cmd::dev(args).await,
            (Command::Check(args), None) => cognito_authz::cmd::check(args).await,
            (Command::Revoke(args), None) => cognito_authz::cmd::revoke(args).await,
            (Command::Serve(_), None) => unreachable!("serve's settings are read above"),
        }
    });
    if let Some(traces) = &traces {
        // Within a bound: a dead collector must not hold the exit.
        runtime.block_on(traces.flush(std::time::Duration::from_secs(5)));
    }
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cognito-authz: {error:#}");
            if error.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(EX_CONFIG)
            } else if checking {
                ExitCode::from(EX_UNAVAILABLE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn install_tracing(format: LogFormat, level: LogLevel, traces: Option<&Traces>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => tracing_subscriber::EnvFilter::new(directives),
        _ => tracing_subscriber::EnvFilter::new(level.directive()),
    };
    // Colours only for a person at a terminal: in a file or a log pipeline they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let Some(traces) = traces else {
        // Tracing off: the subscriber the service always had, with one global filter whose
        // disabled call sites cost nothing (per-layer filters measured +14 µs a decision).
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
        match format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => builder.init(),
        }
        return;
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    // The exported spans are the trace's, not the log's: log lines read as they do without them.
    // `Targets` filters decide per call site once, as the global filter does.
    let not_spans = Targets::new().with_default(LevelFilter::TRACE).with_target(traces::TARGET, LevelFilter::OFF);
    let logs = fmt.with_filter(filter.and(not_spans));
    let spans = traces.layer().with_filter(Targets::new().with_target(traces::TARGET, LevelFilter::TRACE));
    tracing_subscriber::registry().with(logs).with(spans).init();
}
