//! TLS for both legs of a session: the server side that clients reach (so that a token never
//! crosses the network in the clear) and the client side towards upstreams (`upstream_tls`).
//! One crypto provider, aws-lc-rs, is used for all of it (see `identity::install_crypto_provider`).

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::UpstreamTls;
use crate::runtime::TcpStream;

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read TLS certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration rejected: {0}")]
    Config(String),
}

/// Builds the server configuration clients negotiate with.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
    let certs = load_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| Error::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let err = |reason: String| Error::Cert {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

/// Builds the client configuration for an upstream, or `None` for `upstream_tls = "disable"`.
pub fn upstream_config(
    mode: UpstreamTls,
    ca: Option<&Path>,
) -> Result<Option<Arc<ClientConfig>>, Error> {
    let config = match mode {
        UpstreamTls::Disable => return Ok(None),
        UpstreamTls::Require => ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
            .with_no_client_auth(),
        UpstreamTls::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match ca {
                Some(path) => {
                    for cert in load_certs(path)? {
                        roots.add(cert).map_err(|e| Error::Config(e.to_string()))?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    for cert in found.certs {
                        // A malformed system certificate is skipped, as every TLS client does.
                        let _ = roots.add(cert);
                    }
                    if roots.is_empty() {
                        return Err(Error::Config(
                            "upstream_tls = \"verify-full\" without upstream_ca and no system CA certificates found".into(),
                        ));
                    }
                }
            }
            ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// `upstream_tls = "require"`: encrypt, but accept any certificate (libpq's sslmode=require).
#[derive(Debug)]
struct AcceptAnyCert;

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A socket that may have been upgraded to TLS, on either leg.
pub enum Transport {
    Plain(TcpStream),
    Server(Box<futures_rustls::server::TlsStream<TcpStream>>),
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
    /// What is left while a plain socket is being upgraded; every operation fails.
    Closed,
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Server(_) | Transport::Client(_))
    }

    /// Upgrades a plain client socket with the server handshake.
    pub async fn accept_tls(stream: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let tls = futures_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await?;
        Ok(Transport::Server(Box::new(tls)))
    }

    /// Upgrades a plain upstream socket with the client handshake.
    pub async fn connect_tls(
        stream: TcpStream,
        config: Arc<ClientConfig>,
        host: &str,
    ) -> io::Result<Self> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let tls = futures_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await?;
        Ok(Transport::Client(Box::new(tls)))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection is closed")
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_close(cx),
            Transport::Server(s) => Pin::new(s.as_mut()).poll_close(cx),
            Transport::Client(s) => Pin::new(s.as_mut()).poll_close(cx),
            Transport::Closed => Poll::Ready(Err(closed())),
        }
    }
}
