//! libbpf writes to stderr unless told otherwise; the library never prints.

use std::sync::Once;

use libbpf_rs::PrintLevel;

/// Sends libbpf's messages to the `log` facade (target `libbpf`), once per process.
pub(crate) fn route() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        fn forward(level: PrintLevel, msg: String) {
            let msg = msg.trim_end();
            match level {
                PrintLevel::Warn => log::warn!(target: "libbpf", "{msg}"),
                PrintLevel::Info => log::info!(target: "libbpf", "{msg}"),
                PrintLevel::Debug => log::debug!(target: "libbpf", "{msg}"),
            }
        }
        libbpf_rs::set_print(Some((PrintLevel::Debug, forward)));
    });
}
