//! A registry client for the OCI distribution API v2: manifests and blobs,
//! anonymous, HTTP basic, and the bearer-token flow
//! (`WWW-Authenticate: Bearer realm=,service=,scope=`); redirects (blob
//! stores), bounded retries with backoff on 5xx, 429 and connection
//! failures; a stall bound on every wait for the network.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use super::reference::Reference;

/// How registries are reached: from configuration.
#[derive(Clone, Debug, Default)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) spoken to in plain HTTP.
    pub insecure: Vec<String>,
    /// Credentials by registry host.
    pub auths: HashMap<String, Credentials>,
    /// Bound on any wait for the registry: connect, headers, each read.
    pub stall_timeout: Duration,
    /// Retries after a failed attempt (5xx, 429, connection failure).
    pub retries: u32,
    /// Bound on one pull in all (`--image-pull-timeout`).
    pub pull_timeout: Duration,
    /// The HTTP proxy registries are reached through, if any.
    pub proxy: Option<super::proxy::Proxy>,
    /// Hosts reached directly all the same.
    pub no_proxy: super::proxy::NoProxy,
    /// Registries' mirrors and blocks.
    pub mirrors: super::mirrors::Mirrors,
}

/// A user and password (never logged: Debug prints the user only).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User.
    pub user: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <redacted>)", self.user)
    }
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Not reachable, failing, or stalled.
    #[error("registry {registry} unavailable: {reason}")]
    Unavailable {
        /// The registry.
        registry: String,
        /// What happened.
        reason: String,
    },
    /// No such repository, tag or blob.
    #[error("{what} not found in registry {registry}")]
    NotFound {
        /// The registry.
        registry: String,
        /// What was asked for.
        what: String,
    },
    /// Credentials missing or refused.
    #[error("registry {registry} refused access: {reason}")]
    Denied {
        /// The registry.
        registry: String,
        /// What it said.
        reason: String,
    },
    /// TLS refused the registry (its certificate does not verify).
    #[error("registry {registry} is not trusted: {reason}")]
    Untrusted {
        /// The registry.
        registry: String,
        /// What TLS said.
        reason: String,
    },
    /// Content that is wrong: over a cap, a digest mismatch, bad JSON.
    #[error("registry {registry}: {reason}")]
    BadContent {
        /// The registry.
        registry: String,
        /// What is wrong.
        reason: String,
    },
}

type Http = Client<hyper_rustls::HttpsConnector<super::proxy::ProxyConnector>, Empty<Bytes>>;

/// The client; one per agent, shared by every pull.
pub struct Registry {
    /// Made at the first pull: the CA roots are read then, so that an agent
    /// that never pulls never holds them (about 1 MiB of resident memory).
    http: std::sync::OnceLock<Http>,
    cfg: RegistryConfig,
    /// Bearer tokens by `host/repository`.
    tokens: Mutex<HashMap<String, String>>,
    /// Which requests go through the proxy.
    proxy: Option<hyper_util::client::proxy::matcher::Matcher>,
}

const MAX_REDIRECTS: usize = 5;
const MAX_TOKEN_BODY: u64 = 1 << 20;

impl Registry {
    /// Bound on one pull in all.
    pub fn pull_timeout(&self) -> Duration {
        self.cfg.pull_timeout
    }

    /// A client for `cfg`; nothing is set up until the first request.
    pub fn new(cfg: RegistryConfig) -> Self {
        Self {
            http: std::sync::OnceLock::new(),
            proxy: super::proxy::matcher(cfg.proxy.as_ref(), &cfg.no_proxy),
            cfg,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The HTTP client, with the system's CA roots (none found: every
    /// HTTPS registry fails verification, and says so).
    fn http(&self) -> &Http {
        self.http.get_or_init(|| self.build_http())
    }

    fn build_http(&self) -> Http {
        let cfg = &self.cfg;
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_native_roots() {
            Ok(b) => b,
            Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.stall_timeout));
        http.set_nodelay(true);
        let via = super::proxy::ProxyConnector::new(http, super::proxy::matcher(cfg.proxy.as_ref(), &cfg.no_proxy));
        let conn = builder.https_or_http().enable_http1().wrap_connector(via);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn)
    }

    fn base(&self, r: &Reference) -> String {
        let host = r.api_host();
        let scheme = if self.cfg.insecure.iter().any(|h| h == host || h == &r.registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}/v2/{}", r.repository)
    }

    /// Where to pull `r` from, in order (see `mirrors`).
    pub fn sources(&self, r: &Reference) -> Result<Vec<super::mirrors::Source>, super::mirrors::Blocked> {
        self.cfg.mirrors.sources(r)
    }

    fn credentials(&self, r: &Reference) -> Option<&Credentials> {
        self.cfg
            .auths
            .get(&r.registry)
            .or_else(|| self.cfg.auths.get(r.api_host()))
    }

    /// GETs a manifest (by tag or digest); returns the body (at most
    /// `MAX_MANIFEST` bytes) and its content type.
    pub async fn manifest(&self, r: &Reference, reference: &str) -> Result<(Vec<u8>, String), RegistryError> {
        let url = format!("{}/manifests/{reference}", self.base(r));
        let what = format!("manifest {}:{reference}", r.repository);
        let resp = self.get(r, &url, Some(super::manifest::ACCEPT), &what).await?;
        let ct = header_str(&resp, header::CONTENT_TYPE).unwrap_or("").to_string();
        let body = self.read_capped(r, resp, super::manifest::MAX_MANIFEST, &what).await?;
        Ok((body, ct))
    }

    /// GETs a blob; the caller streams the body (see `next_chunk`).
    pub async fn blob(&self, r: &Reference, digest: &str) -> Result<Response<Incoming>, RegistryError> {
        self.blob_from(r, digest, 0).await
    }

    /// GETs a blob from byte `offset` on (a Range request, to resume a
    /// transfer that broke); the answer says whether the registry honoured
    /// it (206 with `Content-Range: bytes OFFSET-`) or sent it whole (200).
    pub async fn blob_from(
        &self,
        r: &Reference,
        digest: &str,
        offset: u64,
    ) -> Result<Response<Incoming>, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base(r));
        let range = (offset > 0).then(|| format!("bytes={offset}-"));
        self.get_ranged(r, &url, None, range.as_deref(), &format!("blob {digest}"))
            .await
    }

    /// The next chunk of a body, `None` at its end; a wait longer than the
    /// stall bound is UNAVAILABLE.
    pub async fn next_chunk(&self, r: &Reference, body: &mut Incoming) -> Result<Option<Bytes>, RegistryError> {
        loop {
            let frame = tokio::time::timeout(self.cfg.stall_timeout, body.frame())
                .await
                .map_err(|_| self.unavailable(r, format!("no data for {:?} mid-transfer", self.cfg.stall_timeout)))?;
            match frame {
                None => return Ok(None),
                Some(Err(e)) => return Err(self.unavailable(r, format!("transfer broken: {e}"))),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// Reads a whole body, refusing more than `cap` bytes.
    pub async fn read_capped(
        &self,
        r: &Reference,
        resp: Response<Incoming>,
        cap: u64,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_big = || RegistryError::BadContent {
            registry: r.registry.clone(),
            reason: format!("{what} is larger than the {cap}-byte cap"),
        };
        if content_length(&resp).is_some_and(|n| n > cap) {
            return Err(too_big());
        }
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk(r, &mut body).await? {
            if out.len() as u64 + chunk.len() as u64 > cap {
                return Err(too_big());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn unavailable(&self, r: &Reference, reason: String) -> RegistryError {
        RegistryError::Unavailable {
            registry: r.registry.clone(),
            reason,
        }
    }

    /// One GET with authentication, redirects and retries.
    async fn get(
        &self,
        r: &Reference,
        url: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response<Incoming>, RegistryError> {
        self.get_ranged(r, url, accept, None, what).await
    }

    async fn get_ranged(
        &self,
        r: &Reference,
        url: &str,
        accept: Option<&str>,
        range: Option<&str>,
        what: &str,
    ) -> Result<Response<Incoming>, RegistryError> {
        let scope_key = format!("{}/{}", r.api_host(), r.repository);
        let mut url = url.to_string();
        let (mut attempt, mut redirects, mut challenged) = (0u32, 0usize, false);
        loop {
            let uri: Uri = url
                .parse()
                .map_err(|e| self.unavailable(r, format!("bad URL {url:?}: {e}")))?;
            let same_host = uri.authority().map(|a| a.as_str()) == Some(r.api_host());
            let proxy_auth = super::proxy::http_auth(self.proxy.as_ref(), &uri);
            let mut req = Request::get(uri).header(header::USER_AGENT, concat!("bosun/", env!("CARGO_PKG_VERSION")));
            if let Some(a) = proxy_auth {
                req = req.header(header::PROXY_AUTHORIZATION, a);
            }
            if let Some(a) = accept {
                req = req.header(header::ACCEPT, a);
            }
            if let Some(range) = range {
                req = req.header(header::RANGE, range);
            }
            // Credentials go to the registry itself only, never to the
            // blob store it redirects to.
            if same_host {
                if let Some(t) = crate::sync::lock(&self.tokens).get(&scope_key) {
                    req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
                } else if let (true, Some(c)) = (challenged, self.credentials(r)) {
                    req = req.header(header::AUTHORIZATION, basic(c));
                }
            }
            let req = req
                .body(Empty::new())
                .map_err(|e| self.unavailable(r, format!("request: {e}")))?;
            let sent = tokio::time::timeout(self.cfg.stall_timeout, self.http().request(req)).await;
            let failure = match sent {
                Err(_) => format!("no answer within {:?}", self.cfg.stall_timeout),
                Ok(Err(e)) if tls_refused(&e) => {
                    // The registry is there and its certificate is not
                    // trusted: trying again cannot help.
                    return Err(RegistryError::Untrusted {
                        registry: r.registry.clone(),
                        reason: format!("{what}: {}", error_chain(&e)),
                    });
                }
                Ok(Err(e)) => format!("{}: {}", what, error_chain(&e)),
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    if status.is_success() {
                        return Ok(resp);
                    }
                    if status.is_redirection() {
                        let loc = header_str(&resp, header::LOCATION)
                            .ok_or_else(|| self.unavailable(r, format!("{status} without a Location")))?;
                        redirects += 1;
                        if redirects > MAX_REDIRECTS {
                            return Err(self.unavailable(r, format!("more than {MAX_REDIRECTS} redirects for {what}")));
                        }
                        url = resolve_location(&url, loc);
                        continue;
                    }
                    if status == StatusCode::UNAUTHORIZED && !challenged {
                        challenged = true;
                        let challenge = header_str(&resp, header::WWW_AUTHENTICATE).unwrap_or("").to_string();
                        self.answer_challenge(r, &challenge, &scope_key).await?;
                        continue;
                    }
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                        let why = if self.credentials(r).is_some() {
                            "the configured credentials were refused"
                        } else {
                            "it needs credentials and none are configured for it"
                        };
                        return Err(RegistryError::Denied {
                            registry: r.registry.clone(),
                            reason: format!("{status} for {what}: {why}"),
                        });
                    }
                    if status == StatusCode::NOT_FOUND {
                        return Err(RegistryError::NotFound {
                            registry: r.registry.clone(),
                            what: what.to_string(),
                        });
                    }
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        return Err(RegistryError::BadContent {
                            registry: r.registry.clone(),
                            reason: format!("{status} for {what}"),
                        });
                    }
                    format!("{status} for {what}")
                }
            };
            if attempt >= self.cfg.retries {
                let tries = attempt + 1;
                return Err(self.unavailable(r, format!("{failure} ({tries} attempts)")));
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            attempt += 1;
        }
    }

    /// Gets a bearer token as the challenge says (with the configured
    /// credentials, if any), or checks that basic credentials exist.
    async fn answer_challenge(&self, r: &Reference, challenge: &str, scope_key: &str) -> Result<(), RegistryError> {
        let denied = |reason: String| RegistryError::Denied {
            registry: r.registry.clone(),
            reason,
        };
        let (scheme, params) = parse_challenge(challenge);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => {
                if self.credentials(r).is_none() {
                    return Err(denied(
                        "it asks for basic credentials and none are configured for it".into(),
                    ));
                }
                Ok(())
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| denied(format!("bearer challenge without a realm: {challenge:?}")))?;
                let mut q = Vec::new();
                if let Some(s) = params.get("service") {
                    q.push(format!("service={}", percent(s)));
                }
                let scope = params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", r.repository));
                q.push(format!("scope={}", percent(&scope)));
                let url = format!("{realm}{}{}", if realm.contains('?') { "&" } else { "?" }, q.join("&"));
                let uri: Uri = url
                    .parse()
                    .map_err(|e| denied(format!("bad token realm {realm:?}: {e}")))?;
                let mut req = Request::get(uri);
                if let Some(c) = self.credentials(r) {
                    req = req.header(header::AUTHORIZATION, basic(c));
                }
                let req = req
                    .body(Empty::new())
                    .map_err(|e| denied(format!("token request: {e}")))?;
                let resp = tokio::time::timeout(self.cfg.stall_timeout, self.http().request(req))
                    .await
                    .map_err(|_| self.unavailable(r, format!("token service {realm} did not answer")))?
                    .map_err(|e| self.unavailable(r, format!("token service {realm}: {}", error_chain(&e))))?;
                if !resp.status().is_success() {
                    return Err(denied(format!("token service {realm} answered {}", resp.status())));
                }
                let body = self.read_capped(r, resp, MAX_TOKEN_BODY, "token").await?;
                #[derive(serde::Deserialize)]
                struct Token {
                    #[serde(default)]
                    token: Option<String>,
                    #[serde(default)]
                    access_token: Option<String>,
                }
                let t: Token =
                    serde_json::from_slice(&body).map_err(|e| denied(format!("token service {realm}: {e}")))?;
                let t = t
                    .token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| denied(format!("token service {realm} gave no token")))?;
                crate::sync::lock(&self.tokens).insert(scope_key.to_string(), t);
                Ok(())
            }
            _ => Err(denied(format!("401 with an unknown challenge {challenge:?}"))),
        }
    }
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.user, c.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

fn header_str(resp: &Response<Incoming>, name: header::HeaderName) -> Option<&str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn content_length(resp: &Response<Incoming>) -> Option<u64> {
    header_str(resp, header::CONTENT_LENGTH).and_then(|v| v.parse().ok())
}

/// Whether `e` is, somewhere down its chain, TLS refusing the peer (a
/// certificate that does not verify, a handshake the registry failed).
/// An `io::Error` hides what it wraps from `source()`: looked into too.
fn tls_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    // What an error stands for: what an io::Error holds (hidden from
    // `source()`), or itself.
    fn unwrapped<'a>(e: &'a (dyn std::error::Error + 'static)) -> &'a (dyn std::error::Error + 'static) {
        match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => unwrapped(inner),
            None => e,
        }
    }
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = unwrapped(c).downcast_ref::<rustls::Error>() {
            return matches!(
                t,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::AlertReceived(_)
                    | rustls::Error::PeerIncompatible(_)
            );
        }
        cur = unwrapped(c).source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s = format!("{s}: {c}");
        cur = c.source();
    }
    s
}

/// An absolute Location, or one relative to `base`'s origin.
fn resolve_location(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    format!(
        "{}{}{loc}",
        &base[..origin_end],
        if loc.starts_with('/') { "" } else { "/" }
    )
}

/// `Bearer realm="…",service="…",scope="a:b:pull,push"` → scheme and params
/// (commas inside quotes kept).
pub fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => val.extend(chars.next()),
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    (scheme.to_string(), params)
}

/// Percent-encodes a query value.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Reads a docker `config.json` (`{"auths": {"host": {"auth": base64}}}`
/// or with `username`/`password`) into credentials by host.
pub fn parse_auth_file(text: &str) -> Result<HashMap<String, Credentials>, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        auth: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: HashMap<String, Entry>,
    }
    let f: File = serde_json::from_str(text).map_err(|e| format!("not a docker config.json: {e}"))?;
    let mut out = HashMap::new();
    for (key, e) in f.auths {
        let host = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        let (user, password) = match (e.auth, e.username, e.password) {
            (Some(a), _, _) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .map_err(|_| format!("auths.{key}.auth is not base64"))?;
                let raw = String::from_utf8(raw).map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                let (u, p) = raw
                    .split_once(':')
                    .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                (u.to_string(), p.to_string())
            }
            (None, Some(u), Some(p)) => (u, p),
            _ => return Err(format!("auths.{key} has neither auth nor username and password")),
        };
        let c = Credentials { user, password };
        // Docker Hub is named three ways.
        if host == "index.docker.io" || host == "docker.io" || host == "registry-1.docker.io" {
            for h in ["docker.io", "registry-1.docker.io"] {
                out.insert(h.to_string(), c.clone());
            }
        } else {
            out.insert(host, c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_commas_in_quotes() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("Basic", "Registry Realm"));
    }

    #[test]
    fn auth_files_and_redacted_debug() {
        let f = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpwdw=="},"r.io:5000":{"username":"a","password":"b"}}}"#;
        let a = parse_auth_file(f).unwrap();
        assert_eq!(a["docker.io"].user, "u");
        assert_eq!(a["registry-1.docker.io"].password, "pw");
        assert_eq!(a["r.io:5000"].user, "a");
        assert_eq!(format!("{:?}", a["docker.io"]), "Credentials(\"u\", <redacted>)");
        assert!(parse_auth_file(r#"{"auths":{"x":{}}}"#).is_err());
        // The empty file a CAA pod VM places at /run/peerpod/auth.json.
        assert!(parse_auth_file("{\n  \"auths\": {}\n}\n").unwrap().is_empty());
        assert!(parse_auth_file(r#"{"auths":{"x":{"auth":"bm9jb2xvbg=="}}}"#).is_err());
    }

    #[test]
    fn locations() {
        assert_eq!(resolve_location("http://h:1/v2/a/blobs/x", "/b/c"), "http://h:1/b/c");
        assert_eq!(resolve_location("http://h:1/v2/a", "https://s3/x?y"), "https://s3/x?y");
        assert_eq!(percent("repository:a/b:pull push"), "repository:a/b:pull%20push");
    }
}
