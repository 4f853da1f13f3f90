//! Reaching registries through an HTTP proxy, as a pod VM in a cluster
//! behind one must (`https_proxy`/`no_proxy` of the Kata agent's
//! configuration): HTTPS through a CONNECT tunnel, plain HTTP by absolute
//! URL. Which hosts go direct follows `no_proxy` as curl and Go read it
//! (hosts, `.domain` suffixes, IPs, CIDRs, `*`): hyper-util's matcher and
//! tunnel, the field's code, not bosun's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A proxy's address (`http://[user:password@]host:port`).
#[derive(Clone)]
pub struct Proxy {
    raw: String,
}

impl std::fmt::Debug for Proxy {
    /// Without its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = match self.raw.split_once('@') {
            Some((scheme_user, host)) => {
                let scheme = scheme_user.split("://").next().unwrap_or("http");
                format!("{scheme}://***@{host}")
            }
            None => self.raw.clone(),
        };
        f.write_str(&shown)
    }
}

impl Proxy {
    /// Checks a proxy setting: an `http://` URL with a host.
    pub fn parse(s: &str) -> Result<Self, String> {
        let uri: Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err("expected http://[user:password@]host:port".into());
        }
        Ok(Self { raw: s.to_string() })
    }
}

/// Hosts reached without the proxy, as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy(String);

impl NoProxy {
    /// A `no_proxy` list: comma-separated hosts, `.domain`, IPs, CIDRs, `*`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.chars().any(|c| c.is_whitespace() && c != ' ') {
            return Err("a comma list of hosts, .domains, IPs or CIDRs".into());
        }
        Ok(Self(s.split(',').map(str::trim).collect::<Vec<_>>().join(",")))
    }
}

/// Which requests go through the proxy, if one is set.
pub fn matcher(proxy: Option<&Proxy>, no: &NoProxy) -> Option<Matcher> {
    let p = proxy?;
    Some(
        Matcher::builder()
            .http(p.raw.clone())
            .https(p.raw.clone())
            .no(no.0.clone())
            .build(),
    )
}

/// A connection to a registry: direct, through a CONNECT tunnel, or to the
/// proxy itself for plain HTTP (then marked proxied, so that hyper sends
/// the request's absolute URL).
pub struct Conn {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Connects to a registry directly or through the proxy, as `matcher` says.
#[derive(Clone)]
pub struct ProxyConnector {
    direct: HttpConnector,
    matcher: Option<std::sync::Arc<Matcher>>,
}

impl ProxyConnector {
    /// Over `direct`, through the proxy `matcher` chooses (none: direct).
    pub fn new(direct: HttpConnector, matcher: Option<Matcher>) -> Self {
        Self {
            direct,
            matcher: matcher.map(std::sync::Arc::new),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        tower_service::Service::<Uri>::poll_ready(&mut self.direct, cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let intercept = self.matcher.as_ref().and_then(|m| m.intercept(&dst));
        let mut direct = self.direct.clone();
        Box::pin(async move {
            let Some(i) = intercept else {
                let io = tower_service::Service::call(&mut direct, dst).await?;
                return Ok(Conn { io, proxied: false });
            };
            if dst.scheme_str() == Some("https") {
                let mut tunnel = Tunnel::new(i.uri().clone(), direct);
                if let Some(auth) = i.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let io = tower_service::Service::call(&mut tunnel, dst).await?;
                Ok(Conn { io, proxied: false })
            } else {
                let io = tower_service::Service::call(&mut direct, i.uri().clone()).await?;
                Ok(Conn { io, proxied: true })
            }
        })
    }
}

/// The Proxy-Authorization header a plain-HTTP request to `dst` carries
/// (through the proxy, with credentials).
pub fn http_auth(matcher: Option<&Matcher>, dst: &Uri) -> Option<hyper::header::HeaderValue> {
    if dst.scheme_str() != Some("http") {
        return None;
    }
    matcher?.intercept(dst)?.basic_auth().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_and_exceptions() {
        let p = Proxy::parse("http://u:secret@10.0.0.1:3128").unwrap();
        assert!(!format!("{p:?}").contains("secret"));
        for bad in ["10.0.0.1:3128", "socks5://h:1", "http://"] {
            assert!(Proxy::parse(bad).is_err(), "{bad}");
        }
        let m = matcher(
            Some(&p),
            &NoProxy::parse("localhost, .svc.cluster.local,10.96.0.0/12").unwrap(),
        )
        .unwrap();
        let cases = [
            ("https://registry-1.docker.io/v2/", true),
            ("http://10.0.2.100:5000/v2/", true),
            ("https://localhost:5000/v2/", false),
            ("https://reg.ns.svc.cluster.local/v2/", false),
            ("http://10.96.4.4:5000/v2/", false),
        ];
        for (i, (u, proxied)) in cases.iter().enumerate() {
            let uri: Uri = u.parse().unwrap();
            assert_eq!(m.intercept(&uri).is_some(), *proxied, "test[{i}]: {u}");
        }
        assert!(matcher(None, &NoProxy::default()).is_none());
    }
}
