//! A small blocking HTTP client over `wasi:http`, with JSON and the contract's error
//! mapping built in. The host decides where requests may go: a request to a host the
//! connector was not granted fails with [`ConnectorError::Config`] naming the host.

use crate::{ConnectorError, RateLimit};
use serde::de::DeserializeOwned;

/// The most response body a request reads before failing; the host caps it too.
pub const RESPONSE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// An HTTP request being built.
#[derive(Debug, Clone)]
// Outside wasm32 there is no transport to read the method and body.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// The methods connectors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower case.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Percent-encodes `value` for use as one query parameter value (RFC 3986 unreserved
/// characters pass; everything else, `=`, `+`, `/` and `&` included, is escaped), e.g.
/// an opaque pagination cursor.
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Starts a GET request.
pub fn get(url: &str) -> Request {
    Request {
        method: Method::Get,
        url: url.to_owned(),
        headers: vec![("accept".into(), b"application/json".to_vec())],
        body: Vec::new(),
    }
}

/// Starts a POST request with a body.
pub fn post(url: &str, body: Vec<u8>) -> Request {
    Request {
        method: Method::Post,
        url: url.to_owned(),
        headers: Vec::new(),
        body,
    }
}

impl Request {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Adds `Authorization` with the connection's current OAuth 2.0 access token
    /// ([`crate::auth::access_token`]). When the source then answers 401, return the
    /// `auth` error that [`Request::send_ok`] makes of it: the host refreshes the token
    /// and repeats the call.
    pub fn oauth(self) -> Result<Self, ConnectorError> {
        let token = crate::auth::access_token()?;
        Ok(self.header(
            "authorization",
            &format!("{} {}", token.token_type, token.token),
        ))
    }

    /// Sends the request and returns the response whatever its status.
    pub fn send(self) -> Result<Response, ConnectorError> {
        let target = Target::parse(&self.url)?;
        transport::send(&self, &target)
    }

    /// Sends the request and maps non-2xx statuses to the contract's errors (see
    /// [`error_for_status`]).
    pub fn send_ok(self) -> Result<Response, ConnectorError> {
        let response = self.send()?;
        match error_for_status(&response) {
            Some(error) => Err(error),
            None => Ok(response),
        }
    }
}

impl Response {
    /// The first value of a header, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// Parses the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ConnectorError> {
        serde_json::from_slice(&self.body).map_err(|error| {
            ConnectorError::Transient(format!("the response was not the JSON expected: {error}"))
        })
    }
}

/// Maps an HTTP status to the contract's error kinds: 401/403 → `auth`, 429 →
/// `rate-limited` (honouring `Retry-After` in seconds, default 60 s), 5xx and 408 →
/// `transient`, other 4xx → `fatal`. `None` for success.
pub fn error_for_status(response: &Response) -> Option<ConnectorError> {
    let status = response.status;
    let excerpt: String = String::from_utf8_lossy(&response.body)
        .chars()
        .take(200)
        .collect();
    match status {
        200..=299 => None,
        401 | 403 => Some(ConnectorError::Auth(format!("HTTP {status}: {excerpt}"))),
        429 => Some(ConnectorError::RateLimited(RateLimit {
            retry_after_ms: retry_after_ms(response).unwrap_or(60_000),
            message: format!("HTTP 429: {excerpt}"),
        })),
        408 | 500..=599 => Some(ConnectorError::Transient(format!(
            "HTTP {status}: {excerpt}"
        ))),
        _ => Some(ConnectorError::Fatal(format!("HTTP {status}: {excerpt}"))),
    }
}

/// How long the response asks to wait (`Retry-After`: delay-seconds, or an HTTP-date
/// measured from now), in milliseconds; `None` without a usable header.
pub fn retry_after_ms(response: &Response) -> Option<u64> {
    let value = response.header("retry-after")?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.timestamp_micros().saturating_sub(crate::time::now()) / 1000;
    Some(u64::try_from(wait).unwrap_or(0))
}

/// A URL split the way `wasi:http` wants it.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    https: bool,
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, ConnectorError> {
        let bad = |why: &str| ConnectorError::Config(format!("`{url}` is not a usable URL: {why}"));
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("it must start with https:// or http://"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("it needs a host, without credentials"));
        }
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Target {
            https,
            authority: authority.to_owned(),
            path_and_query,
        })
    }
}

#[cfg(target_arch = "wasm32")]
mod transport {
    use super::{Method, RESPONSE_BYTES_MAX, Request, Response, Target};
    use crate::ConnectorError;
    use std::io::Read;
    use wasip2::http::outgoing_handler::{ErrorCode, handle};
    use wasip2::http::types::{
        Fields, Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme,
    };

    pub(super) fn send(request: &Request, target: &Target) -> Result<Response, ConnectorError> {
        let entries: Vec<(String, Vec<u8>)> = request.headers.clone();
        let headers = Fields::from_list(&entries)
            .map_err(|error| ConnectorError::Fatal(format!("invalid request header: {error:?}")))?;
        let outgoing = OutgoingRequest::new(headers);
        let method = match request.method {
            Method::Get => WasiMethod::Get,
            Method::Post => WasiMethod::Post,
        };
        let scheme = if target.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let invalid = |what: &str| ConnectorError::Config(format!("invalid request {what}"));
        outgoing
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        outgoing
            .set_authority(Some(&target.authority))
            .map_err(|()| invalid("host"))?;
        outgoing
            .set_path_with_query(Some(&target.path_and_query))
            .map_err(|()| invalid("path"))?;
        let body = outgoing.body().map_err(|()| invalid("body"))?;
        if !request.body.is_empty() {
            let stream = body.write().map_err(|()| invalid("body stream"))?;
            for chunk in request.body.chunks(4096) {
                stream.blocking_write_and_flush(chunk).map_err(|error| {
                    ConnectorError::Transient(format!("sending the body failed: {error:?}"))
                })?;
            }
            drop(stream);
        }
        OutgoingBody::finish(body, None).map_err(|error| {
            ConnectorError::Transient(format!("sending the body failed: {error:?}"))
        })?;
        let future = handle(outgoing, None).map_err(|error| classify(error, &target.authority))?;
        future.subscribe().block();
        let incoming = future
            .get()
            .ok_or_else(|| ConnectorError::Transient("no response arrived".into()))?
            .map_err(|()| ConnectorError::Fatal("the response was already taken".into()))?
            .map_err(|error| classify(error, &target.authority))?;
        let status = incoming.status();
        let headers = incoming
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
        let body = incoming
            .consume()
            .map_err(|()| ConnectorError::Fatal("the response body was already taken".into()))?;
        let mut stream = body
            .stream()
            .map_err(|()| ConnectorError::Fatal("the response body was already taken".into()))?;
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match Read::read(&mut stream, &mut chunk) {
                Ok(0) => break,
                Ok(read) => {
                    if bytes.len() + read > RESPONSE_BYTES_MAX {
                        return Err(ConnectorError::Fatal(format!(
                            "the response from {} is larger than {RESPONSE_BYTES_MAX} bytes",
                            target.authority
                        )));
                    }
                    bytes.extend_from_slice(&chunk[..read]);
                }
                Err(error) => {
                    return Err(ConnectorError::Transient(format!(
                        "reading the response from {} failed: {error}",
                        target.authority
                    )));
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }

    fn classify(error: ErrorCode, authority: &str) -> ConnectorError {
        match error {
            ErrorCode::HttpRequestDenied => ConnectorError::Config(format!(
                "the host refused the request to {authority}: it is not among this connector's allowed hosts"
            )),
            ErrorCode::DnsTimeout
            | ErrorCode::DnsError(_)
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::HttpResponseTimeout => {
                ConnectorError::Transient(format!("cannot reach {authority}: {error:?}"))
            }
            other => ConnectorError::Transient(format!("request to {authority} failed: {other:?}")),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod transport {
    use super::{Request, Response, Target};
    use crate::ConnectorError;

    /// Outside a component there is no `wasi:http` to send through.
    pub(super) fn send(_: &Request, target: &Target) -> Result<Response, ConnectorError> {
        Err(ConnectorError::Fatal(format!(
            "cannot reach {}: HTTP is only available inside a wasm32-wasip2 component",
            target.authority
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(encode_query_value("M+a/b=&c d"), "M%2Ba%2Fb%3D%26c%20d");
        assert_eq!(encode_query_value("é"), "%C3%A9");
    }

    #[test]
    fn urls_split_for_wasi_http() {
        assert_eq!(
            Target::parse("https://api.stripe.com/v1/events?limit=100").unwrap(),
            Target {
                https: true,
                authority: "api.stripe.com".into(),
                path_and_query: "/v1/events?limit=100".into()
            }
        );
        assert_eq!(
            Target::parse("http://127.0.0.1:8080")
                .unwrap()
                .path_and_query,
            "/"
        );
        assert_eq!(
            Target::parse("http://h?x=1").unwrap().path_and_query,
            "/?x=1"
        );
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("https://user:pw@host/").is_err());
    }

    #[test]
    fn statuses_map_to_contract_errors() {
        let response = |status, headers: Vec<(&str, &str)>| Response {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: b"nope".to_vec(),
        };
        assert!(error_for_status(&response(204, vec![])).is_none());
        assert!(matches!(
            error_for_status(&response(401, vec![])),
            Some(ConnectorError::Auth(_))
        ));
        assert!(matches!(
            error_for_status(&response(429, vec![("retry-after", "7")])),
            Some(ConnectorError::RateLimited(RateLimit {
                retry_after_ms: 7000,
                ..
            }))
        ));
        assert!(matches!(
            error_for_status(&response(503, vec![])),
            Some(ConnectorError::Transient(_))
        ));
        assert!(matches!(
            error_for_status(&response(404, vec![])),
            Some(ConnectorError::Fatal(_))
        ));
    }
}
