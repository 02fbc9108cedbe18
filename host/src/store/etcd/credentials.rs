//! What a call shows etcd of itself, and what it makes of etcd's refusals:
//! the TLS settings and the etcd user of `ipam.store.etcd`.
//!
//! - The files (`caFile`, `certFile`, `keyFile`, `passwordFile`) are read
//!   when a call connects, so each call, one-shot or in `wasm-ipam serve`,
//!   uses what is on disk now: a rotated certificate is taken by the next
//!   call. They are read only if no one but root can change them or a
//!   folder above them (`trust::read_trusted`: a CA a local user could swap
//!   would let them stand in for etcd), following links, as a Kubernetes
//!   Secret's files are links.
//! - Before any traffic: a file that cannot be read, a CA file without a
//!   certificate, or a key that is not the certificate's, is code 7 naming
//!   the field.
//! - A member's certificate that does not verify, a client certificate it
//!   refuses, a wrong password or a user without a role on the prefix are
//!   not "try again later": the same call would meet them again. They end
//!   the call at once, code 7, naming the endpoint and etcd's reason
//!   ([`refusal`]).

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::handshake::Handshake;
use crate::cni::config::EtcdConf;
use crate::store::StoreError;
use crate::trust::{FileError, read_trusted};

/// The most read of a PEM file or a password file: a certificate chain is
/// a few kilobytes.
const MAX_FILE: u64 = 1 << 20;

fn config_error(field: &str, path: &std::path::Path, why: impl std::fmt::Display) -> StoreError {
    StoreError::Config(format!("ipam.store.etcd.{field} {}: {why}", path.display()))
}

fn read(field: &str, path: &std::path::Path) -> Result<Vec<u8>, StoreError> {
    read_trusted(path, MAX_FILE).map_err(|e| match e {
        FileError::Io(io) => config_error(field, path, format!("cannot be read: {io}")),
        FileError::Refused(why) => config_error(field, path, format!("is refused: {why}")),
    })
}

/// What a call connects with: etcd-client's options, and, over TLS, the
/// same certificates for [`Handshake::refusal`].
pub(super) struct Credentials {
    pub options: ConnectOptions,
    pub handshake: Option<Handshake>,
}

/// `options` with the config's TLS settings and user, read from disk now.
pub(super) fn apply(
    conf: &EtcdConf,
    mut options: ConnectOptions,
) -> Result<Credentials, StoreError> {
    let mut handshake = None;
    if let Some(tls) = &conf.tls {
        let ca = read("tls.caFile", &tls.ca_file)?;
        let roots = pem_certificates("tls.caFile", &tls.ca_file, &ca)?;
        let mut options_tls = TlsOptions::new().ca_certificate(Certificate::from_pem(&ca));
        let mut identity = None;
        if let Some((cert_file, key_file)) = &tls.client {
            let cert = read("tls.certFile", cert_file)?;
            let key = read("tls.keyFile", key_file)?;
            identity = Some(matching(&cert, cert_file, &key, key_file)?);
            options_tls = options_tls.identity(Identity::from_pem(&cert, &key));
        }
        if let Some(name) = &tls.server_name {
            options_tls = options_tls.domain_name(name.clone());
        }
        options = options.with_tls(options_tls);
        handshake = Some(
            Handshake::new(roots, identity, tls.server_name.clone())
                .map_err(|e| config_error("tls", &tls.ca_file, format!("cannot be used: {e}")))?,
        );
    }
    if let Some(auth) = &conf.auth {
        let password = read("passwordFile", &auth.password_file)?;
        let password = String::from_utf8(password)
            .map_err(|_| config_error("passwordFile", &auth.password_file, "is not UTF-8 text"))?;
        // A file written with `echo` ends in a newline that is no part of
        // the password.
        let password = password.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(config_error(
                "passwordFile",
                &auth.password_file,
                "is empty",
            ));
        }
        // etcd's tokens expire (a simple token after --auth-token-ttl, 5
        // minutes by default): a long call, or a GC over many networks,
        // logs in again rather than failing.
        options = options
            .with_user(auth.username.clone(), password.to_string())
            .with_auto_token_refresh(true);
    }
    Ok(Credentials { options, handshake })
}

/// The certificates of a PEM file; code 7 naming `field` for none.
fn pem_certificates(
    field: &str,
    path: &std::path::Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| config_error(field, path, format!("is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(config_error(field, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Checks that the key is the certificate's, and returns both: a mismatch
/// would only show as a refused handshake, on every member, with no word of
/// why.
fn matching(
    cert: &[u8],
    cert_file: &std::path::Path,
    key: &[u8],
    key_file: &std::path::Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), StoreError> {
    let chain = pem_certificates("tls.certFile", cert_file, cert)?;
    usable_now(cert_file, &chain[0])?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        config_error(
            "tls.keyFile",
            key_file,
            format!("holds no PEM private key: {e}"),
        )
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        config_error(
            "tls.keyFile",
            key_file,
            format!("is not a key TLS can use: {e}"),
        )
    })?;
    rustls::sign::CertifiedKey::new(chain.clone(), signer)
        .keys_match()
        .map_err(|_| {
            config_error(
                "tls.keyFile",
                key_file,
                format!(
                    "is not the private key of the certificate in {}",
                    cert_file.display()
                ),
            )
        })?;
    Ok((chain, key))
}

/// Checks that the client certificate is within its dates and meant for
/// a client: a member refuses any other with the one alert "bad
/// certificate", after the handshake, with no word of which.
fn usable_now(path: &std::path::Path, der: &CertificateDer) -> Result<(), StoreError> {
    let field = "tls.certFile";
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| config_error(field, path, format!("is not an X.509 certificate: {e}")))?;
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        return Err(config_error(
            field,
            path,
            format!("expired on {}: renew it", validity.not_after),
        ));
    }
    if now < validity.not_before {
        return Err(config_error(
            field,
            path,
            format!(
                "is not valid until {} (is this node's clock right?)",
                validity.not_before
            ),
        ));
    }
    if let Ok(Some(eku)) = cert.extended_key_usage()
        && !eku.value.any
        && !eku.value.client_auth
    {
        return Err(config_error(
            field,
            path,
            "is not a client certificate: its extended key usage lacks clientAuth",
        ));
    }
    Ok(())
}

/// Whether `e` is a refusal another attempt would meet again.
pub(super) fn refused(e: &etcd_client::Error) -> bool {
    refusal(e, "").is_some()
}

/// Why etcd, or the TLS handshake with a member, refused us, when that is
/// what `e` is: a refusal another attempt would meet again. `prefix` is
/// the config's, which a user's role must grant.
pub(super) fn refusal(e: &etcd_client::Error, prefix: &str) -> Option<String> {
    if let etcd_client::Error::GRpcStatus(s) = e {
        let text = s.message();
        if text.contains("authentication failed") {
            return Some(format!("the user and password are refused ({text})"));
        }
        if text.contains("permission denied") {
            return Some(format!(
                "the user has no role that grants it readwrite on the prefix {prefix} ({text}); \
                 etcdctl role grant-permission <role> --prefix=true readwrite {prefix}"
            ));
        }
        if text.contains("user name is empty") || text.contains("user name not found") {
            return Some(format!("the user is unknown ({text})"));
        }
    }
    // A failed handshake reaches a request as a gRPC status whose source
    // (not the crate error's) leads to the io::Error that carries rustls's.
    let mut err: Option<&(dyn std::error::Error + 'static)> = match e {
        etcd_client::Error::GRpcStatus(s) => std::error::Error::source(s),
        other => Some(other),
    };
    while let Some(now) = err {
        let tls = now.downcast_ref::<rustls::Error>().or_else(|| {
            now.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|i| i.downcast_ref::<rustls::Error>())
        });
        if let Some(tls) = tls {
            return Some(format!("the TLS handshake failed: {tls}{}", hint(tls)));
        }
        err = now.source();
    }
    None
}

/// What to change, for the handshake failures an operator meets.
fn hint(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "; set tls.serverName to a name the member's certificate carries"
            }
            C::UnknownIssuer | C::BadSignature => {
                "; tls.caFile must hold the CA that signed the members' certificates"
            }
            C::Expired | C::ExpiredContext { .. } => "; the member's certificate must be renewed",
            _ => "",
        },
        _ => "",
    }
}
