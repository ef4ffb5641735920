//! Logging: human-readable lines on stderr, filtered by `RUST_LOG` (default:
//! info); colours only when stderr is a terminal, so a container platform's log
//! collector gets plain text.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
