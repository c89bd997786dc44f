//! Mutual TLS on the sync port: every peer proves its ed25519 identity in the handshake, and both
//! ends pin the other's key from the cluster config.
//!
//! * [`Credentials`]: a self-signed X.509 certificate made at start from the identity key (no
//!   file, no CA): it is only a container for the public key, so its names and dates mean nothing.
//! * [`server_config`]: the server asks every client for a certificate and accepts only one whose
//!   key is a configured neighbour's ([`Pinned`]); anyone else is refused in the handshake,
//!   before a byte of HTTP is read.
//! * [`client_config`]: a client dialling neighbour `n` accepts only a server whose key is the one
//!   configured for `n` ([`Pinned`]), whatever the address or name it answers on.
//! * [`peer_of`]: the ed25519 key a certificate carries: the verified sender of every request.
//!
//! Both ends also check the handshake signature with that key (rustls'
//! [`verify_tls13_signature`]), so a peer presenting someone else's certificate without its secret
//! key fails. TLS 1.3 only, ed25519 only, `ring` as the crypto provider.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use crate::identity::{Identity, PeerId};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the transport certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] Error),
}

/// The DER header of an ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow it.
const ED25519_SPKI_HEADER: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The crypto provider of both ends: ring, which builds without cmake or an assembler. rustls now
/// marks it deprecated because ring has no post-quantum key exchange (aws-lc-rs has); the lab's
/// threat is a neighbour that lies today, not a recording decrypted years from now.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// This peer's transport certificate and its key.
pub struct Credentials {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Credentials {
    /// A self-signed certificate for `me`'s ed25519 key, made afresh at every start.
    pub fn new(me: &Identity) -> Result<Self, TlsError> {
        let key = PrivatePkcs8KeyDer::from(me.pkcs8_der());
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_ED25519)?;
        let mut params = rcgen::CertificateParams::default();
        // For people reading a capture: the verifiers look at the key only.
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("syncpeer {}", me.id().short()));
        let cert = params.self_signed(&pair)?.der().clone();
        Ok(Self { cert, key })
    }

    fn chain(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (vec![self.cert.clone()], PrivateKeyDer::Pkcs8(self.key.clone_key()))
    }
}

/// The ed25519 key in a certificate, or `None` for any other kind of key (or a malformed one).
pub fn peer_of(cert: &CertificateDer<'_>) -> Option<PeerId> {
    let parsed = ParsedCertificate::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    PeerId::from_bytes(spki.as_ref().strip_prefix(&ED25519_SPKI_HEADER)?)
}

/// The server side: accepts clients whose key is one of `neighbours`.
pub fn server_config(creds: &Credentials, neighbours: Vec<PeerId>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = Pinned::new(neighbours, &provider);
    let (chain, key) = creds.chain();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// The client side, for dialling the neighbour whose key is `expected`.
pub fn client_config(creds: &Credentials, expected: PeerId) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Pinned::new(vec![expected], &provider);
    let (chain, key) = creds.chain();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        // Not dangerous here: the pinned key replaces the CA and name checks; it is stricter.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Accepts a certificate only if its key is one of `keys`, and checks handshake signatures with
/// that key: the server's check of clients (every neighbour's key) and a client's check of the
/// server (the dialled neighbour's key alone).
#[derive(Debug)]
struct Pinned {
    keys: Vec<PeerId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pinned {
    fn new(keys: Vec<PeerId>, provider: &CryptoProvider) -> Self {
        Self {
            keys,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), Error> {
        match peer_of(cert) {
            Some(k) if self.keys.contains(&k) => Ok(()),
            _ => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    /// The key was matched by [`Pinned::check`]; this proves the peer holds its secret half.
    fn tls13(&self, msg: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> SignatureCheck {
        verify_tls13_signature(msg, cert, dss, &self.algorithms)
    }
}

type SignatureCheck = Result<HandshakeSignatureValid, Error>;

/// TLS 1.2 is never offered (both configs are TLS 1.3 only), so it is never asked for.
fn no_tls12() -> SignatureCheck {
    Err(Error::General("TLS 1.2 is not offered".into()))
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> SignatureCheck {
        no_tls12()
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> SignatureCheck {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> SignatureCheck {
        no_tls12()
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> SignatureCheck {
        self.tls13(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake over an in-memory pipe: (client's result, server's result, the client key the
    /// server saw).
    async fn handshake(
        client: Arc<rustls::ClientConfig>,
        server: Arc<rustls::ServerConfig>,
    ) -> (bool, bool, Option<PeerId>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("peer").unwrap();
        let connect = async {
            let mut s = tokio_rustls::TlsConnector::from(client).connect(name, a).await?;
            // The server's verdict on our certificate comes after our Finished: a byte read
            // round-trips it.
            tokio::io::AsyncWriteExt::write_all(&mut s, b"x").await?;
            let mut one = [0u8; 1];
            tokio::io::AsyncReadExt::read_exact(&mut s, &mut one).await.map(|_| ())
        };
        let accept = async {
            let mut s = tokio_rustls::TlsAcceptor::from(server).accept(b).await?;
            let who = s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(peer_of);
            let mut one = [0u8; 1];
            tokio::io::AsyncReadExt::read_exact(&mut s, &mut one).await?;
            tokio::io::AsyncWriteExt::write_all(&mut s, b"y").await?;
            Ok::<_, std::io::Error>(who)
        };
        let (c, s) = tokio::join!(connect, accept);
        (c.is_ok(), s.is_ok(), s.ok().flatten())
    }

    #[test]
    fn the_certificate_carries_the_identity_key() {
        let me = Identity::generate();
        let creds = Credentials::new(&me).unwrap();
        assert_eq!(peer_of(&creds.cert), Some(me.id()));
    }

    /// Guards the server's pinning: a client that is not a configured neighbour is refused.
    #[tokio::test]
    async fn a_server_accepts_only_its_neighbours() {
        let (server, friend, stranger) = (Identity::generate(), Identity::generate(), Identity::generate());
        let sc = server_config(&Credentials::new(&server).unwrap(), vec![friend.id()]).unwrap();
        let as_friend = client_config(&Credentials::new(&friend).unwrap(), server.id()).unwrap();
        assert_eq!(handshake(as_friend, sc.clone()).await, (true, true, Some(friend.id())));
        let as_stranger = client_config(&Credentials::new(&stranger).unwrap(), server.id()).unwrap();
        let (c, s, _) = handshake(as_stranger, sc).await;
        assert!(!c && !s, "a stranger got through");
    }

    /// Guards the client's pinning: a server whose key is not the one configured for the dialled
    /// neighbour is refused, even when it would accept us.
    #[tokio::test]
    async fn a_client_accepts_only_the_pinned_server() {
        let (me, expected, impostor) = (Identity::generate(), Identity::generate(), Identity::generate());
        let creds = Credentials::new(&me).unwrap();
        let sc = server_config(&Credentials::new(&impostor).unwrap(), vec![me.id()]).unwrap();
        let (c, _, _) = handshake(client_config(&creds, expected.id()).unwrap(), sc.clone()).await;
        assert!(!c, "a server with another key was accepted");
        let (c, s, who) = handshake(client_config(&creds, impostor.id()).unwrap(), sc).await;
        assert!(c && s && who == Some(me.id()));
    }

    /// Presents a certificate with a key that is not its own (rustls' own builder refuses that
    /// pairing, so it is handed over like this).
    #[derive(Debug)]
    struct Mismatched(Arc<rustls::sign::CertifiedKey>);

    impl rustls::client::ResolvesClientCert for Mismatched {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    /// Guards the handshake signature check: a neighbour's certificate (it is public: every
    /// handshake shows it) is useless without the neighbour's secret key.
    #[tokio::test]
    async fn a_copied_certificate_without_its_key_is_refused() {
        let (server, friend, thief) = (Identity::generate(), Identity::generate(), Identity::generate());
        let sc = server_config(&Credentials::new(&server).unwrap(), vec![friend.id()]).unwrap();
        let stolen = Credentials::new(&friend).unwrap().cert;
        let own = Credentials::new(&thief).unwrap().key;
        let signer = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(own))
            .unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![stolen], signer);
        let verifier = Pinned::new(vec![server.id()], &provider());
        let cc = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(Mismatched(Arc::new(certified))));
        let (c, s, _) = handshake(Arc::new(cc), sc).await;
        assert!(!c && !s, "a copied certificate got through");
    }
}
