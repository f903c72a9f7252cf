//! TLS for PostgreSQL sources, with libpq's `sslmode` and `sslrootcert` in the connection URL.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and nothing of certificates; this module
//! takes libpq's options off the URL and builds a rustls connector that does what libpq does:
//!
//! | `sslmode` | encrypted | certificate checked against the roots | host name checked |
//! |---|---|---|---|
//! | `disable` | no | | |
//! | `prefer` | if the server offers it | no | no |
//! | `require` | yes | no (yes when `sslrootcert` is given, as libpq does) | no |
//! | `verify-ca` | yes | yes | no |
//! | `verify-full` (the default) | yes | yes | yes |
//!
//! The roots are the PEM file `sslrootcert` names, else `~/.postgresql/root.crt` when it exists,
//! else the system's trusted roots (`sslrootcert=system` asks for those explicitly).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" | "allow" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode '{other}' is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// The TLS options of a connection: what is left of the URL for tokio-postgres, the mode and the
/// root certificate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The connection URL or `key=value` string without `sslmode` and `sslrootcert`.
    pub location: String,
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file, or `None` for the default roots.
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` off a connection URL (`postgres://...?sslmode=...`) or a
/// `key=value` connection string. Without `sslmode` the connection is `verify-full`.
pub fn split_tls_options(location: &str) -> Result<TlsOptions, String> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => mode = Some(SslMode::parse(value)?),
            "sslrootcert" if value == "system" => root_cert = None,
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        let mut url = url::Url::parse(location).map_err(|e| e.to_string())?;
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            if !take(&k, &v)? {
                kept.push((k.into_owned(), v.into_owned()));
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        url.to_string()
    } else {
        let mut kept = Vec::new();
        for token in location.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if take(k, v)? => {}
                _ => kept.push(token),
            }
        }
        kept.join(" ")
    };
    Ok(TlsOptions {
        location: rest,
        mode: mode.unwrap_or(SslMode::VerifyFull),
        root_cert,
    })
}

/// The mode tokio-postgres is told: it only decides whether TLS is asked for and whether it may be
/// done without; the checks are the connector's.
pub fn wire_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
    match mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    }
}

/// A rustls connector for the mode, or `None` for `disable`.
pub fn connector(
    options: &TlsOptions,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let checks = match (options.mode, &options.root_cert) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Prefer, _) | (SslMode::Require, None) => Checks::None,
        (SslMode::Require | SslMode::VerifyCa, Some(_)) | (SslMode::VerifyCa, None) => {
            Checks::Chain
        }
        (SslMode::VerifyFull, _) => Checks::ChainAndName,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match checks {
        Checks::None => Arc::new(Unchecked(Arc::clone(&provider))),
        Checks::Chain | Checks::ChainAndName => {
            let roots = roots(options.root_cert.as_deref())?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("cannot use the root certificates: {e}"))?;
            if checks == Checks::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checks {
    None,
    Chain,
    ChainAndName,
}

/// The roots certificates are checked against.
fn roots(file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let home_root = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
        .filter(|p| p.exists());
    let file = file.map(Path::to_path_buf).or(home_root);
    match file {
        Some(path) => {
            let pem = std::fs::read(&path)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            let mut found = 0;
            for cert in rustls_pemfile_certs(&pem) {
                store
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                found += 1;
            }
            if found == 0 {
                return Err(format!(
                    "sslrootcert {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(
                    "no trusted root certificates on this system: give sslrootcert=FILE in the URL"
                        .into(),
                );
            }
        }
    }
    Ok(store)
}

/// The certificates in a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(std::result::Result::ok)
        .collect()
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` and `prefer`: encrypted, the certificate taken as it comes (the handshake's
/// signatures are still checked, so the connection is with the holder of the certificate's key).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
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
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_options_come_off_the_url_and_verify_full_is_the_default() {
        let o =
            split_tls_options("postgres://u@db:5432/crm").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(o.mode, SslMode::VerifyFull);
        assert_eq!(o.location, "postgres://u@db:5432/crm");
        let o = split_tls_options(
            "postgres://u@db/crm?sslmode=verify-ca&application_name=x&sslrootcert=/etc/ca.pem",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(o.mode, SslMode::VerifyCa);
        assert_eq!(o.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(o.location, "postgres://u@db/crm?application_name=x");
        let o = split_tls_options("host=db user=u sslmode=disable")
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (o.mode, o.location.as_str()),
            (SslMode::Disable, "host=db user=u")
        );
        assert!(split_tls_options("postgres://db/crm?sslmode=maybe").is_err());
    }

    #[test]
    fn the_mode_decides_what_is_checked() {
        let opts = |mode, root_cert: Option<&str>| TlsOptions {
            location: String::new(),
            mode,
            root_cert: root_cert.map(PathBuf::from),
        };
        assert!(matches!(connector(&opts(SslMode::Disable, None)), Ok(None)));
        assert!(matches!(
            connector(&opts(SslMode::Require, None)),
            Ok(Some(_))
        ));
        // A root file that is not there is an error naming it, not a silent fallback.
        let err = connector(&opts(SslMode::VerifyFull, Some("/no/such/ca.pem")))
            .err()
            .unwrap_or_default();
        assert!(err.contains("/no/such/ca.pem"), "{err}");
        assert_eq!(
            wire_mode(SslMode::VerifyFull),
            tokio_postgres::config::SslMode::Require
        );
    }
}
