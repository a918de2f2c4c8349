//! Credentials the host holds for the connector: OAuth 2.0 access tokens, and which
//! connection a call is for.
//!
//! A connector that declares OAuth 2.0 ([`crate::ManifestBuilder::oauth2`]) never sees
//! a refresh token. It asks for the current access token on every call that needs one
//! (the host refreshes it when due) and, when the source refuses it, fails the call
//! with [`ConnectorError::Auth`]: the host then refreshes once and repeats the call.

use crate::bindings::rapport::connector::host;
use crate::{Config, Connection, ConnectorError};

pub use crate::bindings::rapport::connector::host::Token;

/// The current access token of the call's connection. Never log it.
pub fn access_token() -> Result<Token, ConnectorError> {
    host::access_token()
}

/// The SASL XOAUTH2 initial response for `user` (Google's and Microsoft's IMAP and
/// SMTP), unencoded: `user=<user>^Aauth=Bearer <token>^A^A`. Base64 it for `AUTHENTICATE
/// XOAUTH2`.
pub fn xoauth2(user: &str, token: &Token) -> String {
    format!(
        "user={user}\x01auth={} {}\x01\x01",
        scheme(token),
        token.token
    )
}

/// The scheme to send a token under: `Bearer` as servers expect it, whatever case the
/// provider's `token_type` has (RFC 6749 makes it case-insensitive).
fn scheme(token: &Token) -> &str {
    if token.token_type.eq_ignore_ascii_case("bearer") {
        "Bearer"
    } else {
        &token.token_type
    }
}

/// The SASL OAUTHBEARER initial response (RFC 7628, section 3.1) for `user`,
/// unencoded.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &Token) -> String {
    format!(
        "n,a={},\x01host={host}\x01port={port}\x01auth={} {}\x01\x01",
        user.replace('=', "=3D").replace(',', "=2C"),
        scheme(token),
        token.token
    )
}

impl Config {
    /// The connection this call is for, when it runs in one.
    pub fn connection(&self) -> Option<&Connection> {
        self.connection.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token {
            token: "ya29.abc".into(),
            token_type: "Bearer".into(),
            expires_at: None,
        }
    }

    #[test]
    fn xoauth2_is_the_providers_format() {
        assert_eq!(
            xoauth2("sam@example.com", &token()),
            "user=sam@example.com\u{1}auth=Bearer ya29.abc\u{1}\u{1}"
        );
    }

    #[test]
    fn oauthbearer_escapes_the_authorization_identity() {
        // RFC 7628 section 3.1: `,` and `=` in the saslname are escaped.
        assert_eq!(
            oauthbearer("a,b=c@example.com", "imap.example.com", 993, &token()),
            "n,a=a=2Cb=3Dc@example.com,\u{1}host=imap.example.com\u{1}port=993\u{1}auth=Bearer ya29.abc\u{1}\u{1}"
        );
    }
}
