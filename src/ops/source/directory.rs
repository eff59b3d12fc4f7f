//! `[source] directory`: every `*.toml` file in the directory is a part of the catalog. inotify
//! (through `notify`) says when something in the directory changed; the directory is then
//! read again and each file whose content changed is validated and applied on its own. That
//! covers edits, creations, deletions, editors' atomic renames and a Kubernetes ConfigMap's
//! symlink swap alike, since a file is known by its name and its content, not by the event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Shared, lock, publish};
use crate::config::{Fragment, ProcessEnv};
use crate::proxy::Proxy;

/// How long events are gathered before the directory is read (an editor's save is several).
const SETTLE: Duration = Duration::from_millis(50);
/// How often the directory is read even without an event (a watch can miss on some file
/// systems).
const RESCAN: Duration = Duration::from_secs(30);
const PREFIX: &str = "directory:";

/// The files last read, by name, with their content's hash; refused ones are remembered so
/// they are not logged again until they change or another file does.
#[derive(Default)]
pub struct Seen {
    files: BTreeMap<String, String>,
    refused: BTreeMap<String, String>,
}

/// Reads the directory and applies what changed; whether anything did.
pub fn scan(dir: &Path, catalog: &Shared, seen: &mut Seen, proxy: &Proxy) -> bool {
    let present = match read_dir(dir) {
        Ok(present) => present,
        Err(error) => {
            tracing::warn!(directory = %dir.display(), %error, "integration directory not read");
            return false;
        }
    };
    let mut changed = false;
    let mut catalog = lock(catalog);
    for name in seen.files.keys().cloned().collect::<Vec<_>>() {
        if !present.contains_key(&name) {
            seen.files.remove(&name);
            if catalog.remove(&format!("{PREFIX}{name}")) {
                tracing::info!(file = %name, "integration file removed");
                changed = true;
            }
        }
    }
    seen.refused.retain(|name, _| present.contains_key(name));
    // Twice when something changed: a file refused for a name another file held may fit now.
    for round in 0..2 {
        if round == 1 && !changed {
            break;
        }
        for (name, text) in &present {
            let hash = hex::encode(Sha256::digest(text.as_bytes()));
            let origin = format!("{PREFIX}{name}");
            let known = seen.files.get(name) == Some(&hash);
            let refused_as_is = seen.refused.get(name) == Some(&hash) && round == 0;
            if known || refused_as_is {
                continue;
            }
            let others = catalog.others(&origin);
            let file = dir.join(name).display().to_string();
            let outcome = Fragment::from_toml(text, &file, &others, &ProcessEnv)
                .map_err(|error| error.to_string())
                .and_then(|fragment| catalog.put(&origin, fragment, hash.clone(), hash.clone()));
            match outcome {
                Ok(()) => {
                    tracing::info!(file = %name, "integration file applied");
                    seen.files.insert(name.clone(), hash);
                    seen.refused.remove(name);
                    proxy.sources.applied.fetch_add(1, Ordering::Relaxed);
                    changed = true;
                }
                Err(problems) => {
                    if seen.refused.get(name) != Some(&hash) {
                        tracing::warn!(file = %name, %problems, "integration file refused; its previous version stays");
                        proxy.sources.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    seen.refused.insert(name.clone(), hash);
                }
            }
        }
    }
    changed
}

/// The `*.toml` files of the directory (symlinks followed, hidden names skipped), by name.
fn read_dir(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        // A file that vanished between the listing and the read is gone: the next event says so.
        if let Ok(text) = std::fs::read_to_string(dir.join(&name)) {
            files.insert(name, text);
        }
    }
    Ok(files)
}

/// Watches the directory until the proxy stops, applying each change within about `SETTLE`.
pub async fn watch(dir: PathBuf, catalog: Shared, mut seen: Seen, proxy: Arc<Proxy>) {
    use notify::Watcher as _;
    let (events, mut changes) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = events.try_send(());
        }
    });
    let _watcher = match watcher.and_then(|mut watcher| {
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    }) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(directory = %dir.display(), %error, "cannot watch the integration directory; reading it every 30 s");
            None
        }
    };
    loop {
        let _ = tokio::time::timeout(RESCAN, changes.recv()).await;
        tokio::time::sleep(SETTLE).await;
        while changes.try_recv().is_ok() {}
        let scanned = {
            let (dir, catalog, proxy) = (dir.clone(), catalog.clone(), proxy.clone());
            let mut taken = std::mem::take(&mut seen);
            tokio::task::spawn_blocking(move || {
                let changed = scan(&dir, &catalog, &mut taken, &proxy);
                (changed, taken)
            })
            .await
        };
        let Ok((changed, taken)) = scanned else {
            return;
        };
        seen = taken;
        if changed {
            publish(&catalog, &proxy);
        }
    }
}
