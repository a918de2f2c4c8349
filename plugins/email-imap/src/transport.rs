//! The byte stream under the IMAP session: TCP through `wasi:sockets`, and TLS over it
//! (implicit on port 993, or STARTTLS), or plaintext when the operator says so.

use crate::imap::Session;
use crate::{Settings, Stream};
use rapport_pdk::prelude::*;
use std::net::TcpStream;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (IMAPS).
    Tls,
    /// Plaintext greeting, then `STARTTLS` before anything else is said.
    StartTls,
    /// No protection: passwords cross the network readable. Only when configured.
    Plaintext,
}

impl Security {
    pub fn parse(setting: Option<&str>) -> Result<Security, ConnectorError> {
        match setting.map(str::trim) {
            None | Some("tls") => Ok(Security::Tls),
            Some("starttls") => Ok(Security::StartTls),
            Some("plaintext") => Ok(Security::Plaintext),
            Some(other) => Err(ConnectorError::Config(format!(
                "security `{other}` is not one of tls, starttls, plaintext"
            ))),
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Security::Tls => 993,
            Security::StartTls | Security::Plaintext => 143,
        }
    }
}

/// Opens the TCP connection (and, for implicit TLS, the TLS session over it).
pub fn connect(settings: &Settings) -> Result<Box<dyn Stream>, ConnectorError> {
    let tcp = TcpStream::connect((settings.host.as_str(), settings.port)).map_err(|error| {
        let place = format!("{}:{}", settings.host, settings.port);
        match error.kind() {
            std::io::ErrorKind::PermissionDenied => ConnectorError::Config(format!(
                "the host refused a connection to {place}: grant it in this connector's allowed_hosts"
            )),
            _ => ConnectorError::Transient(format!("cannot reach {place}: {error}")),
        }
    })?;
    match settings.security {
        Security::Plaintext | Security::StartTls => Ok(Box::new(tcp)),
        Security::Tls => crate::tls::wrap(tcp, settings),
    }
}

/// For STARTTLS: asks the server to start TLS and continues over it.
pub fn upgrade(
    session: Session<Box<dyn Stream>>,
    settings: &Settings,
) -> Result<Session<Box<dyn Stream>>, ConnectorError> {
    match settings.security {
        Security::StartTls => crate::tls::starttls(session, settings),
        Security::Tls | Security::Plaintext => Ok(session),
    }
}
