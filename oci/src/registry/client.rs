//! The HTTP side of the distribution API: one [`Client`] per registry host.
//!
//! - **Scheme**: https, except for `localhost`, loopback addresses and insecure registries,
//!   where https is tried first and plain http used when the TLS connection fails (as docker).
//!   Insecure registries' certificates are not verified either.
//! - **TLS**: the system bundle plus every `*.crt` in `/etc/containers/certs.d/<host>/` and
//!   `/etc/docker/certs.d/<host>/`; a `NAME.cert` + `NAME.key` pair there is the client
//!   certificate presented to registries that ask for one (docker's layout).
//! - **Auth**: a request goes out anonymously (or with the token already held for its scope);
//!   a 401 is answered from its `WWW-Authenticate` challenge: Basic with the registry's
//!   credential, or a Bearer token fetched from the challenge's realm for the request's scope
//!   (`repository:NAME:pull[,push]`), then the request is sent once more.
//! - **Redirects** are followed by hand (at most 10), and an `Authorization` header only ever
//!   goes to the registry's own host: never to a blob store a redirect points at.
//! - **Retries**: transport errors, 429 and 5xx (but 501) are retried with exponential backoff
//!   for idempotent requests.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use reqwest::Url;
use reqwest::blocking::{Body as HttpBody, Response};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};

use super::challenge;
use super::credentials::Credential;
use crate::error::{Error, Result};

/// Where per-registry CA certificates are looked up, `<dir>/<host[:port]>/*.crt`.
pub const CERTS_DIRS: &[&str] = &["/etc/containers/certs.d", "/etc/docker/certs.d"];
/// The system CA bundle (Debian's).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;
/// The largest token-server response read.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// Settings shared by every registry client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Registries (host or host:port) where plain http is allowed.
    pub insecure: Vec<String>,
    /// Directories searched for `<host>/*.crt` (and client `*.cert` + `*.key` pairs).
    pub certs_dirs: Vec<PathBuf>,
    /// A directory laid out as a `certs_dirs` host directory, used instead of their lookup
    /// (`--cert-dir`, as podman's).
    pub cert_dir: Option<PathBuf>,
    /// Attempts after the first for transient failures.
    pub retries: u32,
    /// The first backoff delay (doubled each attempt).
    pub backoff: Duration,
    /// How long a request without a body may wait for the response headers, and any read of
    /// a response body for its next bytes: a registry that stalls mid-download is then a
    /// transient failure (retried, resuming where the registry allows), never a hang.
    pub read_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure: Vec::new(),
            certs_dirs: CERTS_DIRS.iter().map(PathBuf::from).collect(),
            cert_dir: None,
            retries: 4,
            backoff: Duration::from_millis(250),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A request body that can be sent again (retries, redirects, re-authentication).
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(Arc<Vec<u8>>),
    /// `len` bytes of a file from `offset`.
    File {
        /// The file.
        path: PathBuf,
        /// Where the body starts.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

impl Body {
    fn to_http(&self) -> std::io::Result<Option<HttpBody>> {
        Ok(match self {
            Body::Empty => None,
            Body::Bytes(b) => Some(HttpBody::from(b.as_ref().clone())),
            Body::File { path, offset, len } => {
                // Read into memory: reqwest's blocking client streams a reader in 8 KiB pieces
                // through a channel, far slower than one buffer (push bounds the size).
                use std::io::{Seek, SeekFrom};
                let mut f = fs::File::open(path)?;
                f.seek(SeekFrom::Start(*offset))?;
                let mut buf = Vec::with_capacity(usize::try_from(*len).unwrap_or(0));
                f.take(*len).read_to_end(&mut buf)?;
                if buf.len() as u64 != *len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{} is shorter than expected", path.display()),
                    ));
                }
                Some(HttpBody::from(buf))
            }
        })
    }
}

/// One request to a registry.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// A path (`/v2/...`) on the registry, or an absolute URL (upload locations).
    pub url: String,
    /// The auth scope (`repository:x:pull`; several space-separated), empty for none.
    pub scope: String,
    /// Extra headers.
    pub headers: Vec<(HeaderName, String)>,
    /// The body.
    pub body: Body,
    /// Whether the request may be retried on transient errors.
    pub idempotent: bool,
}

impl Request {
    /// A GET of `url` in `scope`.
    pub fn get(url: impl Into<String>, scope: &str) -> Request {
        Request::new(Method::GET, url, scope)
    }

    /// A request with no body or extra headers.
    pub fn new(method: Method, url: impl Into<String>, scope: &str) -> Request {
        let idempotent = !matches!(method, Method::PATCH);
        Request {
            method,
            url: url.into(),
            scope: scope.to_string(),
            headers: Vec::new(),
            body: Body::Empty,
            idempotent,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }
}

/// The client of one registry.
#[derive(Debug)]
pub struct Client {
    domain: String,
    api_host: String,
    allow_http: bool,
    base: OnceLock<String>,
    /// For requests with a body (uploads): no timeout while the body is sent, however long;
    /// a peer that stops acknowledging it fails through TCP_USER_TIMEOUT.
    http: reqwest::blocking::Client,
    /// For requests without a body: `read_timeout` on the headers and on every body read.
    http_read: reqwest::blocking::Client,
    cred: Option<Credential>,
    tokens: Mutex<HashMap<String, String>>,
    basic: AtomicBool,
    config: ClientConfig,
}

/// Whether `host` (no port) is a loopback name or address.
fn is_local(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` of a URL, as registries are keyed.
pub fn host_port(u: &Url) -> String {
    let host = u.host_str().unwrap_or_default();
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The TLS material of a registry host, laid out as docker's `certs.d`: every `*.crt` is an extra
/// CA root; `NAME.cert` with `NAME.key` is a client certificate and its private key (the first
/// pair, by name, is presented when the registry asks for one).
#[derive(Default)]
struct HostTls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

/// The TLS material of `host`: from `cert_dir` when given, else from each `<dir>/<host>/` of
/// `dirs`. As docker, a `.cert` without its `.key` (or a `.key` without its `.cert`) is an
/// error.
fn host_tls(dirs: &[PathBuf], cert_dir: Option<&Path>, host: &str) -> Result<HostTls> {
    let mut out = HostTls::default();
    let dirs: Vec<PathBuf> = match cert_dir {
        Some(d) => vec![d.to_path_buf()],
        None => dirs.iter().map(|d| d.join(host)).collect(),
    };
    for d in dirs {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in &files {
            let ext = f.extension().and_then(|e| e.to_str());
            match ext {
                Some("crt") => out.roots.extend(read_certs(f)?),
                Some("cert") => {
                    let key = f.with_extension("key");
                    if !key.exists() {
                        return Err(Error::Registry {
                            context: format!("client certificate {}", f.display()),
                            message: format!(
                                "missing key {} (CA certificates must use the extension .crt)",
                                key.display()
                            ),
                        });
                    }
                    if out.identity.is_none() {
                        out.identity = Some(read_identity(f, &key)?);
                    }
                }
                Some("key") if !f.with_extension("cert").exists() => {
                    return Err(Error::Registry {
                        context: format!("client key {}", f.display()),
                        message: format!(
                            "missing client certificate {}",
                            f.with_extension("cert").display()
                        ),
                    });
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// A client certificate (chain) and its private key, both PEM.
fn read_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity> {
    let mut pem = fs::read(cert).map_err(Error::io(format!("reading {}", cert.display())))?;
    pem.push(b'\n');
    pem.extend(fs::read(key).map_err(Error::io(format!("reading {}", key.display())))?);
    reqwest::Identity::from_pem(&pem).map_err(|e| Error::Registry {
        context: format!("client certificate {}", cert.display()),
        message: format!("with key {}: {}", key.display(), full_error(&e)),
    })
}

/// The system bundle's certificates (added next to the built-in roots).
fn system_certs() -> Vec<reqwest::Certificate> {
    fs::read(SYSTEM_BUNDLE)
        .ok()
        .and_then(|b| reqwest::Certificate::from_pem_bundle(&b).ok())
        .unwrap_or_default()
}

fn read_certs(f: &Path) -> Result<Vec<reqwest::Certificate>> {
    let bytes = fs::read(f).map_err(Error::io(format!("reading {}", f.display())))?;
    let bad = |m: String| Error::Registry {
        context: format!("CA certificate {}", f.display()),
        message: m,
    };
    let certs = reqwest::Certificate::from_pem_bundle(&bytes).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The causes of a request's error, without the request's URL (a host name must not count as
/// a word of the error).
fn causes(e: &reqwest::Error) -> String {
    std::error::Error::source(e)
        .map(|c| full_error(c).to_lowercase())
        .unwrap_or_default()
}

/// Whether a failed https request's error shows a TLS server at the other end: a certificate
/// error, or a TLS alert it sent.
fn speaks_tls(e: &reqwest::Error) -> bool {
    let c = causes(e);
    c.contains("certificate") || c.contains("alert")
}

/// What to add to an error where the registry's TLS server refused us with an alert about our
/// (missing or unknown) certificate.
fn refused_tls_hint(e: &reqwest::Error, host: &str) -> String {
    let c = causes(e);
    if c.contains("alert: badcertificate") || c.contains("alert: certificaterequired") {
        format!(
            " (the registry wants a client certificate it trusts: NAME.cert and NAME.key in \
             /etc/docker/certs.d/{host}/, or in the --cert-dir directory)"
        )
    } else {
        String::new()
    }
}

/// The message a registry put in its error body (`{"errors":[{"code","message"}]}`), or the
/// start of the body.
pub fn error_text(status: StatusCode, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(errs) = v.get("errors").and_then(|e| e.as_array())
    {
        let parts: Vec<String> = errs
            .iter()
            .map(|e| {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                format!("{} {}", code.to_lowercase(), msg)
                    .trim()
                    .to_string()
            })
            .collect();
        if !parts.is_empty() {
            return format!("{status}: {}", parts.join("; "));
        }
    }
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    let text = text.trim();
    if text.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {text}")
    }
}

fn transient_status(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || (s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED)
}

impl Client {
    /// A client for the registry of a reference's domain (`docker.io` talks to
    /// `registry-1.docker.io`).
    ///
    /// # Errors
    ///
    /// Unreadable CA certificates, an HTTP client that cannot be built.
    pub fn new(domain: &str, cred: Option<Credential>, config: ClientConfig) -> Result<Client> {
        let api_host = if domain == strata_cas::reference::DEFAULT_DOMAIN {
            "registry-1.docker.io".to_string()
        } else {
            domain.to_string()
        };
        let listed = config.insecure.contains(&api_host);
        let allow_http = is_local(&api_host) || listed;
        let tls = host_tls(&config.certs_dirs, config.cert_dir.as_deref(), &api_host)?;
        let certs: Vec<_> = system_certs().into_iter().chain(tls.roots).collect();
        // The blocking client's timeout bounds the wait for the response (the whole upload
        // included) and each read of the body.
        let build = |timeout: Option<Duration>| {
            let mut b = reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(30))
                .tcp_user_timeout(config.read_timeout)
                .timeout(timeout)
                .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")));
            if listed {
                // As docker's insecure registries: their certificates are not verified either.
                b = b.danger_accept_invalid_certs(true);
            }
            for c in &certs {
                b = b.add_root_certificate(c.clone());
            }
            if let Some(id) = &tls.identity {
                b = b.identity(id.clone());
            }
            b.build().map_err(|e| Error::Registry {
                context: format!("registry {domain}"),
                message: format!("cannot set up the HTTP client: {e}"),
            })
        };
        let http = build(None)?;
        let http_read = build(Some(config.read_timeout))?;
        Ok(Client {
            domain: domain.to_string(),
            api_host,
            allow_http,
            base: OnceLock::new(),
            http,
            http_read,
            cred,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
            config,
        })
    }

    /// The registry domain this client talks to.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether a credential is configured.
    pub fn has_credential(&self) -> bool {
        self.cred.is_some()
    }

    fn ctx(&self) -> String {
        format!("registry {}", self.domain)
    }

    /// `https://host`, or `http://host` for an insecure/local registry without TLS.
    fn base(&self) -> Result<&str> {
        if let Some(b) = self.base.get() {
            return Ok(b);
        }
        let https = format!("https://{}", self.api_host);
        let chosen = if self.allow_http {
            // Bounded: a server that never answers the TLS handshake must not hang the probe.
            let probe = self
                .http
                .get(format!("{https}/v2/"))
                .timeout(Duration::from_secs(15))
                .send();
            match probe {
                Ok(_) => https,
                // A TLS server that refuses us or whose certificate we refuse (a certificate
                // error, a TLS alert: a client certificate it requires) stays https, so the
                // error says so.
                Err(e) if speaks_tls(&e) => https,
                Err(_) => format!("http://{}", self.api_host),
            }
        } else {
            https
        };
        Ok(self.base.get_or_init(|| chosen))
    }

    /// The absolute URL of a registry path (`/v2/...`); absolute URLs are returned as they are.
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] for an unparsable URL.
    pub fn absolute(&self, u: &str) -> Result<Url> {
        let full = if u.starts_with("http://") || u.starts_with("https://") {
            u.to_string()
        } else {
            format!("{}{u}", self.base()?)
        };
        Url::parse(&full).map_err(|e| Error::Registry {
            context: self.ctx(),
            message: format!("invalid URL {full:?}: {e}"),
        })
    }

    fn auth_header(&self, scope: &str) -> Option<String> {
        if let Ok(t) = self.tokens.lock()
            && let Some(tok) = t.get(scope)
        {
            return Some(format!("Bearer {tok}"));
        }
        if self.basic.load(Ordering::Relaxed) {
            return self.cred.as_ref().map(Credential::basic);
        }
        None
    }

    /// Answers a 401's challenges for `scope`: fetches a token or switches to Basic.
    fn authenticate(&self, headers: &HeaderMap, scope: &str) -> Result<()> {
        let mut challenges = Vec::new();
        for v in headers.get_all(reqwest::header::WWW_AUTHENTICATE) {
            if let Ok(s) = v.to_str() {
                challenges.extend(challenge::parse(s));
            }
        }
        let unauthorized = |m: &str| Error::Unauthorized {
            context: self.ctx(),
            message: m.to_string(),
        };
        if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.fetch_token(b, scope)?;
            if let Ok(mut t) = self.tokens.lock() {
                t.insert(scope.to_string(), token);
            }
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            if self.cred.is_none() {
                return Err(unauthorized(
                    "authentication required (401 Unauthorized); run `strata login` first",
                ));
            }
            if self.basic.swap(true, Ordering::Relaxed) {
                return Err(unauthorized(
                    "401 Unauthorized: the registry refused the credentials (wrong user name or password?)",
                ));
            }
            return Ok(());
        }
        Err(unauthorized(
            "401 Unauthorized without a usable WWW-Authenticate challenge",
        ))
    }

    fn fetch_token(&self, ch: &challenge::Challenge, scope: &str) -> Result<String> {
        let fail = |m: String| Error::Unauthorized {
            context: self.ctx(),
            message: m,
        };
        let realm = ch
            .param("realm")
            .ok_or_else(|| fail("Bearer challenge without a realm".into()))?;
        let mut url = Url::parse(realm).map_err(|e| fail(format!("bad realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = ch.param("service") {
                q.append_pair("service", s);
            }
            // A request's scope may name several (space-separated): one parameter each.
            let mut scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
            if let Some(s) = ch.param("scope")
                && !scopes.contains(&s)
            {
                scopes.push(s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut last = String::new();
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                thread::sleep(self.config.backoff * 2u32.saturating_pow(attempt - 1));
            }
            let mut rb = self.http_read.get(url.clone());
            if let Some(c) = &self.cred {
                rb = rb.header(AUTHORIZATION, c.basic());
            }
            let resp = match rb.send() {
                Ok(r) => r,
                Err(e) => {
                    last = format!("token server {realm}: {e}");
                    continue;
                }
            };
            let status = resp.status();
            let mut body = Vec::new();
            let read = resp.take(MAX_TOKEN_RESPONSE).read_to_end(&mut body);
            if transient_status(status) || read.is_err() {
                last = format!("token server {realm}: {}", error_text(status, &body));
                continue;
            }
            if !status.is_success() {
                return Err(fail(format!(
                    "token server {realm}: {}",
                    error_text(status, &body)
                )));
            }
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| fail(format!("token server {realm}: invalid response: {e}")))?;
            let tok = v
                .get("token")
                .or_else(|| v.get("access_token"))
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| fail(format!("token server {realm}: no token in the response")))?;
            return Ok(tok.to_string());
        }
        Err(fail(last))
    }

    /// Sends a request once (auth and redirects included); transport errors are returned.
    fn once(&self, req: &Request) -> Result<std::result::Result<Response, reqwest::Error>> {
        let mut url = self.absolute(&req.url)?;
        let mut method = req.method.clone();
        let mut body = req.body.clone();
        let registry_host = host_port(&self.absolute("/v2/")?);
        let mut reauthed = false;
        let mut redirects = 0;
        loop {
            let own_host = host_port(&url) == registry_host;
            let b = body.to_http().map_err(Error::io(format!(
                "reading the body of {} {url}",
                req.method
            )))?;
            let http = if b.is_some() {
                &self.http
            } else {
                &self.http_read
            };
            let mut rb = http.request(method.clone(), url.clone());
            for (k, v) in &req.headers {
                let v = HeaderValue::from_str(v).map_err(|e| Error::Registry {
                    context: self.ctx(),
                    message: format!("invalid header value for {k}: {e}"),
                })?;
                rb = rb.header(k.clone(), v);
            }
            if own_host && let Some(a) = self.auth_header(&req.scope) {
                rb = rb.header(AUTHORIZATION, a);
            }
            rb = match b {
                Some(b) => rb.body(b),
                None if method == Method::PUT || method == Method::POST => {
                    rb.header(reqwest::header::CONTENT_LENGTH, "0")
                }
                None => rb,
            };
            let resp = match rb.send() {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && own_host && !reauthed {
                reauthed = true;
                self.authenticate(resp.headers(), &req.scope)?;
                continue;
            }
            if status.is_redirection()
                && let Some(loc) = resp.headers().get(LOCATION)
            {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(Error::Registry {
                        context: self.ctx(),
                        message: format!("more than {MAX_REDIRECTS} redirects for {}", req.url),
                    });
                }
                let loc = loc.to_str().unwrap_or("");
                url = url.join(loc).map_err(|e| Error::Registry {
                    context: self.ctx(),
                    message: format!("invalid redirect location {loc:?}: {e}"),
                })?;
                if status == StatusCode::SEE_OTHER {
                    method = Method::GET;
                    body = Body::Empty;
                }
                continue;
            }
            return Ok(Ok(resp));
        }
    }

    /// Sends a request: auth, redirects, and retries of transient failures. Any final status
    /// is returned (callers check it); only transport failures after the last retry are errors.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthorized`] when auth fails, [`Error::Registry`] for transport errors.
    pub fn send(&self, req: &Request) -> Result<Response> {
        let attempts = if req.idempotent {
            self.config.retries + 1
        } else {
            1
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            match self.once(req)? {
                Ok(resp) if transient_status(resp.status()) && !last => {}
                Ok(resp) => return Ok(resp),
                // A certificate refused either way is no transient failure.
                Err(e) if !last && !speaks_tls(&e) => {}
                Err(e) => {
                    return Err(Error::Registry {
                        context: self.ctx(),
                        message: format!(
                            "{} {}: {}{}",
                            req.method,
                            req.url,
                            full_error(&e),
                            refused_tls_hint(&e, &self.api_host)
                        ),
                    });
                }
            }
            self.sleep(attempt);
        }
    }

    /// Sleeps the backoff before attempt `attempt + 1`.
    pub fn sleep(&self, attempt: u32) {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(10));
        thread::sleep(self.config.backoff * factor);
    }

    /// How many attempts a transient failure gets.
    pub fn attempts(&self) -> u32 {
        self.config.retries + 1
    }

    /// Sends a request and fails unless the status is a success; returns the response.
    ///
    /// # Errors
    ///
    /// As [`Client::send`], and [`Error::Registry`]/[`Error::Unauthorized`] for a failure
    /// status, with the registry's message.
    pub fn send_ok(&self, req: &Request, what: &str) -> Result<Response> {
        let resp = self.send(req)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.status_error(resp, what))
    }

    /// The error for a failure response.
    pub fn status_error(&self, resp: Response, what: &str) -> Error {
        let status = resp.status();
        let mut body = Vec::new();
        let _ = resp.take(64 << 10).read_to_end(&mut body);
        let text = error_text(status, &body);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            Error::Unauthorized {
                context: format!("{what} ({})", self.domain),
                message: text,
            }
        } else {
            Error::Registry {
                context: format!("{what} ({})", self.domain),
                message: text,
            }
        }
    }

    /// Checks that the registry answers the API (`GET /v2/`) with the credential, as `login`.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthorized`] for refused credentials, transport errors.
    pub fn ping(&self) -> Result<()> {
        self.send_ok(&Request::get("/v2/", ""), "GET /v2/")?;
        Ok(())
    }
}

/// An error with its sources (reqwest's Display hides the cause).
pub fn full_error(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs openssl in `dir`.
    fn openssl(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "openssl {args:?}");
    }

    #[test]
    fn certs_d_lookup_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        openssl(
            p,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ]
            .into_iter()
            .chain([
                "-subj",
                "/CN=strata-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ])
            .collect::<Vec<_>>(),
        );
        openssl(
            p,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ]
            .into_iter()
            .chain(["-nodes", "-days", "2", "-subj", "/CN=client"])
            .chain(["-keyout", "client.key", "-out", "client.pem"])
            .collect::<Vec<_>>(),
        );
        let host_dir = p.join("certs.d/reg.example:5000");
        fs::create_dir_all(&host_dir).unwrap();
        fs::copy(p.join("ca.pem"), host_dir.join("ca.crt")).unwrap();
        let dirs = [p.join("certs.d")];
        let t = host_tls(&dirs, None, "reg.example:5000").unwrap();
        assert_eq!((t.roots.len(), t.identity.is_some()), (1, false));
        assert_eq!(host_tls(&dirs, None, "other:5000").unwrap().roots.len(), 0);
        assert_eq!(
            host_tls(&dirs, Some(&host_dir), "any").unwrap().roots.len(),
            1
        );

        // A client certificate and its key.
        fs::copy(p.join("client.pem"), host_dir.join("client.cert")).unwrap();
        let e = host_tls(&dirs, None, "reg.example:5000").err().unwrap();
        assert!(e.to_string().contains("missing key"), "{e}");
        assert!(e.to_string().contains("client.key"), "{e}");
        fs::copy(p.join("client.key"), host_dir.join("client.key")).unwrap();
        let t = host_tls(&dirs, None, "reg.example:5000").unwrap();
        assert_eq!((t.roots.len(), t.identity.is_some()), (1, true));
        // A key without its certificate; a key that is not one.
        fs::write(host_dir.join("other.key"), "x").unwrap();
        let e = host_tls(&dirs, None, "reg.example:5000").err().unwrap();
        assert!(e.to_string().contains("missing client certificate"), "{e}");
        fs::copy(p.join("client.pem"), host_dir.join("other.cert")).unwrap();
        fs::remove_file(host_dir.join("client.cert")).unwrap();
        fs::remove_file(host_dir.join("client.key")).unwrap();
        let e = host_tls(&dirs, None, "reg.example:5000").err().unwrap();
        assert!(e.to_string().contains("other.cert"), "{e}");

        fs::remove_file(host_dir.join("other.cert")).unwrap();
        fs::remove_file(host_dir.join("other.key")).unwrap();
        fs::write(host_dir.join("bad.crt"), "garbage").unwrap();
        let e = host_tls(&dirs, None, "reg.example:5000").err().unwrap();
        assert!(e.to_string().contains("bad.crt"), "{e}");
    }

    /// The words of a request's URL are not read as the error's: a refused connection to a
    /// path naming "alert" and "certificate" is no TLS server, and gets no certificate hint.
    #[test]
    fn tls_words_come_from_the_error_not_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = reqwest::blocking::Client::new()
            .get(format!("http://127.0.0.1:{port}/alert/BadCertificate"))
            .send()
            .unwrap_err();
        assert!(full_error(&e).contains("BadCertificate"));
        assert!(!speaks_tls(&e), "{}", full_error(&e));
        assert_eq!(refused_tls_hint(&e, "h"), "");
    }

    #[test]
    fn local_hosts() {
        assert!(is_local("localhost:5000"));
        assert!(is_local("127.0.0.1:5000"));
        assert!(is_local("[::1]:5000"));
        assert!(!is_local("ghcr.io"));
        assert!(!is_local("10.0.0.1:5000"));
    }

    #[test]
    fn registry_error_text() {
        let t = error_text(
            StatusCode::NOT_FOUND,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(t, "404 Not Found: manifest_unknown manifest unknown");
    }
}
