//! Structured logs: one JSON object per line by default (CloudWatch's JSON log format),
//! honouring `AWS_LAMBDA_LOG_FORMAT` (`Text` for plain lines) and `AWS_LAMBDA_LOG_LEVEL`
//! (then `RUST_LOG`; default `INFO`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber, writing to stdout. Call once, first thing in `main`.
pub fn init() {
    init_with_writer(std::io::stdout);
}

/// As [`init`], with another writer (tests capture the output this way).
pub fn init_with_writer<W>(writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder()
        .with_default_directive(level_from_env().into())
        .parse_lossy(std::env::var("RUST_LOG").unwrap_or_default());
    install(writer, filter);
}

/// As [`init_with_writer`], at a fixed level for every crate (the SDK's included): for tests
/// that must see everything that could be logged.
pub fn init_with_level<W>(writer: W, level: tracing::level_filters::LevelFilter)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    install(
        writer,
        EnvFilter::builder()
            .with_default_directive(level.into())
            .parse_lossy(""),
    );
}

fn install<W>(writer: W, filter: EnvFilter)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let text = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"));
    // A second init (several tests in one process) keeps the first subscriber.
    let _ = if text {
        builder.without_time().try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            // The runtime's span: `"span": {"requestId": …}` on every line of an invocation,
            // which tells concurrent invocations' lines apart (run_concurrent).
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    };
}

fn level_from_env() -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .unwrap_or_default()
        .to_ascii_uppercase()
        .as_str()
    {
        "TRACE" => LevelFilter::TRACE,
        "DEBUG" => LevelFilter::DEBUG,
        "WARN" => LevelFilter::WARN,
        "ERROR" | "FATAL" => LevelFilter::ERROR,
        _ => LevelFilter::INFO,
    }
}

/// A writer that keeps every line written, for tests that read the logs back
/// (`init_with_writer(captured.clone())`).
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
