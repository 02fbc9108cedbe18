//! Certificates for TLS clusters, made fresh for each test with rcgen: a
//! CA, certificates for the members, and client certificates, written as
//! PEM files into a private folder, as an operator's would be.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA and the folder its files live in.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: Certificate,
    ca_key: KeyPair,
    /// The CA's certificate, PEM.
    pub ca_file: PathBuf,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A member's: serves TLS to clients.
    Server,
    /// A client's: proves who connects to a member with
    /// `--client-cert-auth`.
    Client,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("wict-pki")
            .tempdir()
            .expect("a folder for the certificates");
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&ca_key).expect("a CA certificate");
        let ca_file = dir.path().join(format!("{name}.pem"));
        std::fs::write(&ca_file, ca.pem()).expect("the CA file");
        Pki {
            dir,
            ca,
            ca_key,
            ca_file,
        }
    }

    /// How members serve with a certificate of this CA for `names`, and
    /// a client certificate `node` they accept.
    pub fn server_tls(&self, names: &[&str]) -> ServerTls {
        ServerTls {
            ca_file: self.ca_file.clone(),
            server: self.issue("member", names, Use::Server, false),
            client: self.issue("node", &["node"], Use::Client, false),
            server_name: None,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate signed by this CA for `names` (host names or
    /// addresses), named `file` in the folder; `expired` makes one that
    /// ended in 2020.
    pub fn issue(&self, file: &str, names: &[&str], usage: Use, expired: bool) -> Issued {
        let key = KeyPair::generate().expect("a key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("certificate params");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(file));
        params.extended_key_usages = vec![match usage {
            Use::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Use::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("a signed certificate");
        let issued = Issued {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}-key.pem")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("the certificate file");
        std::fs::write(&issued.key, key.serialize_pem()).expect("the key file");
        issued
    }
}

/// How a TLS cluster's members serve, and how the testkit's own probes
/// connect to them.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub ca_file: PathBuf,
    /// The members' certificate and key.
    pub server: Issued,
    /// A client certificate the members accept, for the probes.
    pub client: Issued,
    /// The name the members' certificate carries, when it carries no
    /// address.
    pub server_name: Option<String>,
}

impl ServerTls {
    /// Connect options for the testkit's probes.
    pub fn options(&self) -> etcd_client::ConnectOptions {
        let read = |p: &Path| std::fs::read(p).expect("a PEM file");
        let mut tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca_file)))
            .identity(etcd_client::Identity::from_pem(
                read(&self.client.cert),
                read(&self.client.key),
            ));
        if let Some(name) = &self.server_name {
            tls = tls.domain_name(name.clone());
        }
        etcd_client::ConnectOptions::new().with_tls(tls)
    }
}
