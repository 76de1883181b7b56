//! A repository's tags (`GET /v2/<name>/tags/list`), page after page as the registry's `Link`
//! header says (`?n=` and `last=`). Every page is capped in size ([`MAX_PAGE_BYTES`]) and
//! bounded in time (`--timeout`); there are at most [`MAX_PAGES`] of them, holding at most
//! [`MAX_TOTAL_BYTES`] in all; and a next page must be on the registry itself (credentials go
//! nowhere else) and must not be one already read.

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use ureq::http::Method;

use super::client::Body;
use super::errors::describe;
use super::repository::Repository;
use super::response::header;
use super::status_error;

/// The largest page of tags we read: 4 MiB is some 100,000 tags.
pub const MAX_PAGE_BYTES: u64 = 4 << 20;
/// The most pages we follow.
pub const MAX_PAGES: usize = 1000;
/// The most bytes of pages we read in all (the tags are kept in memory).
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Every tag of the repository, in the order the registry lists them. `page_size` asks for
/// pages of that many tags (`?n=`); the registry may ignore it.
pub fn list(repo: &Repository, page_size: Option<u32>) -> Result<Vec<String>> {
    let registry = repo.registry;
    let first = match page_size {
        Some(n) => format!("{}/tags/list?n={n}", repo.name),
        None => format!("{}/tags/list", repo.name),
    };
    let mut url = registry.url(&first);
    let own = registry.url("");
    let mut tags = Vec::new();
    let mut total = 0u64;
    let mut seen_urls = std::collections::HashSet::new();
    for _ in 0..MAX_PAGES {
        if !seen_urls.insert(url.clone()) {
            bail!("the registry's tag pages go round in a loop ({url})");
        }
        let mut resp = registry.send(Method::GET, &url, repo.scope(), &[], Body::Empty, || {})?;
        if resp.status().as_u16() != 200 {
            return Err(status_error(resp, registry.has_credentials()));
        }
        let next = header(resp.headers(), "link").and_then(|l| next_link(&l));
        let too_big =
            || anyhow!("a page of tags is larger than {} MiB, the most we accept", MAX_PAGE_BYTES >> 20);
        if header(resp.headers(), "content-length")
            .and_then(|l| l.trim().parse::<u64>().ok())
            .is_some_and(|n| n > MAX_PAGE_BYTES)
        {
            return Err(too_big());
        }
        let bytes =
            resp.body_mut().with_config().limit(MAX_PAGE_BYTES).read_to_vec().map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => too_big(),
                e => anyhow!("reading the tag list: {}", describe(&e, &registry.options.timeouts)),
            })?;
        total += bytes.len() as u64;
        if total > MAX_TOTAL_BYTES {
            bail!("the tag list is larger than {} MiB in all; stopped", MAX_TOTAL_BYTES >> 20);
        }
        let page: Page = serde_json::from_slice(&bytes).context("malformed tag list")?;
        tags.extend(page.tags.unwrap_or_default());
        let Some(next) = next else { return Ok(tags) };
        let resolved = super::location::resolve(&url, &next);
        if !resolved.starts_with(&own) {
            bail!("the registry's next page of tags is elsewhere ({resolved}); not followed");
        }
        url = resolved;
    }
    bail!("more than {MAX_PAGES} pages of tags; stopped")
}

/// The target of a `Link` header's `rel="next"` (`</v2/r/tags/list?last=b&n=2>; rel="next"`).
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_next_link() {
        assert_eq!(
            next_link(r#"</v2/r/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/r/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"<a>; rel="prev", <b>; rel="next""#).as_deref(), Some("b"));
        assert_eq!(next_link("<a>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }
}
