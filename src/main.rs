//! The `hedgehog` command line: the binary's edge, where errors become messages and exit codes.
//! Each subcommand lives in its own module under `cli/`.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cli::args::{flag_layer, Cli, Command, ConfigCommandArg};
use hedgehog::config;

mod cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Config {
        what: ConfigCommandArg::Init,
    } = &cli.command
    {
        // Writes the file --config names, so it must not read it first.
        let path = cli
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_FILE));
        return match config::init(&path) {
            Ok(()) => {
                println!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Nothing starts half-configured: a bad file, variable or flag stops here.
    let loaded = match config::load(cli.config.as_deref(), flag_layer(&cli)) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The engine is a service: its own info lines (start-up, the minute's status) show by
    // default; one-shot commands say only what went wrong. RUST_LOG overrides both.
    let default_filter = if matches!(cli.command, Command::Run { .. }) {
        "warn,hedgehog=info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            loaded.config.log.level.as_deref().unwrap_or(default_filter),
        )
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal());
    match loaded.config.log.format {
        config::LogFormat::Text => logs.init(),
        config::LogFormat::Json => logs.json().init(),
    }
    match cli::dispatch(cli, loaded).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli::is_broken_pipe(&e) {
                // The reader went away (`| head`): not an error of ours.
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
