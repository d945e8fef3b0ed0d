//! Where the library's warnings and notices go. The library never prints them itself: it
//! sends them through the `log` crate, and a program (the CLI, a notebook's
//! `Settings::from_env`) installs this logger to show them on standard error, which a notebook
//! shows under the cell. A program with a logger of its own keeps it.

use std::io::Write;

/// Installs fastvision's logger: warnings as `warning: ...`, notices (a download starting) as
/// they are, on standard error. `RUST_LOG` filters as usual (`RUST_LOG=error` hides the
/// warnings). Does nothing when a logger is already installed, so it is safe to call twice.
///
/// ```
/// fastvision::show::logging::init();
/// fastvision::show::logging::init(); // the second call changes nothing
/// log::warn!("shown on stderr as `warning: ...`");
/// ```
pub fn init() {
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .parse_env("RUST_LOG")
        .format(|buf, record| match record.level() {
            log::Level::Error => writeln!(buf, "error: {}", record.args()),
            log::Level::Warn => writeln!(buf, "warning: {}", record.args()),
            _ => writeln!(buf, "{}", record.args()),
        })
        .try_init();
}
