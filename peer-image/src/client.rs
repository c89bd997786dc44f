//! [`PeerClient`]: HTTP/1.1 over mutual TLS to one neighbour, whose key it pins
//! ([`crate::tls::client_config`]). One per neighbour, because the pin belongs to the neighbour
//! dialled, not to an address or host name. A small [`Request`]/[`Response`] pair carries what the
//! protocol needs: a body, a few headers, a deadline that covers the whole exchange.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Time to open a TCP connection to a neighbour.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for the TLS handshake once connected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failed exchange: no connection, refused handshake, broken or late response.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(BoxError);

fn timed_out(what: &str) -> ClientError {
    ClientError(format!("{what} timed out").into())
}

/// A request to a neighbour: method, path (with query), headers, body, optional deadline.
pub struct Request {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    timeout: Option<Duration>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path.into())
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path.into())
    }

    fn new(method: Method, path: String) -> Self {
        Self {
            method,
            path,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: None,
        }
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn json<T: serde::Serialize>(self, v: &T) -> Self {
        let body = serde_json::to_vec(v).expect("serializable");
        self.header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// A deadline for the whole exchange, reading the body included.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn body_len(&self) -> usize {
        self.body.len()
    }
}

/// A response whose body is read chunk by chunk, within the request's deadline.
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Incoming,
    deadline: Option<Instant>,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// The next piece of the body, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        let next = async {
            loop {
                match self.body.frame().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(ClientError(e.into())),
                    // Trailers carry no content.
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        };
        match self.deadline {
            Some(d) => tokio::time::timeout_at(d, next)
                .await
                .map_err(|_| timed_out("response"))?,
            None => next.await,
        }
    }
}

/// HTTP/1.1 over mutual TLS to one neighbour.
#[derive(Clone)]
pub struct PeerClient {
    http: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    /// `https://host:port`, the neighbour's sync port.
    base: String,
}

impl PeerClient {
    /// A client for the neighbour at `addr` (`host:port`), keeping at most `idle` connections
    /// open between requests.
    pub fn new(addr: &str, tls: Arc<rustls::ClientConfig>, idle: usize) -> Self {
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(idle)
            .pool_timer(TokioTimer::new())
            .build(Connector {
                tls: TlsConnector::from(tls),
            });
        Self {
            http,
            base: format!("https://{addr}"),
        }
    }

    pub async fn execute(&self, req: Request) -> Result<Response, ClientError> {
        let deadline = req.timeout.map(|d| Instant::now() + d);
        let mut r = hyper::Request::builder()
            .method(req.method)
            .uri(format!("{}{}", self.base, req.path))
            .body(Full::new(req.body))
            .map_err(|e| ClientError(e.into()))?;
        *r.headers_mut() = req.headers;
        let sent = self.http.request(r);
        let resp = match deadline {
            Some(d) => tokio::time::timeout_at(d, sent)
                .await
                .map_err(|_| timed_out("request"))?,
            None => sent.await,
        }
        .map_err(|e| ClientError(e.into()))?;
        let (parts, body) = resp.into_parts();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
            deadline,
        })
    }
}

/// Opens TCP, then TLS with the neighbour's pinned config.
#[derive(Clone)]
struct Connector {
    tls: TlsConnector,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TlsConn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri.host().ok_or("no host in the address")?;
            let port = uri.port_u16().ok_or("no port in the address")?;
            // An IPv6 literal comes bracketed in a URI, not in a socket address or a server name.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
                .await
                .map_err(|_| timed_out("connect"))??;
            let _ = tcp.set_nodelay(true);
            // The name is not checked (the key is pinned); rustls needs one all the same.
            let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(name, tcp))
                .await
                .map_err(|_| timed_out("TLS handshake"))??;
            Ok(TlsConn(TokioIo::new(stream)))
        })
    }
}

/// A TLS connection as hyper's client wants it.
struct TlsConn(TokioIo<TlsStream<TcpStream>>);

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
