//! Running the proxy in production: the public listener (plain or TLS), the admin listener,
//! reloads on SIGHUP or when the config or certificate files change, and a graceful stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::tls::ReloadingCert;
use crate::config::tls::TlsFiles;
use crate::config::{Config, ConfigError, SourceConfig};
use crate::ops::source::{Catalog, Shared, directory, lock, on_demand, postgres, publish};
use crate::proxy::Proxy;
use crate::request::lazy::Lazy;

/// How often the config and certificate files are looked at for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Settings given on the command line; they win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--admin-listen`.
    pub admin_listen: Option<SocketAddr>,
}

/// Loads the file (with `S3SP_…` overrides), then applies the flags.
pub fn load(path: &Path, flags: &Flags) -> Result<Config, ConfigError> {
    let mut config = Config::load(path)?;
    if let Some(listen) = flags.listen {
        config.server.listen = listen;
    }
    if let Some(admin) = flags.admin_listen {
        config.server.admin_listen = Some(admin);
    }
    Ok(config)
}

/// Serves `path` until `shutdown` completes.
pub async fn serve(
    path: PathBuf,
    flags: Flags,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = load(&path, &flags)?;
    let listen = config.server.listen;
    let admin_listen = config.server.admin_listen;
    let tls_files = config.server.tls.clone();
    let sources = config.source.clone();
    let catalog: Shared = Arc::new(std::sync::Mutex::new(Catalog::new(config.clone())));
    let proxy = Arc::new(Proxy::new(config)?);
    proxy.open_disk_cache().await?;
    proxy.warm_up(proxy.state().tenants.integrations.all().cloned().collect());
    let integrations = start_sources(&path, &sources, &catalog, &proxy);

    let (cert, acceptor) = match &tls_files {
        None => (None, None),
        Some(files) => {
            let cert = Arc::new(ReloadingCert::new(files).map_err(anyhow::Error::msg)?);
            let server_config = crate::config::tls::server_config(cert.clone())?;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
            (Some(cert), Some(acceptor))
        }
    };
    // Listening for SIGHUP before anyone can connect: a reload signal sent as soon as the port
    // answers would otherwise find no handler and end the process.
    let hangup = hangup_signal();
    let listener = TcpListener::bind(listen).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let admin = match admin_listen {
        None => None,
        Some(address) => {
            let admin_listener = TcpListener::bind(address).await?;
            tracing::info!(address = %admin_listener.local_addr()?, "admin listening");
            Some(tokio::spawn(crate::ops::admin::run(
                admin_listener,
                proxy.clone(),
                catalog.clone(),
                stopped(stop_rx.clone()),
            )))
        }
    };
    let reloader = Reloader {
        path,
        flags,
        proxy: proxy.clone(),
        catalog,
    };
    let watcher = tokio::spawn(watch(
        reloader,
        hangup,
        tls_files,
        cert,
        stopped(stop_rx.clone()),
    ));
    tracing::info!(
        address = %listener.local_addr()?,
        tls = acceptor.is_some(),
        integrations,
        "listening"
    );
    let stop = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    };
    crate::ops::server::run(listener, proxy, acceptor, stop).await?;
    watcher.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Loads the config at `path` and swaps it in; says how many integrations it has.
/// What a reload of the main file needs: the file, the command line's flags, the proxy, and
/// the catalog the file's integrations join the live sources' in.
#[derive(Clone)]
struct Reloader {
    path: PathBuf,
    flags: Flags,
    proxy: Arc<Proxy>,
    catalog: Shared,
}

fn reload(reloader: &Reloader) -> Result<usize, String> {
    let config = load(&reloader.path, &reloader.flags).map_err(|e| e.to_string())?;
    // The whole state is built anew from everything the catalog holds, under its lock so
    // that no source's change is published between the two.
    let mut catalog = lock(&reloader.catalog);
    catalog.set_base(config)?;
    let config = catalog.config();
    let integrations = config.integrations.len();
    reloader.proxy.reload(config).map_err(|e| e.to_string())?;
    Ok(integrations)
}

/// What a watched file looked like, to notice a change.
/// Loads the `[source]` directory (before the proxy listens, so its integrations are served
/// from the first request) and starts watching it; starts the database source, which readiness
/// waits for. Returns how many integrations are in force.
fn start_sources(
    path: &Path,
    sources: &SourceConfig,
    catalog: &Shared,
    proxy: &Arc<Proxy>,
) -> usize {
    if let Some(dir) = &sources.directory {
        let dir = match path.parent() {
            Some(parent) if dir.is_relative() => parent.join(dir),
            _ => dir.clone(),
        };
        let mut seen = directory::Seen::default();
        directory::scan(&dir, catalog, &mut seen, proxy);
        publish(catalog, proxy);
        tokio::spawn(directory::watch(dir, catalog.clone(), seen, proxy.clone()));
    }
    if let Some(url) = &sources.postgres_url {
        proxy.sources.loading.fetch_add(1, Ordering::Relaxed);
        let mode = if sources.preload {
            postgres::Mode::Preload(catalog.clone())
        } else {
            let connection = postgres::Connection::default();
            let fetcher = on_demand::Fetcher {
                connection: connection.clone(),
                stats: proxy.sources.clone(),
            };
            let lazy = Arc::new(Lazy::new(
                sources.cache_entries,
                sources.absent_for,
                Arc::new(fetcher),
            ));
            proxy.fetch_on_demand(lazy.clone());
            postgres::Mode::OnDemand(lazy, connection)
        };
        match postgres::Database::new(url.clone(), sources.postgres_ca_file.as_deref()) {
            Ok(database) => {
                tokio::spawn(postgres::run(
                    database,
                    sources.resync_interval,
                    mode,
                    proxy.clone(),
                ));
            }
            // The CA file was read when the config was; it changed since.
            Err(error) => tracing::error!(%error, "the database source cannot start"),
        }
    }
    lock(catalog).integrations().count()
}

fn fingerprint(path: &Path) -> Option<(std::time::SystemTime, u64, Vec<u8>)> {
    let metadata = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len(), bytes))
}

/// SIGHUP, as the config watcher receives it (`None` where it cannot be received).
#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<std::convert::Infallible>;

/// The SIGHUP stream, registered now: from here on a SIGHUP is queued for the watcher rather
/// than ending the process.
fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    return tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    return None;
}

/// Reloads on SIGHUP, or when the config file or the certificate files change. An invalid
/// config is refused with its reasons logged, and the old one keeps serving.
async fn watch(
    reloader: Reloader,
    mut hangup: Hangup,
    tls_files: Option<TlsFiles>,
    cert: Option<Arc<ReloadingCert>>,
    stopped: impl std::future::Future<Output = ()>,
) {
    let proxy = reloader.proxy.clone();
    let mut config_seen = fingerprint(&reloader.path);
    let cert_paths: Vec<PathBuf> = tls_files
        .iter()
        .flat_map(|files| [files.cert.clone(), files.key.clone()])
        .collect();
    let mut certs_seen: Vec<_> = cert_paths.iter().map(|p| fingerprint(p)).collect();
    let mut stopped = std::pin::pin!(stopped);
    loop {
        #[cfg(unix)]
        let hung_up = async {
            match hangup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hung_up = std::future::pending::<()>();
        let forced = tokio::select! {
            () = hung_up => true,
            () = tokio::time::sleep(WATCH_INTERVAL) => false,
            () = &mut stopped => return,
        };
        let config_now = fingerprint(&reloader.path);
        if forced || config_now != config_seen {
            config_seen = config_now;
            let reason = if forced { "SIGHUP" } else { "file changed" };
            // Off the request workers: building 10,000 integrations takes a fifth of a
            // second, and what it allocates and frees stays in the building thread's arena
            // rather than among the allocations requests reuse.
            let reloading = {
                let reloader = reloader.clone();
                tokio::task::spawn_blocking(move || reload(&reloader))
            };
            let reloaded = reloading
                .await
                .unwrap_or_else(|failed| Err(format!("the reload stopped: {failed}")));
            match reloaded {
                Ok(integrations) => {
                    tracing::info!(%reason, integrations, "configuration reloaded");
                }
                Err(problems) => {
                    proxy.reload_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%reason, %problems, "new configuration refused; the previous one keeps serving");
                }
            }
        }
        let certs_now: Vec<_> = cert_paths.iter().map(|p| fingerprint(p)).collect();
        if let (Some(cert), Some(files)) = (&cert, &tls_files)
            && (forced || certs_now != certs_seen)
        {
            certs_seen = certs_now;
            match cert.reload(files) {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(error) => {
                    tracing::error!(%error, "new TLS certificate refused; the previous one keeps serving")
                }
            }
        }
    }
}
