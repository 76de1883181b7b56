//! Reading a registry's responses: header values, and bodies copied out in large chunks.

use std::io::Read;

use ureq::http::{HeaderMap, Response};

pub type HttpResponse = Response<ureq::Body>;

/// A header's value as text.
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// Reads a response body into a writer in large chunks, counting bytes.
pub fn copy_body(
    resp: HttpResponse,
    out: &mut impl std::io::Write,
    mut progress: impl FnMut(u64),
) -> Result<u64, std::io::Error> {
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 17];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
        progress(n as u64);
    }
}
