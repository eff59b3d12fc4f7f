//! The command line: `serve` a config file, `check-config` one, or run the `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use s3_signing_proxy::Config;

#[derive(Parser)]
#[command(
    version,
    about = "One origin for many users and many S3 buckets, safely."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the integrations of a config file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file without starting (exit status 1 if it is invalid).
    CheckConfig { config: PathBuf },
    /// Run the proxy in front of an embedded S3-compatible store seeded with sample media.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A browser origin allowed to fetch the private media cross-origin (repeatable).
        #[arg(long = "cors-origin")]
        cors_origins: Vec<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            s3_signing_proxy::server::serve(&config, shutdown_signal(), |address| {
                tracing::info!(%address, integrations = config.integrations.len(), "listening");
            })
            .await?;
            tracing::info!("stopped");
        }
        Command::CheckConfig { config: path } => {
            let config = Config::load(&path)?;
            println!(
                "{}: valid, {} integration(s)",
                path.display(),
                config.integrations.len()
            );
        }
        Command::Demo {
            listen,
            cors_origins,
        } => {
            s3_signing_proxy::demo::run(listen, &cors_origins, shutdown_signal())
                .await
                .map_err(|error| anyhow::anyhow!(error))?;
        }
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM, so both stop the proxy gracefully.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
