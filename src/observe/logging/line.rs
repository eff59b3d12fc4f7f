//! Lines the proxy writes itself, without tracing's formatter: the access line, one per
//! request, is most of what a busy proxy logs, and formatting it through tracing's visitors
//! cost about 5 % of the CPU of a small GET. The line is written in the process's format, byte
//! for byte as the formatter writes the same event outside any span (the tests compare the
//! two), into the same [`Buffered`] writer, so lines of both kinds keep their order.

use std::fmt::{Display, Write};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Buffered, LogFormat};

/// A field's value, typed as the tracing macro would record it.
pub enum Value<'a> {
    /// A string (`name = text`): quoted in text lines.
    Text(&'a str),
    /// A value shown with `Display` (`name = %value`): bare in text lines, a string in JSON.
    Shown(&'a dyn Display),
    /// A string shown as `Display` shows it: [`Value::Shown`] without the formatter.
    Bare(&'a str),
    /// A number (`name = count`).
    Unsigned(u64),
    /// A number that may be negative.
    Signed(i64),
    /// `true` or `false`.
    Flag(bool),
}

/// How lines are laid out: the process's [`LogFormat`], and for text whether it is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) format: LogFormat,
    pub(super) ansi: bool,
}

/// Where the process's lines go, set once by [`super::init`].
static OUTPUT: OnceLock<(Buffered, Layout)> = OnceLock::new();

/// Sends access lines to `out`, in `layout`, from now on.
pub(super) fn set_output(out: Buffered, layout: Layout) {
    // `init` runs once per process; were it called again, the first output would stay.
    let _ = OUTPUT.set((out, layout));
}

/// Writes one access line: INFO, target `access`, message `request`, then `fields` in order.
/// The caller checks that the target is enabled at INFO. Without [`super::init`] (the library
/// in another program, or the tests' in-process proxies), the line goes to whatever tracing
/// subscriber there is, its fields in the message as the text format writes them.
pub fn access(fields: &[(&'static str, Value<'_>)]) {
    let Some((out, layout)) = OUTPUT.get() else {
        let mut text = String::new();
        text_fields(&mut text, false, fields);
        tracing::info!(target: "access", "request{text}");
        return;
    };
    let mut line = String::with_capacity(512);
    layout.write(&mut line, SystemTime::now(), "access", "request", fields);
    out.append(line.as_bytes());
}

impl Layout {
    /// The whole line, ending in `\n`.
    pub(super) fn write(
        self,
        line: &mut String,
        now: SystemTime,
        target: &str,
        message: &str,
        fields: &[(&'static str, Value<'_>)],
    ) {
        match self.format {
            LogFormat::Text => text_line(line, self.ansi, now, target, message, fields),
            LogFormat::Json => json_line(line, now, target, message, fields),
            LogFormat::Logfmt => {
                line.push_str("ts=");
                timestamp(line, now);
                line.push_str(" level=info target=");
                line.push_str(target);
                line.push_str(" msg=");
                line.push_str(&super::quote(message));
                logfmt_fields(line, fields);
            }
        }
        line.push('\n');
    }
}

/// ANSI styles, as tracing's text format paints them.
const DIM: &str = "\x1b[2m";
const ITALIC: &str = "\x1b[3m";
const GREEN: &str = "\x1b[32m";
const RESET: &str = "\x1b[0m";

/// `2026-11-29T05:53:50.142268Z  INFO access: request name=value …`.
fn text_line(
    line: &mut String,
    ansi: bool,
    now: SystemTime,
    target: &str,
    message: &str,
    fields: &[(&'static str, Value<'_>)],
) {
    if ansi {
        line.push_str(DIM);
    }
    timestamp(line, now);
    if ansi {
        line.push_str(RESET);
    }
    line.push(' ');
    paint(line, ansi, GREEN, " INFO");
    line.push(' ');
    paint(line, ansi, DIM, target);
    paint(line, ansi, DIM, ":");
    line.push(' ');
    line.push_str(message);
    text_fields(line, ansi, fields);
}

/// ` name=value …`: strings quoted and escaped as `Debug` writes them, other values bare.
fn text_fields(line: &mut String, ansi: bool, fields: &[(&'static str, Value<'_>)]) {
    for (name, value) in fields {
        line.push(' ');
        paint(line, ansi, ITALIC, name);
        paint(line, ansi, DIM, "=");
        match value {
            Value::Text(text) => push_debug(line, text),
            // Writing to a String cannot fail.
            Value::Shown(shown) => drop(write!(line, "{shown}")),
            Value::Bare(text) => line.push_str(text),
            Value::Unsigned(number) => push_integer(line, *number),
            Value::Signed(number) => push_integer(line, *number),
            Value::Flag(flag) => line.push_str(flag_text(*flag)),
        }
    }
}

/// `text` as `Debug` writes a string: quoted, and escaped where it must be. Plain printable
/// ASCII (every field but a rare key or message) is copied without the formatter.
fn push_debug(line: &mut String, text: &str) {
    let plain = text
        .bytes()
        .all(|byte| (b' '..=b'~').contains(&byte) && byte != b'"' && byte != b'\\');
    if plain {
        line.push('"');
        line.push_str(text);
        line.push('"');
    } else {
        // Writing to a String cannot fail.
        let _ = write!(line, "{text:?}");
    }
}

/// An integer, bare, as every format writes it, without the formatter.
fn push_integer(line: &mut String, number: impl itoa::Integer) {
    line.push_str(itoa::Buffer::new().format(number));
}

fn flag_text(flag: bool) -> &'static str {
    if flag { "true" } else { "false" }
}

/// `text`, in `style` when the line is coloured.
fn paint(line: &mut String, ansi: bool, style: &str, text: &str) {
    if ansi {
        line.push_str(style);
        line.push_str(text);
        line.push_str(RESET);
    } else {
        line.push_str(text);
    }
}

/// `{"timestamp":"…","level":"INFO","message":"request",…,"target":"access"}`, the fields
/// flattened into the object as the JSON format's `flatten_event` does.
fn json_line(
    line: &mut String,
    now: SystemTime,
    target: &str,
    message: &str,
    fields: &[(&'static str, Value<'_>)],
) {
    let mut stamp = String::with_capacity(27);
    timestamp(&mut stamp, now);
    line.push_str("{\"timestamp\":");
    json_string(line, &stamp);
    line.push_str(",\"level\":\"INFO\",\"message\":");
    json_string(line, message);
    for (name, value) in fields {
        line.push(',');
        json_string(line, name);
        line.push(':');
        match value {
            Value::Text(text) => json_string(line, text),
            Value::Shown(shown) => json_string(line, &shown.to_string()),
            Value::Bare(text) => json_string(line, text),
            Value::Unsigned(number) => push_integer(line, *number),
            Value::Signed(number) => push_integer(line, *number),
            Value::Flag(flag) => line.push_str(flag_text(*flag)),
        }
    }
    line.push_str(",\"target\":");
    json_string(line, target);
    line.push('}');
}

/// A JSON string, escaped by serde_json as the JSON format escapes its strings.
fn json_string(line: &mut String, text: &str) {
    match serde_json::to_string(text) {
        Ok(quoted) => line.push_str(&quoted),
        // Serialising a str cannot fail; were it to, the line still parses.
        Err(_) => line.push_str("\"\""),
    }
}

/// ` name=value …`, each value bare when it is a plain token (see [`super::quote`]).
fn logfmt_fields(line: &mut String, fields: &[(&'static str, Value<'_>)]) {
    for (name, value) in fields {
        line.push(' ');
        line.push_str(name);
        line.push('=');
        match value {
            Value::Text(text) => line.push_str(&super::quote(text)),
            Value::Shown(shown) => line.push_str(&super::quote(&shown.to_string())),
            Value::Bare(text) => line.push_str(&super::quote(text)),
            Value::Unsigned(number) => push_integer(line, *number),
            Value::Signed(number) => push_integer(line, *number),
            Value::Flag(flag) => line.push_str(flag_text(*flag)),
        }
    }
}

/// `2026-11-29T05:53:50.142268Z`: UTC, to the microsecond, as tracing's `SystemTime` timer.
pub(super) fn timestamp(line: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) =
        crate::s3::sigv4::civil_from_days(i64::try_from(seconds / 86_400).unwrap_or(0));
    let rest = seconds % 86_400;
    let _ = write!(
        line,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `io::Write` whose text the test reads back.
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Values a field may hold, the awkward ones included: quotes, backslashes, `=`, spaces,
    /// line ends, control and non-ASCII characters, the empty string.
    const AWKWARD: [&str; 9] = [
        "-",
        "GET",
        "",
        "a b",
        "k=v",
        "say \"hi\"\\",
        "line\nend\r\t",
        "\u{1b}[31mred\u{7f}",
        "café ☃",
    ];

    /// What `emit` writes through the process's own subscriber for `layout`.
    fn through_subscriber(layout: Layout, emit: impl FnOnce()) -> String {
        let sink = Sink::default();
        let writer = Buffered::new(Box::new(sink.clone()));
        let filter = tracing_subscriber::EnvFilter::new("info");
        let subscriber = super::super::subscriber(layout, filter, writer.clone());
        tracing::subscriber::with_default(subscriber, emit);
        writer.flush();
        let written = sink.0.lock().expect("sink").clone();
        String::from_utf8(written).expect("UTF-8")
    }

    /// What the tracing macro records for the same fields.
    fn through_tracing(layout: Layout, texts: [&str; 3], numbers: (u64, i64, bool)) -> String {
        through_subscriber(layout, || {
            let [text, shown, other] = texts;
            tracing::info!(
                target: "access",
                request_id = %shown,
                method = text,
                status = numbers.0,
                upstream_status = numbers.1,
                code = other,
                client = %other,
                complete = numbers.2,
                "request"
            );
        })
    }

    /// The fields `through_tracing` records, as `Value`s.
    fn sample<'a>(
        texts: &'a [&'a str; 3],
        numbers: (u64, i64, bool),
    ) -> [(&'static str, Value<'a>); 7] {
        let [text, shown, other] = texts;
        [
            ("request_id", Value::Bare(shown)),
            ("method", Value::Text(text)),
            ("status", Value::Unsigned(numbers.0)),
            ("upstream_status", Value::Signed(numbers.1)),
            ("code", Value::Text(other)),
            ("client", Value::Shown(other)),
            ("complete", Value::Flag(numbers.2)),
        ]
    }

    fn written_here(layout: Layout, texts: [&str; 3], numbers: (u64, i64, bool)) -> String {
        let mut line = String::new();
        let fields = sample(&texts, numbers);
        layout.write(&mut line, SystemTime::now(), "access", "request", &fields);
        line
    }

    /// The line with its timestamp (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, 27 bytes) masked.
    fn masked(line: &str) -> String {
        let year = line
            .char_indices()
            .find(|&(at, _)| {
                let stamp = line.as_bytes().get(at..at + 27);
                stamp.is_some_and(|s| s[4] == b'-' && s[10] == b'T' && s[26] == b'Z')
            })
            .map(|(at, _)| at)
            .expect("a timestamp");
        format!("{}TIMESTAMP{}", &line[..year], &line[year + 27..])
    }

    /// Differential: in every format, coloured or not, the line written here is the line
    /// tracing's formatter writes for the same event, byte for byte but the time.
    #[test]
    fn lines_match_the_tracing_formatter() {
        let layouts = [
            (LogFormat::Text, false),
            (LogFormat::Text, true),
            (LogFormat::Json, false),
            (LogFormat::Logfmt, false),
        ];
        let mut compared = 0;
        for (format, ansi) in layouts {
            let layout = Layout { format, ansi };
            for (n, text) in AWKWARD.iter().enumerate() {
                let texts = [*text, AWKWARD[(n + 3) % 9], AWKWARD[(n + 5) % 9]];
                let numbers = (n as u64 * 1000, n as i64 - 4, n % 2 == 0);
                let expected = through_tracing(layout, texts, numbers);
                let ours = written_here(layout, texts, numbers);
                assert_eq!(masked(&ours), masked(&expected), "{layout:?}");
                assert_eq!(ours.matches('\n').count(), expected.matches('\n').count());
                compared += 1;
            }
        }
        assert_eq!(compared, 36);
    }

    /// Without `init` (the tests' in-process proxies), the line goes through the subscriber
    /// there is, and a text subscriber writes it as the text format would; only control
    /// characters in a bare (`Display`) value come out escaped, as in any message.
    #[test]
    fn without_init_a_text_subscriber_writes_the_same_line() {
        assert!(OUTPUT.get().is_none(), "no unit test calls init");
        let mut compared = 0;
        let layout = Layout {
            format: LogFormat::Text,
            ansi: false,
        };
        for (n, text) in AWKWARD.iter().enumerate() {
            let texts = [*text, AWKWARD[(n + 3) % 9], AWKWARD[(n + 5) % 9]];
            let numbers = (n as u64, -(n as i64), n % 3 == 0);
            let expected = written_here(layout, texts, numbers);
            let written = through_subscriber(layout, || access(&sample(&texts, numbers)));
            assert!(!written.contains('\u{1b}'), "{written:?}");
            if !texts[1..].iter().any(|t| t.contains(char::is_control)) {
                assert_eq!(masked(&written), masked(&expected));
                compared += 1;
            }
        }
        assert_eq!(compared, 5);
    }

    #[test]
    fn timestamps_are_utc_to_the_microsecond() {
        let at = |micros: u64| UNIX_EPOCH + std::time::Duration::from_micros(micros);
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_440_938_160_123_456, "2015-08-30T12:36:00.123456Z"),
            (1_709_164_799_999_999, "2024-02-28T23:59:59.999999Z"),
            (1_709_164_800_000_001, "2024-02-29T00:00:00.000001Z"),
            (4_102_444_800_000_000, "2100-01-01T00:00:00.000000Z"),
        ];
        for (micros, expected) in cases {
            let mut line = String::new();
            timestamp(&mut line, at(micros));
            assert_eq!(line, expected);
        }
    }
}
