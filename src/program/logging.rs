//! Log lines on stderr, one per event: `program: LEVEL: message`. PostgreSQL copies the hot-path
//! binaries' stderr into its own log, which already has timestamps, so these lines have none.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

struct LineFormat {
    program: String,
}

impl<S, N> FormatEvent<S, N> for LineFormat
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
        write!(writer, "{}: {}: ", self.program, event.metadata().level())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Sends log lines to stderr at the level named by `TIDEMARK_LOG` (error, warn, info, debug,
/// trace; default info).
pub fn init(program: &str) {
    let level = std::env::var("TIDEMARK_LOG")
        .ok()
        .and_then(|text| text.parse::<Level>().ok())
        .unwrap_or(Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(LineFormat {
            program: program.to_owned(),
        })
        .try_init();
}
