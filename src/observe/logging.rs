//! Log output: human text (the default on a terminal), JSON lines, or logfmt, to stderr.
//! `RUST_LOG` filters as usual (`RUST_LOG=access=info,s3_signing_proxy=debug`). Every request
//! writes one line with target `access` when its response is done (see the `access` module).
//! Lines are buffered and written in batches, within 50 ms ([`Buffered`]). The access line is
//! written by [`line::access`], in the same format, without tracing's formatter.

pub mod line;

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
    /// `key=value` pairs.
    Logfmt,
}

/// Installs the global subscriber, writing to stderr through a [`Buffered`] writer. Keep the
/// guard until the process ends: dropping it writes out what is buffered.
#[must_use = "dropping the guard writes out the buffered lines; keep it until exit"]
pub fn init(format: LogFormat) -> LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let writer = Buffered::to_stderr();
    let guard = LogGuard(writer.clone());
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layout = line::Layout { format, ansi };
    line::set_output(writer.clone(), layout);
    // `try_init` also routes the `log` crate's records (rustls's) through the subscriber.
    if let Err(error) =
        tracing_subscriber::util::SubscriberInitExt::try_init(subscriber(layout, filter, writer))
    {
        eprintln!("warning: logging was set up already ({error})");
    }
    guard
}

/// The subscriber that writes every line but the access line, in `layout`.
fn subscriber(
    layout: line::Layout,
    filter: tracing_subscriber::EnvFilter,
    writer: Buffered,
) -> Box<dyn Subscriber + Send + Sync> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match layout.format {
        LogFormat::Text => Box::new(builder.with_ansi(layout.ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Logfmt => Box::new(
            builder
                .fmt_fields(LogfmtFields)
                .event_format(Logfmt)
                .finish(),
        ),
    }
}

/// Lines gathered before they are written in one `write`.
const BUFFER_BYTES: usize = 32 * 1024;
/// The longest a line waits in the buffer.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Log lines gathered in memory and written to `out` in batches: when 32 KiB are waiting, and
/// every 50 ms by a thread that otherwise sleeps (as nginx's `access_log … buffer= flush=`).
/// Under load one `write` carries many access lines instead of one each; a quiet proxy's lines
/// appear within 50 ms. Lines keep their order: each is appended, and written, under one lock.
#[derive(Clone)]
pub struct Buffered {
    shared: std::sync::Arc<std::sync::Mutex<Pending>>,
}

/// The lines waiting, and where they go.
pub struct Pending {
    text: Vec<u8>,
    out: Box<dyn std::io::Write + Send>,
}

impl Pending {
    fn flush(&mut self) {
        if !self.text.is_empty() {
            // Nowhere to report a failed write to: stderr is where reports go.
            let _ = self.out.write_all(&self.text);
            self.text.clear();
        }
    }
}

impl Buffered {
    fn to_stderr() -> Buffered {
        let buffered = Buffered::new(Box::new(std::io::stderr()));
        let flusher = buffered.clone();
        let spawned = std::thread::Builder::new()
            .name("log-flush".to_string())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_EVERY);
                    flusher.flush();
                }
            });
        if let Err(error) = spawned {
            eprintln!("warning: no log flush thread ({error}); lines wait for 32 KiB");
        }
        buffered
    }

    fn new(out: Box<dyn std::io::Write + Send>) -> Buffered {
        Buffered {
            shared: std::sync::Arc::new(std::sync::Mutex::new(Pending {
                text: Vec::with_capacity(BUFFER_BYTES),
                out,
            })),
        }
    }

    /// Adds one whole line, written out once 32 KiB are waiting.
    fn append(&self, line: &[u8]) {
        let mut pending = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.text.extend_from_slice(line);
        if pending.text.len() >= BUFFER_BYTES {
            pending.flush();
        }
    }

    /// Writes out whatever is buffered.
    pub fn flush(&self) {
        if let Ok(mut pending) = self.shared.lock() {
            pending.flush();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffered {
    type Writer = EventText<'a>;

    /// The buffer, locked for one event: however the formatter writes the event, its pieces
    /// stay together.
    fn make_writer(&'a self) -> EventText<'a> {
        // A panic while the lock was held leaves text, not a broken invariant: keep going.
        let pending = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        EventText { pending }
    }
}

/// One event being written into the buffer, which it holds locked.
pub struct EventText<'a> {
    pending: std::sync::MutexGuard<'a, Pending>,
}

impl std::io::Write for EventText<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventText<'_> {
    fn drop(&mut self) {
        if self.pending.text.len() >= BUFFER_BYTES {
            self.pending.flush();
        }
    }
}

/// Keeps the log; dropping it writes out what is buffered.
pub struct LogGuard(Buffered);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// `ts=… level=info target=access msg=request key=value …`, with the enclosing spans' fields.
struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str("ts=")?;
        SystemTime.format_time(&mut writer)?;
        let metadata = event.metadata();
        write!(
            writer,
            " level={} target={}",
            metadata.level().as_str().to_ascii_lowercase(),
            metadata.target()
        )?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{fields}")?;
                }
            }
        }
        let mut visitor = LogfmtVisitor {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut visitor);
        visitor.result?;
        writeln!(writer)
    }
}

/// Formats span fields as `key=value` pairs.
struct LogfmtFields;

impl<'w> FormatFields<'w> for LogfmtFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = LogfmtVisitor {
            writer: &mut writer,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct LogfmtVisitor<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl LogfmtVisitor<'_, '_> {
    fn pair(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let key = if field.name() == "message" {
            "msg"
        } else {
            field.name()
        };
        // Keys are written with a leading space; span fields start the line's field list too.
        self.result = write!(self.writer, " {key}={}", quote(value));
    }
}

impl Visit for LogfmtVisitor<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, &format!("{value:?}"));
    }
}

/// A logfmt value: bare when it is a plain token, else quoted with `"` and `\` escaped.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\');
    if plain {
        return value.to_string();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c if c.is_control() => quoted.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test reads while the buffer owns it.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<(Vec<u8>, usize)>>);

    impl std::io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut seen = self.0.lock().expect("sink");
            seen.0.extend_from_slice(bytes);
            seen.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn buffered_lines_are_written_whole_in_order_and_in_batches() {
        use std::io::Write;
        use tracing_subscriber::fmt::MakeWriter;
        let sink = Shared::default();
        let buffered = Buffered::new(Box::new(sink.clone()));
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let buffered = &buffered;
                scope.spawn(move || {
                    for n in 0..5_000 {
                        writeln!(buffered.make_writer(), "thread={thread} n={n}").unwrap();
                    }
                });
            }
        });
        let before_flush = sink.0.lock().unwrap().0.len();
        buffered.flush();
        let (text, writes) = sink.0.lock().unwrap().clone();
        assert!(before_flush < text.len(), "the tail waits for a flush");
        let text = String::from_utf8(text).unwrap();
        let mut next = [0usize; 4];
        for line in text.lines() {
            let (thread, n) = line.split_once(' ').unwrap();
            let thread: usize = thread["thread=".len()..].parse().unwrap();
            assert_eq!(n, format!("n={}", next[thread]), "{line}");
            next[thread] += 1;
        }
        assert_eq!(next, [5_000; 4]);
        // 20,000 lines of about 17 bytes in 32 KiB batches: about 11 writes, not 20,000.
        assert!(writes <= 20, "{writes} writes");
    }

    #[test]
    fn logfmt_values_are_quoted_only_when_needed() {
        assert_eq!(quote("GET"), "GET");
        assert_eq!(quote("acme-media"), "acme-media");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("k=v"), "\"k=v\"");
        assert_eq!(quote("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
    }
}
