//! Publishing over HTTP/2 with TLS (`run --publish-protocol h2 --tls-ca FILE`): one keep-alive
//! HTTP/2 connection per publisher, one request in flight on it at a time, so that the figure
//! compares with the HTTP/1.1 keep-alive publishers of the same run shape.
//!
//! hyper's HTTP/2 client over tokio-rustls (ring, like the hub), trusting only the certificate
//! given (the benchmark generates a self-signed one with `openssl` at run time) and checking it
//! against the address dialled (an IP address SAN). The subscribers stay on hand-written
//! HTTP/1.1 (`http.rs`): they are thousands, publishers a few dozen.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::endpoint::Publish;

/// The TLS client configuration: trusts the certificates of the PEM file `ca`, offers `h2` only.
pub(crate) fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read --tls-ca {}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("--tls-ca {} is not PEM: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("--tls-ca {} holds no certificate", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// One HTTP/2 connection of a publisher.
pub(crate) struct H2Conn {
    send: SendRequest<Full<Bytes>>,
    authority: String,
}

impl H2Conn {
    /// Connects to `addr`, does the TLS handshake (the certificate must name `addr`'s IP
    /// address) and the HTTP/2 preface; the connection is driven by a task of its own.
    pub(crate) async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> io::Result<H2Conn> {
        let tcp = crate::http::connect(addr, None).await?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::from(addr.ip()), tcp)
            .await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(io::Error::other("the server did not negotiate h2"));
        }
        let (send, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(H2Conn {
            send,
            authority: addr.to_string(),
        })
    }

    /// Sends one publish, reads the whole response and returns its status.
    pub(crate) async fn exchange(&mut self, publish: Publish) -> io::Result<u16> {
        self.send.ready().await.map_err(io::Error::other)?;
        let mut request =
            ::http::Request::post(format!("https://{}{}", self.authority, publish.path))
                .header(::http::header::CONTENT_TYPE, publish.content_type);
        if let Some(authorization) = publish.authorization {
            request = request.header(::http::header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(Full::new(Bytes::from(publish.body)))
            .map_err(io::Error::other)?;
        let response = self
            .send
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
        let status = response.status().as_u16();
        response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?;
        Ok(status)
    }
}
