//! TLS for IMAPS and STARTTLS: rustls (RustCrypto provider, pure Rust) compiled into the plugin, trusting
//! the public web PKI roots plus, when configured, the operator's own CA.

use crate::imap::Session;
use crate::{Settings, Stream};
use rapport_pdk::prelude::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::sync::Arc;

fn client_config(settings: &Settings) -> Result<Arc<ClientConfig>, ConnectorError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = &settings.ca_certificate {
        let mut added = 0;
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let certificate = certificate.map_err(|error| {
                ConnectorError::Config(format!("ca_certificate is not a PEM certificate: {error}"))
            })?;
            roots.add(certificate).map_err(|error| {
                ConnectorError::Config(format!("ca_certificate cannot be trusted: {error}"))
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(ConnectorError::Config(
                "ca_certificate holds no `-----BEGIN CERTIFICATE-----` block".into(),
            ));
        }
    }
    let provider = Arc::new(rustls_rustcrypto::provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ConnectorError::Fatal(format!("TLS setup failed: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// TLS over `stream`, with the handshake completed (so its failures are reported here,
/// as what they are, rather than as a broken IMAP greeting).
pub fn wrap<S: Read + Write + 'static>(
    mut stream: S,
    settings: &Settings,
) -> Result<Box<dyn Stream>, ConnectorError> {
    let name = ServerName::try_from(settings.host.clone()).map_err(|_| {
        ConnectorError::Config(format!(
            "host `{}` is not a valid TLS server name",
            settings.host
        ))
    })?;
    let mut connection = ClientConnection::new(client_config(settings)?, name)
        .map_err(|error| ConnectorError::Fatal(format!("TLS setup failed: {error}")))?;
    while connection.is_handshaking() {
        connection.complete_io(&mut stream).map_err(|error| {
            let place = format!("{}:{}", settings.host, settings.port);
            let certificate = error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|inner| matches!(inner, rustls::Error::InvalidCertificate(_)));
            if certificate {
                ConnectorError::Config(format!(
                    "{place} presented a certificate that is not trusted: {error} (for a private CA, set ca_certificate)"
                ))
            } else {
                ConnectorError::Transient(format!("TLS handshake with {place} failed: {error}"))
            }
        })?;
    }
    Ok(Box::new(StreamOwned::new(connection, stream)))
}

/// `STARTTLS`, then the rest of the session over TLS.
pub fn starttls(
    session: Session<Box<dyn Stream>>,
    settings: &Settings,
) -> Result<Session<Box<dyn Stream>>, ConnectorError> {
    let plain = session.starttls().map_err(|error| {
        ConnectorError::Config(format!(
            "{} does not offer STARTTLS ({error}); use security = \"tls\" on port 993",
            settings.host
        ))
    })?;
    Ok(Session::resume(wrap(plain, settings)?))
}
