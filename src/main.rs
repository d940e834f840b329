//! Entry point: parse the command line, install tracing, run. No logic.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the decision path allocates many small short-lived strings (headers, claims), where
/// it is faster than glibc's malloc and keeps the resident set tighter (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use cognito_authz::cli::{Cli, Command, LogFormat};
use cognito_authz::config::ConfigError;

/// Exit statuses: 0 done, 1 a runtime failure, 2 bad command-line usage (clap), 78 a bad setting
/// (EX_CONFIG, sysexits.h). `check` answers 1 for a denial and 69 (EX_UNAVAILABLE) when it could
/// get no answer.
const EX_CONFIG: u8 = 78;
const EX_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_tracing(cli.log_format, &cli.log_level);
    let checking = matches!(cli.command, Command::Check(_));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("starting the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => cognito_authz::run::serve(*args).await,
            Command::Dev(args) => cognito_authz::run::dev(args).await,
            Command::Check(args) => cognito_authz::run::check(args).await,
            Command::Revoke(args) => cognito_authz::run::revoke(args).await,
        }
    });
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

fn install_tracing(format: LogFormat, level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => tracing_subscriber::EnvFilter::new(directives),
        _ => tracing_subscriber::EnvFilter::new(level),
    };
    // Colours only for a person at a terminal: in a file or a log pipeline they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
