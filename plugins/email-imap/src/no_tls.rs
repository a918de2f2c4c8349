//! This build has no TLS (the `tls` feature is off): IMAPS and STARTTLS are refused
//! with a sentence saying so, rather than falling back to plaintext.

use crate::imap::Session;
use crate::{Settings, Stream};
use rapport_pdk::prelude::*;
use std::io::{Read, Write};

fn unavailable(settings: &Settings) -> ConnectorError {
    ConnectorError::Config(format!(
        "this build of email-imap has no TLS (built without its `tls` feature), so it cannot reach {} securely; use a build with TLS",
        settings.host
    ))
}

pub fn wrap<S: Read + Write + 'static>(
    _: S,
    settings: &Settings,
) -> Result<Box<dyn Stream>, ConnectorError> {
    Err(unavailable(settings))
}

pub fn starttls(
    _: Session<Box<dyn Stream>>,
    settings: &Settings,
) -> Result<Session<Box<dyn Stream>>, ConnectorError> {
    Err(unavailable(settings))
}
