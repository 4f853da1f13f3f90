//! The root logger: slog to stderr, JSON or key=value, asynchronous so a
//! slow console never stalls a request.

use slog::{o, Drain, Logger};
pub use slog_async::AsyncGuard;

use crate::config::LogFormat;

/// Builds the root logger. Drop the guard last, before exiting: it flushes
/// the records still queued (clones of the logger may outlive `main`'s).
pub fn root(format: LogFormat, level: slog::Level) -> (Logger, AsyncGuard) {
    let (drain, guard) = match format {
        LogFormat::Json => {
            let json = slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build()
                .fuse();
            slog_async::Async::new(json).chan_size(4096).build_with_guard()
        }
        LogFormat::Text => {
            let dec = slog_term::PlainSyncDecorator::new(std::io::stderr());
            let term = slog_term::FullFormat::new(dec).build().fuse();
            slog_async::Async::new(term).chan_size(4096).build_with_guard()
        }
    };
    let log = Logger::root(
        drain.fuse().filter_level(level).fuse(),
        o!("source" => "bosun", "pid" => std::process::id()),
    );
    (log, guard)
}
