//! The command line: `serve` a config file, `check` its integrations, `config check` it, or run
//! the `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use s3_signing_proxy::Config;
use s3_signing_proxy::observe::logging::LogFormat;

/// Freed memory goes back to the system after a burst (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    version,
    about = "One origin for many users and many S3 buckets, safely."
)]
struct Cli {
    /// Log lines as human text, JSON or logfmt (RUST_LOG filters them).
    #[arg(
        long,
        global = true,
        env = "S3SP_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the integrations of a config file (reloaded on SIGHUP or when it changes).
    Serve {
        #[arg(long, short, env = "S3SP_CONFIG")]
        config: PathBuf,
        /// Overrides `[server] listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Overrides `[server] admin_listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Probe every integration: credentials, HeadBucket, a one-key listing (and with --write a
    /// probe object put and deleted); exit status 1 if anything fails.
    Check {
        #[arg(long, short, env = "S3SP_CONFIG")]
        config: PathBuf,
        /// Only this integration.
        #[arg(long)]
        integration: Option<String>,
        /// Also put and delete a small object under the prefix of read-write integrations.
        #[arg(long)]
        write: bool,
        /// The report as JSON, each failed step with a stable `hint` code.
        #[arg(long)]
        json: bool,
    },
    /// Explain how the proxy would handle one request: its route, caller, integration,
    /// authorisation, credentials and the upstream request, step by step. Shows no secret.
    Explain(ExplainArgs),
    /// Sign a policy that lets a browser read every key under a prefix, as cookies or query
    /// parameters; prints the three values and the `_session` URL that sets them.
    SignPolicy(SignPolicyArgs),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Validate a config file without starting (same as `config check`).
    #[command(hide = true)]
    CheckConfig { config: PathBuf },
    /// Run the proxy in front of an embedded S3-compatible store seeded with sample media.
    #[cfg(feature = "demo")]
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A browser origin allowed to fetch the private media cross-origin (repeatable).
        #[arg(long = "cors-origin")]
        cors_origins: Vec<String>,
    },
}

/// `explain`'s arguments.
#[derive(clap::Args)]
struct ExplainArgs {
    #[arg(long, short, env = "S3SP_CONFIG")]
    config: PathBuf,
    /// Sign the request as this issued client (its secret comes from the config).
    #[arg(long)]
    client: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Skip STS and the store: describe credentials instead of fetching them.
    #[arg(long)]
    offline: bool,
    /// Also send the request through the proxy and show the answer.
    #[arg(long)]
    send: bool,
    /// The answer as JSON.
    #[arg(long)]
    json: bool,
    /// A file with the client's canonical request (from its SDK's debug log): on
    /// SignatureDoesNotMatch, the first line where the proxy's differs is shown.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// The method, `GET`, `PUT`, …
    method: String,
    /// The URL as the client sends it: `http://proxy/acme/key`, or a path (`/acme/key`)
    /// for the config's listen address.
    url: String,
}

/// `sign-policy`'s arguments.
#[derive(clap::Args)]
struct SignPolicyArgs {
    #[arg(long, short, env = "S3SP_CONFIG")]
    config: PathBuf,
    /// The issued client key that signs (its secret comes from the config).
    #[arg(long)]
    client: String,
    /// `/{name}/{prefix}*`, or `/{name}/{key}` for one object.
    #[arg(long)]
    resource: String,
    /// How long the policy is valid: `90s`, `30m`, `12h` (at most 7 days).
    #[arg(long, default_value = "1h")]
    expires_in: String,
    /// Only clients in this address range (`192.0.2.0/24`).
    #[arg(long)]
    ip: Option<String>,
    /// Where the browser goes once the cookies are set (a path on the proxy's origin).
    #[arg(long)]
    next: Option<String>,
    /// The proxy's origin as browsers reach it; by default the config's listen address.
    #[arg(long)]
    origin: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file (with S3SP_ overrides) without starting; exit 1 if invalid.
    Check { config: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = s3_signing_proxy::observe::logging::init(cli.log_format);
    let result = run(cli.command);
    // Buffered log lines are written before anything else is.
    drop(log);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => {
            let flags = s3_signing_proxy::ops::run::Flags {
                listen,
                admin_listen,
            };
            s3_signing_proxy::ops::run::serve(config, flags, shutdown_signal()).await?;
        }
        Command::Check {
            config,
            integration,
            write,
            json,
        } => {
            let config = Config::load(&config)?;
            let rows = s3_signing_proxy::tools::check::run(config, integration.as_deref(), write)
                .await
                .map_err(anyhow::Error::msg)?;
            let render = if json {
                s3_signing_proxy::tools::check::render_json
            } else {
                s3_signing_proxy::tools::check::render
            };
            print!("{}", render(&rows));
            if rows.iter().any(|row| row.ok == Some(false)) {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Explain(args) => explain(args).await?,
        Command::SignPolicy(args) => sign_policy(args)?,
        Command::Config(ConfigCommand::Check { config: path })
        | Command::CheckConfig { config: path } => {
            let config = Config::load(&path)?;
            println!(
                "{}: valid, {} integration(s), {} client(s)",
                path.display(),
                config.integrations.len(),
                config.clients.len()
            );
        }
        #[cfg(feature = "demo")]
        Command::Demo {
            listen,
            cors_origins,
        } => {
            s3_signing_proxy::lab::demo::run(listen, &cors_origins, shutdown_signal())
                .await
                .map_err(|error| anyhow::anyhow!(error))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `explain`: one request, step by step.
async fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let ExplainArgs {
        config,
        client,
        headers,
        offline,
        send,
        json,
        compare,
        method,
        url,
    } = args;
    let config = Config::load(&config)?;
    let request =
        s3_signing_proxy::tools::explain::request(&method, &url, &headers, config.server.listen)
            .map_err(anyhow::Error::msg)?;
    let compare = compare.map(std::fs::read_to_string).transpose()?;
    let options = s3_signing_proxy::tools::explain::Options {
        client,
        offline,
        send,
        compare,
    };
    let proxy = s3_signing_proxy::Proxy::new(config)?;
    let explanation = s3_signing_proxy::tools::explain::explain(&proxy, request, &options)
        .await
        .map_err(anyhow::Error::msg)?;
    let render = if json {
        s3_signing_proxy::tools::explain::render_json
    } else {
        s3_signing_proxy::tools::explain::render
    };
    print!("{}", render(&explanation));
    Ok(())
}

/// `sign-policy`: a signed policy, and the `_session` URL that sets it as cookies.
fn sign_policy(args: SignPolicyArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let client = config
        .clients
        .iter()
        .find(|client| client.access_key_id == args.client)
        .ok_or_else(|| anyhow::anyhow!("no client {} in the config", args.client))?;
    let lifetime = s3_signing_proxy::config::parse_duration(&args.expires_in).ok_or_else(|| {
        anyhow::anyhow!("--expires-in {}: write 90s, 30m or 12h", args.expires_in)
    })?;
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .saturating_add(lifetime)
        .as_secs();
    let mut document = serde_json::json!({ "resource": args.resource, "expires": expires });
    if let Some(ip) = &args.ip {
        document["ip"] = serde_json::Value::from(ip.as_str());
    }
    let (text, signature) = s3_signing_proxy::auth::policy::sign(
        client.secret_access_key.expose(),
        &document.to_string(),
    )?;
    let policy = s3_signing_proxy::auth::policy::parse(&text)?;
    policy.check_time(std::time::SystemTime::now())?;
    let origin = args
        .origin
        .unwrap_or_else(|| format!("http://{}", config.server.listen));
    let encode = |text: &str| {
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut url = format!(
        "{}/{}/_session?S3SP-Policy={text}&S3SP-Signature={signature}&S3SP-Key-Id={}",
        origin.trim_end_matches('/'),
        policy.name,
        encode(&client.access_key_id)
    );
    if let Some(next) = &args.next {
        url.push_str(&format!("&next={}", encode(next)));
    }
    println!("S3SP-Policy={text}");
    println!("S3SP-Signature={signature}");
    println!("S3SP-Key-Id={}", client.access_key_id);
    println!("session: {url}");
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
}
