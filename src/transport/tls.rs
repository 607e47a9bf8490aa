//! TLS on the client side (rustls), for FTPS and HTTPS: which TLS a mount
//! speaks, and how the server's certificate is trusted.
//!
//! - Verified by default against the system's roots plus `--ca-file`.
//! - `--pin-sha256 HEX` trusts exactly one certificate (its DER's
//!   SHA-256), whatever its issuer or names: for a NAS with a self-signed
//!   certificate. Handshake signatures are still checked against it.
//! - Data connections resume the control connection's TLS session (rustls
//!   keeps the session per server name in the config's store), as servers
//!   that refuse data theft require. keyfs speaks TLS 1.2 for this: a TLS
//!   1.2 session resumes any number of times, while rustls uses each TLS
//!   1.3 ticket once, and a server gives only a few per control
//!   connection, so the data connections after them would be refused.
//!   rustls offers only forward-secret AEAD suites with the extended
//!   master secret under 1.2.
//! - HTTPS has no data connections to resume: it speaks TLS 1.3 or 1.2
//!   ([`TlsClient::for_https`]), with the same trust.
//! - A certificate that is not trusted is a permanent error naming the
//!   host and the reason (`untrusted`), on the first connection and on
//!   every reconnect alike: never retried, never downgraded.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// How a mount's connections use TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Tls {
    /// Plain FTP.
    #[default]
    Off,
    /// `AUTH TLS` on the ordinary port (`ftpes://`, or `ftp://` with `-o tls=require`).
    Explicit(TlsClient),
    /// TLS from the first byte (`ftps://`, port 990; `https://`, port 443).
    Implicit(TlsClient),
}

impl Tls {
    /// The client config, unless plain.
    pub fn client(&self) -> Option<&TlsClient> {
        match self {
            Tls::Off => None,
            Tls::Explicit(c) | Tls::Implicit(c) => Some(c),
        }
    }
}

/// A rustls client config and what it trusts.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// What is trusted, for messages: "system roots", "system roots and FILE", "pin HEX".
    pub trust: String,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsClient({})", self.trust)
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}
impl Eq for TlsClient {}

impl TlsClient {
    /// For FTPS (TLS 1.2, see the module doc): trusts the system's roots
    /// and the certificates in `ca_file`, or only the certificate whose
    /// SHA-256 is `pin`.
    pub fn new(ca_file: Option<&Path>, pin: Option<[u8; 32]>) -> Result<TlsClient, String> {
        Self::build(ca_file, pin, &[&rustls::version::TLS12])
    }

    /// For HTTPS: the same trust, TLS 1.3 or 1.2, ALPN `http/1.1`.
    pub fn for_https(ca_file: Option<&Path>, pin: Option<[u8; 32]>) -> Result<TlsClient, String> {
        let mut c = Self::build(
            ca_file,
            pin,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )?;
        if let Some(cfg) = Arc::get_mut(&mut c.config) {
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        Ok(c)
    }

    fn build(
        ca_file: Option<&Path>,
        pin: Option<[u8; 32]>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<TlsClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS: {e}"))?;
        let (config, trust) = match pin {
            Some(pin) => {
                let v = PinVerifier {
                    pin,
                    algs: provider.signature_verification_algorithms,
                };
                let cfg = builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(v))
                    .with_no_client_auth();
                (cfg, format!("pin {}", hex(&pin)))
            }
            None => {
                let mut roots = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                let (n, _) = roots.add_parsable_certificates(native.certs);
                let mut trust = format!("system roots ({n})");
                if let Some(f) = ca_file {
                    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(f)
                        .map_err(|e| format!("--ca-file {}: {e}", f.display()))?
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("--ca-file {}: {e}", f.display()))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!("--ca-file {}: no certificate found", f.display()));
                    }
                    trust = format!("system roots and {}", f.display());
                }
                if roots.is_empty() {
                    return Err(
                        "no trusted certificates: the system has no CA roots; give --ca-file or --pin-sha256"
                            .into(),
                    );
                }
                let cfg = builder.with_root_certificates(roots).with_no_client_auth();
                (cfg, trust)
            }
        };
        Ok(TlsClient {
            config: Arc::new(config),
            trust,
        })
    }
}

impl TlsClient {
    /// A copy with a session store of its own, for one control connection
    /// and its data connections: the store is keyed by server name, and a
    /// shared one would make a data connection resume another control
    /// connection's session, which a careful server refuses.
    pub fn for_session(&self) -> TlsClient {
        let mut cfg = (*self.config).clone();
        cfg.resumption = rustls::client::Resumption::in_memory_sessions(4);
        TlsClient {
            config: Arc::new(cfg),
            trust: self.trust.clone(),
        }
    }
}

/// Parses `--pin-sha256`: 64 hex digits, colons allowed (as openssl prints them).
pub fn parse_pin(s: &str) -> Result<[u8; 32], String> {
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    let bad = || format!("--pin-sha256 {s:?}: expected 64 hex digits (a SHA-256)");
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// The SHA-256 of a certificate's DER, as `--pin-sha256` takes it.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Trusts one certificate by its SHA-256.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = cert_sha256(end_entity);
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate SHA-256 {} is not the pinned {}",
                hex(&got),
                hex(&self.pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The one-line message for a handshake that failed because the server's
/// certificate is not trusted (`trust`: what the client trusts), or None
/// for any other TLS error (a retry may work).
pub(crate) fn untrusted(host: &str, trust: &str, e: &rustls::Error) -> Option<String> {
    match e {
        rustls::Error::InvalidCertificate(c) => Some(format!(
            "certificate of {host} not trusted ({trust}): {}",
            cert_reason(c)
        )),
        // The pin verifier's refusal.
        rustls::Error::General(g) => Some(format!("certificate of {host} not trusted: {g}")),
        _ => None,
    }
}

/// An untrusted certificate as the transports' one error: permanent
/// (`InvalidInput`), so no reconnect loop retries it.
pub(crate) fn untrusted_error(msg: String) -> super::RemoteError {
    super::RemoteError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg))
}

fn cert_reason(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match c {
        C::UnknownIssuer => "unknown issuer (not signed by a trusted CA)".into(),
        C::BadSignature => "bad signature (not signed by a trusted CA)".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the certificate is for another host name".into()
        }
        C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "the certificate is not valid yet".into(),
        C::Revoked => "the certificate is revoked".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_with_or_without_colons() {
        let hexs = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let p = parse_pin(hexs).ok();
        assert_eq!(p.map(|p| p[1]), Some(0x11));
        assert_eq!(p.map(|p| p[31]), Some(0xff));
        let colons: Vec<String> = (0..32)
            .map(|i| hexs[2 * i..2 * i + 2].to_string())
            .collect();
        assert_eq!(parse_pin(&colons.join(":")).ok(), p);
        assert!(parse_pin("abc").is_err());
        assert!(parse_pin(&"zz".repeat(32)).is_err());
    }
}
