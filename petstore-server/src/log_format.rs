//! The text log line without colour, written straight: the same bytes as
//! `tracing-subscriber`'s default ("full") format with ANSI off, at less cost per line.
//!
//! Why: at the default level every request writes one INFO line inside its span, and
//! `petstore-bench --scenario observability` showed that line costing the server more
//! than its 5 % budget. Measured per request (span, event, close) on one thread, the
//! default format spends its time in the styling calls it makes even with colour off,
//! in escaping the message one character at a time, in growing each span's field
//! string a few bytes at a time, and in turning the clock into a date for every line.
//! Here: no styling calls, the message is scanned and written in whole runs, a span's
//! fields are written in one piece, and the date and time up to the second are
//! formatted once per second and thread.
//!
//! With colour (a terminal) the server keeps the default format: a person reads it,
//! and the cost does not matter there.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::field::{RecordFields, VisitOutput as _};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// A line's timestamp as the default format writes it (`2026-12-07T03:24:10.123456Z`),
/// with the part up to the second formatted once per second and thread.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timestamp;

thread_local! {
    /// The second last formatted on this thread, and `YYYY-MM-DDTHH:MM:SS.` for it.
    static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
}

impl FormatTime for Timestamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        };
        let (secs, micros) = (now.as_secs(), now.subsec_micros());
        let prefix = SECOND.with(|cached| {
            let (second, prefix) = cached.get();
            if second == secs {
                return Some(prefix);
            }
            let prefix = date_time(secs)?;
            cached.set((secs, prefix));
            Some(prefix)
        });
        // Years past 9999 are written as the default format writes them.
        let Some(prefix) = prefix else {
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        };
        let mut line = [0u8; 27];
        line[..20].copy_from_slice(&prefix);
        digits(&mut line[20..26], micros);
        line[26] = b'Z';
        // ASCII digits and separators only.
        w.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` after the Unix epoch (UTC), or `None` past 9999.
fn date_time(secs: u64) -> Option<[u8; 20]> {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    if year > 9999 {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00.";
    digits(&mut out[0..4], year as u32);
    digits(&mut out[5..7], month);
    digits(&mut out[8..10], day);
    digits(&mut out[11..13], (rest / 3600) as u32);
    digits(&mut out[14..16], (rest % 3600 / 60) as u32);
    digits(&mut out[17..19], (rest % 60) as u32);
    Some(out)
}

/// The proleptic Gregorian date of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Writes `value`'s last `out.len()` decimal digits into `out`, zero-padded.
fn digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The line: timestamp, level, the spans with their fields, the target, the event's
/// fields; as the default format writes them with ANSI off.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlainLine<T = Timestamp> {
    timer: T,
}

impl<T> PlainLine<T> {
    /// A line with `timer`'s timestamps.
    #[cfg(test)]
    pub(crate) fn with_timer(timer: T) -> Self {
        Self { timer }
    }
}

impl<S, N, T> FormatEvent<S, N> for PlainLine<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str(match *meta.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// The fields, as the default format writes them with ANSI off: `name=value` (the
/// value's `Debug`), the message first-class and escaped against terminal injection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlainFields;

thread_local! {
    /// Where fields are formatted before they are written in one piece.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<'writer> FormatFields<'writer> for PlainFields {
    /// Formats into a scratch string first, so that a span's new field string is
    /// allocated once at its final size rather than grown piece by piece.
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let sanitize = writer.sanitizes_ansi_escapes();
        let format = |out: &mut String| {
            let mut visitor = PlainVisitor {
                out,
                first: true,
                sanitize,
                result: Ok(()),
            };
            fields.record(&mut visitor);
            visitor.result
        };
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                scratch.clear();
                format(&mut scratch)?;
                let written = writer.write_str(&scratch);
                if scratch.capacity() > 64 * 1024 {
                    *scratch = String::new();
                }
                written
            }
            // A field's `Debug` logged: format without the scratch string.
            Err(_) => {
                let mut own = String::new();
                format(&mut own)?;
                writer.write_str(&own)
            }
        })
    }
}

struct PlainVisitor<'a> {
    out: &'a mut String,
    first: bool,
    sanitize: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    fn pad(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.out.push(' ');
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    /// As the default format writes an error (its message, then its sources; escaped,
    /// as this server's writers always escape).
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        let mut visitor = DefaultVisitor::new(Writer::new(self.out), self.first);
        visitor.record_error(field, value);
        self.result = visitor.finish();
        self.first = false;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.pad();
        self.result = if name == "message" {
            if self.sanitize {
                write!(Escaping(self.out), "{value:?}")
            } else {
                write!(self.out, "{value:?}")
            }
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.out.push_str(name);
            self.out.push('=');
            write!(self.out, "{value:?}")
        };
    }
}

/// Writes what it is given with the characters that could steer a terminal escaped, as
/// the default format escapes a message: whole runs at a time, not each character.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let steers = |c: char| {
            matches!(
                c,
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
            )
        };
        let mut rest = s;
        while let Some(at) = rest.find(steers) {
            self.0.push_str(&rest[..at]);
            let c = rest[at..].chars().next().unwrap_or_default();
            match c {
                '\x1b' => self.0.push_str("\\x1b"),
                '\x07' => self.0.push_str("\\x07"),
                '\x08' => self.0.push_str("\\x08"),
                '\x0c' => self.0.push_str("\\x0c"),
                '\x7f' => self.0.push_str("\\x7f"),
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.push_str(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing::subscriber::with_default;
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// A fixed time, so that both formats write the same one.
    struct Fixed;

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-12-07T03:24:10.000001Z")
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Outer(Inner);

    #[derive(Debug)]
    struct Inner;

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer failed")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("inner \x1b[31mfailed")
        }
    }

    impl std::error::Error for Inner {}

    /// Every kind of event and span this server writes, and some it might.
    fn events() {
        let request = tracing::info_span!(
            "http_request",
            method = %"GET",
            route = %"/v1/pets/{id}",
            request_id = %"0193a6b2",
            sub = tracing::field::Empty,
        );
        let _request = request.enter();
        request.record("sub", "developer");
        tracing::info!(status = 200u16, latency_ms = 0.25f64, "request finished");
        let inner = tracing::debug_span!("pet", id = 7u64, r#type = "dog");
        let _inner = inner.enter();
        tracing::warn!(
            flag = true,
            n = -3i64,
            big = u128::MAX,
            float = 1.0f64,
            text = "quoted \"and\" \x1b[2J escaped",
            "a message with \x1b[2J, \u{9b}, a bell \x07 and é"
        );
        let error = Outer(Inner);
        tracing::error!(
            error = &error as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::error!(message = "a message as a field \x1b", r#loop = 1u8);
        tracing::trace!(bytes = tracing::field::debug(b"ab"), "");
        drop(_inner);
        drop(_request);
        tracing::info!(target: "other::place", "outside any span");
    }

    fn capture_default() -> String {
        let out = Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_timer(Fixed)
            .with_writer(out.clone());
        with_default(tracing_subscriber::registry().with(layer), events);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    fn capture_plain() -> String {
        let out = Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(PlainLine::with_timer(Fixed))
            .fmt_fields(PlainFields)
            .with_writer(out.clone());
        with_default(tracing_subscriber::registry().with(layer), events);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn the_plain_line_is_the_default_format_without_colour() {
        let default = capture_default();
        assert_eq!(default.lines().count(), 6, "{default}");
        assert_eq!(capture_plain(), default);
    }

    #[test]
    fn the_timestamp_is_the_default_formats() {
        for (secs, expected) in [
            (0, "1970-01-01T00:00:00."),
            (951_782_400, "2000-02-29T00:00:00."),
            (1_796_613_850, "2026-12-07T03:24:10."),
            (4_107_542_399, "2100-02-28T23:59:59."),
            (4_107_542_400, "2100-03-01T00:00:00."),
            (253_402_300_799, "9999-12-31T23:59:59."),
        ] {
            let prefix = date_time(secs).unwrap();
            assert_eq!(std::str::from_utf8(&prefix).unwrap(), expected, "{secs}");
        }
        assert_eq!(date_time(253_402_300_800), None);

        let mut ours = String::new();
        let mut theirs = String::new();
        // The same second on both sides (retried across a second's turn).
        for _ in 0..3 {
            ours.clear();
            theirs.clear();
            Timestamp.format_time(&mut Writer::new(&mut ours)).unwrap();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            if ours[..19] == theirs[..19] {
                break;
            }
        }
        assert_eq!(ours.len(), theirs.len(), "{ours} vs {theirs}");
        assert_eq!(ours[..20], theirs[..20], "{ours} vs {theirs}");
        assert!(ours.ends_with('Z'), "{ours}");
    }
}
