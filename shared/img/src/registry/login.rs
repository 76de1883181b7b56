//! Checking a login before it is stored (img-login): `GET /v2/` with the credentials, through
//! [`Registry::send`] like every other request, so they go only where that sends them: Basic to
//! the registry itself, or the token flow with the realm the registry's own challenge named.

use anyhow::{Result, bail};
use ureq::http::Method;

use super::{Body, Registry, status_error};

/// Whether the registry accepts the credentials it was connected with. A registry that asks
/// for none accepts any (as `docker login` does, the login is stored anyway).
pub fn verify(registry: &Registry) -> Result<()> {
    if !registry.has_credentials() {
        bail!("no credentials to check");
    }
    let url = registry.url("");
    let resp = registry.send(Method::GET, &url, "", &[], Body::Empty, || {})?;
    match resp.status().as_u16() {
        200..=299 => Ok(()),
        _ => Err(status_error(resp, true)),
    }
}
