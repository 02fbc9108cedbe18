//! Why a member closed a TLS connection: a handshake of our own, made only
//! after a request failed with a closed connection.
//!
//! In TLS 1.3 the client's side of the handshake ends before the server has
//! looked at the client's certificate. A member started with
//! `--client-cert-auth` that refuses ours (signed by another CA, expired,
//! or missing) sends its alert after that, and gRPC only reports
//! "connection closed", the same words as a member that died. Measured
//! against etcd 3.4 with a client certificate from another CA: every
//! attempt of a 3 s budget ended so, and the call answered code 11 "try
//! again later", which a runtime retries for ever.
//!
//! So when a request over TLS fails with a closed or reset connection,
//! [`Handshake::refusal`] opens one connection to that member with the very
//! same certificates (rustls, ALPN `h2` as gRPC's), and reads the member's
//! first answer. A TLS alert about our certificate is a refusal every
//! attempt would meet: the call ends with code 7 and the member's reason.
//! Anything else (HTTP/2 settings, no answer, no connection) is not ours to
//! judge, and the call goes on trying. Each member is asked at most once
//! per call, so a member that is merely down costs one connect.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// What a failed request over TLS is checked with.
pub(super) struct Handshake {
    config: Arc<ClientConfig>,
    /// `tls.serverName`, else the endpoint's host.
    server_name: Option<String>,
    /// Whether we present a client certificate.
    with_certificate: bool,
    /// The members asked already in this call.
    asked: Mutex<BTreeSet<String>>,
}

impl Handshake {
    /// A client config as etcd-client's: trusting `roots`, presenting
    /// `identity` when given.
    pub(super) fn new(
        roots: Vec<CertificateDer<'static>>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        server_name: Option<String>,
    ) -> Result<Handshake, rustls::Error> {
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add(root)?;
        }
        // The provider tonic 0.14 (etcd-client's TLS) builds its config
        // with, so this handshake offers what the failed one offered.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(store);
        let with_certificate = identity.is_some();
        let mut config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Handshake {
            config: Arc::new(config),
            server_name,
            with_certificate,
            asked: Mutex::new(BTreeSet::new()),
        })
    }

    /// Why the member at `url` refuses our certificate, if that is what a
    /// connection to it shows within `bound`; `None` once asked in this
    /// call, or when it shows nothing of the kind.
    pub(super) fn refusal(&self, url: &str, bound: Duration) -> Option<String> {
        if !self.asked.lock().ok()?.insert(url.to_string()) {
            return None;
        }
        let parsed = url::Url::parse(url).ok()?;
        let host = match parsed.host()? {
            url::Host::Domain(d) => d.to_string(),
            url::Host::Ipv4(a) => a.to_string(),
            url::Host::Ipv6(a) => a.to_string(),
        };
        let name = ServerName::try_from(self.server_name.clone().unwrap_or(host)).ok()?;
        let addr = parsed
            .socket_addrs(|| Some(2379))
            .ok()?
            .into_iter()
            .next()?;
        let tcp = TcpStream::connect_timeout(&addr, bound).ok()?;
        tcp.set_read_timeout(Some(bound)).ok()?;
        tcp.set_write_timeout(Some(bound)).ok()?;
        let conn = ClientConnection::new(self.config.clone(), name).ok()?;
        let mut tls = StreamOwned::new(conn, tcp);
        // The first read drives the handshake, then waits for the member's
        // first records: its HTTP/2 settings, or its alert.
        let mut first = [0u8; 1];
        let err = loop {
            match tls.read(&mut first) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.err()?,
            }
        };
        let alert = match err.get_ref()?.downcast_ref::<rustls::Error>()? {
            rustls::Error::AlertReceived(alert) => *alert,
            _ => return None,
        };
        self.explain(alert)
    }

    fn explain(&self, alert: AlertDescription) -> Option<String> {
        use AlertDescription as A;
        match alert {
            // Go's TLS (etcd's) answers a missing certificate with "bad
            // certificate" too.
            A::CertificateRequired | A::BadCertificate | A::HandshakeFailure
                if !self.with_certificate =>
            {
                Some(format!(
                    "it requires a client certificate (TLS alert {alert:?}; it runs with \
                     --client-cert-auth): set tls.certFile and tls.keyFile"
                ))
            }
            A::CertificateRequired
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied => Some(format!(
                "it refused our client certificate (TLS alert {alert:?}): tls.certFile must be \
                 signed by the CA of the members' --trusted-ca-file"
            )),
            _ => None,
        }
    }
}
