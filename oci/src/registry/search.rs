//! `search`: Docker Hub's search API for `docker.io`, and the registry's `_catalog` (every
//! repository, following `Link` pages) filtered by the term everywhere else.
//!
//! A term `HOST/WORD` (where `HOST` has a `.` or `:` or is `localhost`) searches `HOST`'s
//! catalog for repositories whose name contains `WORD`; a plain `WORD` searches Docker Hub.

use std::io::Read;

use reqwest::header::LINK;

use super::Registries;
use super::client::Request;
use crate::error::{Error, Result};

/// The most catalog pages followed.
const MAX_PAGES: usize = 100;
/// The largest response read.
const MAX_BODY: u64 = 16 << 20;

/// One search result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    /// The repository (`busybox`, `127.0.0.1:5000/x`).
    pub name: String,
    /// The description (Docker Hub only).
    pub description: String,
    /// Stars (Docker Hub only).
    pub stars: u64,
    /// Official image (Docker Hub only).
    pub official: bool,
}

/// Splits a term into (registry, word).
pub fn split_term(term: &str) -> (Option<&str>, &str) {
    match term.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, term),
    }
}

fn read_json(resp: reqwest::blocking::Response, what: &str) -> Result<serde_json::Value> {
    let mut buf = Vec::new();
    resp.take(MAX_BODY)
        .read_to_end(&mut buf)
        .map_err(Error::io(what.to_string()))?;
    serde_json::from_slice(&buf).map_err(|e| Error::json(what, e))
}

/// The next page of a `Link: </v2/_catalog?...>; rel="next"` header.
fn next_link(resp: &reqwest::blocking::Response) -> Option<String> {
    let v = resp.headers().get(LINK)?.to_str().ok()?;
    let (target, params) = v.split_once(';')?;
    if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
        return None;
    }
    Some(
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string(),
    )
}

/// Searches (see the module docs), at most `limit` results.
///
/// # Errors
///
/// Registry errors (a registry without `_catalog` answers 404 or 401).
pub fn search(registries: &Registries, term: &str, limit: usize) -> Result<Vec<SearchResult>> {
    let (registry, word) = split_term(term);
    let Some(host) = registry else {
        let client = registries.client("index.docker.io")?;
        let mut u = client.absolute("/v1/search")?;
        u.query_pairs_mut()
            .append_pair("q", word)
            .append_pair("n", &limit.to_string());
        let resp = client.send_ok(&Request::get(u.to_string(), ""), "search")?;
        let v = read_json(resp, "Docker Hub search response")?;
        let results = v.get("results").and_then(|r| r.as_array()).cloned();
        return Ok(results
            .unwrap_or_default()
            .iter()
            .take(limit)
            .map(|r| SearchResult {
                name: r.get("name").and_then(|x| x.as_str()).unwrap_or("").into(),
                description: r
                    .get("description")
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .into(),
                stars: r.get("star_count").and_then(|x| x.as_u64()).unwrap_or(0),
                official: r
                    .get("is_official")
                    .and_then(|x| x.as_bool())
                    .unwrap_or(false),
            })
            .collect());
    };
    let client = registries.client(host)?;
    let mut url = "/v2/_catalog?n=1000".to_string();
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let resp = client.send_ok(
            &Request::get(&url, "registry:catalog:*"),
            &format!("catalog of {host}"),
        )?;
        let next = next_link(&resp);
        let v = read_json(resp, &format!("catalog of {host}"))?;
        let names = v.get("repositories").and_then(|r| r.as_array()).cloned();
        for n in names.unwrap_or_default().iter().filter_map(|n| n.as_str()) {
            if n.contains(word) && out.len() < limit {
                out.push(SearchResult {
                    name: format!("{host}/{n}"),
                    description: String::new(),
                    stars: 0,
                    official: false,
                });
            }
        }
        match next {
            Some(n) if out.len() < limit => url = n,
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms() {
        assert_eq!(split_term("busybox"), (None, "busybox"));
        assert_eq!(
            split_term("localhost:5000/app"),
            (Some("localhost:5000"), "app")
        );
        assert_eq!(split_term("myorg/app"), (None, "myorg/app"));
    }
}
