//! [`TlsListener`]: the sync port's listener for axum. It hands the server only connections whose
//! TLS handshake succeeded, each with the verified identity of the peer at the other end
//! ([`PeerAddr`], what handlers extract as `ConnectInfo<PeerAddr>`).
//!
//! Handshakes run in their own tasks, at most [`HANDSHAKES_MAX`] at once and each within
//! [`HANDSHAKE_TIMEOUT`]: a client that connects and then says nothing (or trickles its hello)
//! must not hold up the accept loop, which would shut out every neighbour.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::identity::PeerId;
use crate::tls::peer_of;

/// Handshakes in progress at once; connections beyond are closed at once (an honest cluster
/// needs one or two per neighbour).
pub const HANDSHAKES_MAX: usize = 64;
/// Time a client has to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The far end of a connection: its address, and the key its certificate proved.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr {
    pub addr: SocketAddr,
    pub id: PeerId,
}

/// Accepts from `L` (a TCP listener), hands over TLS streams that passed the handshake.
pub struct TlsListener<Io> {
    ready: mpsc::Receiver<(TlsStream<Io>, PeerAddr)>,
    local: PeerAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl<Io> TlsListener<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Starts accepting from `inner` with `config` (see [`crate::tls::server_config`]); `me` is
    /// this peer's key, reported as the identity of the local end.
    pub fn new<L>(inner: L, config: Arc<rustls::ServerConfig>, me: PeerId) -> std::io::Result<Self>
    where
        L: Listener<Io = Io, Addr = SocketAddr>,
    {
        let local = PeerAddr {
            addr: inner.local_addr()?,
            id: me,
        };
        let (tx, ready) = mpsc::channel(16);
        let accepting = tokio::spawn(accept_loop(inner, TlsAcceptor::from(config), tx));
        Ok(Self {
            ready,
            local,
            accepting,
        })
    }
}

impl<Io> Drop for TlsListener<Io> {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop<L: Listener>(mut inner: L, acceptor: TlsAcceptor, tx: mpsc::Sender<(TlsStream<L::Io>, PeerAddr)>)
where
    L::Addr: Into<SocketAddr>,
{
    let in_progress = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    loop {
        let (io, addr) = tokio::select! {
            c = inner.accept() => c,
            _ = tx.closed() => return,
        };
        let addr: SocketAddr = addr.into();
        let Ok(permit) = in_progress.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "too many TLS handshakes in progress: connection closed");
            continue;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    // An unknown key, a plain-HTTP client, a scanner: refused before any request.
                    tracing::info!(%addr, "TLS handshake refused: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(%addr, "TLS handshake not completed in time");
                    return;
                }
            };
            // The verifier accepted the certificate, so it names a neighbour's key.
            let Some(id) = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(peer_of)
            else {
                return;
            };
            let _ = tx.send((stream, PeerAddr { addr, id })).await;
        });
    }
}

impl<Io> Listener for TlsListener<Io>
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = TlsStream<Io>;
    type Addr = PeerAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends once this receiver is gone: never here.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl<Io> Connected<IncomingStream<'_, TlsListener<Io>>> for PeerAddr
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn connect_info(stream: IncomingStream<'_, TlsListener<Io>>) -> Self {
        *stream.remote_addr()
    }
}
