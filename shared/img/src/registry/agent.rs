//! The HTTP agent a registry is reached with: its TLS verification, time limits and headers,
//! and no redirects of its own (the client follows them, deciding what each hop may carry).

use super::timeouts::Timeouts;
use super::tls::Verify;

pub(super) fn agent(verify: Verify, timeouts: &Timeouts) -> ureq::Agent {
    use ureq::tls::{RootCerts, TlsConfig};
    let tls = match verify {
        Verify::Default => TlsConfig::builder().build(),
        Verify::Roots(roots) => TlsConfig::builder().root_certs(RootCerts::Specific(roots)).build(),
        Verify::Off => TlsConfig::builder().disable_verification(true).build(),
    };
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Redirects are followed in `send_once`, which decides what each hop may carry.
        .max_redirects(0)
        .timeout_connect(timeouts.connect)
        .timeout_resolve(timeouts.connect)
        .timeout_per_read(timeouts.read)
        .timeout_per_write(timeouts.read)
        // Requests made without a budget of their own (`/v2/`, tokens) are documents.
        .timeout_global(timeouts.document)
        .user_agent(concat!("img/", env!("CARGO_PKG_VERSION")))
        .accept("")
        .accept_encoding("identity")
        .tls_config(tls)
        .build()
        .new_agent()
}
