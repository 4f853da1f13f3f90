//! The root logger: slog to stderr, JSON or key=value, asynchronous so a
//! slow console never stalls a request.

use slog::{o, Drain, Logger};

use crate::config::LogFormat;

/// Builds the root logger. Keep the returned guard-free `Logger` for the
/// life of the process; records are flushed when it is dropped.
pub fn root(format: LogFormat, level: slog::Level) -> Logger {
    let drain = match format {
        LogFormat::Json => {
            let json = slog_json::Json::new(std::io::stderr()).add_default_keys().build().fuse();
            slog_async::Async::new(json).chan_size(4096).build().fuse()
        }
        LogFormat::Text => {
            let dec = slog_term::PlainSyncDecorator::new(std::io::stderr());
            let term = slog_term::FullFormat::new(dec).build().fuse();
            slog_async::Async::new(term).chan_size(4096).build().fuse()
        }
    };
    Logger::root(drain.filter_level(level).fuse(), o!("source" => "bosun", "pid" => std::process::id()))
}

/// A logger that drops everything, for tests and library callers.
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}
