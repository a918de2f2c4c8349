//! Where a connector may connect. Deny by default: a destination is allowed only if it
//! matches a host the plugin declares in its manifest *and* one the operator grants,
//! and, after DNS resolution, every address it resolves to is public — or private and
//! explicitly allowed. Cloud metadata endpoints are refused always.

use crate::config::CallLimits;
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// How long resolving a granted host name may take.
const DNS_TIMEOUT_MS: u64 = 5_000;

/// A host pattern: `*`, `host`, `host:port` or `host:*`. A bare host means port 443.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    /// `None` matches any host (only plugins may declare that).
    host: Option<String>,
    /// `None` matches any port.
    port: Option<u16>,
}

impl HostPattern {
    pub(crate) fn parse(text: &str) -> Result<HostPattern, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(HostPattern {
                host: None,
                port: None,
            });
        }
        let (host, port) = split_port(text);
        let port = match port {
            None => Some(443),
            Some("*") => None,
            Some(digits) => Some(digits.parse::<u16>().map_err(|_| {
                format!("`{text}` has an invalid port; use host, host:port or host:*")
            })?),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        if !valid {
            return Err(format!("`{text}` is not a host name or address"));
        }
        Ok(HostPattern {
            host: Some(host),
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        self.host
            .as_deref()
            .is_none_or(|pattern| pattern.eq_ignore_ascii_case(host))
            && self.port.is_none_or(|pattern| pattern == port)
    }

    fn is_wildcard_host(&self) -> bool {
        self.host.is_none()
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or a bare IPv6 address into host and port.
fn split_port(text: &str) -> (&str, Option<&str>) {
    if let Some(rest) = text.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (text, None),
        };
    }
    match text.split_once(':') {
        // Exactly one colon: a name or IPv4 address with a port.
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (text, None),
    }
}

/// Why a destination was refused; recorded so the call fails with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denial {
    pub(crate) target: String,
    pub(crate) reason: String,
}

/// One connector's network policy.
#[derive(Debug, Clone)]
pub(crate) struct NetworkPolicy {
    declared: Vec<HostPattern>,
    granted: Vec<HostPattern>,
    allow_private: bool,
}

impl NetworkPolicy {
    /// Builds the policy, refusing operator grants that are not concrete hosts.
    pub(crate) fn new(
        declared: &[String],
        granted: &[String],
        allow_private: bool,
    ) -> Result<NetworkPolicy, String> {
        let declared = declared
            .iter()
            .map(|text| HostPattern::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        let granted = granted
            .iter()
            .map(|text| HostPattern::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        if granted.iter().any(HostPattern::is_wildcard_host) {
            return Err(
                "allowed_hosts may not contain `*`: name each host the connector may reach".into(),
            );
        }
        Ok(NetworkPolicy {
            declared,
            granted,
            allow_private,
        })
    }

    /// A policy that allows nothing (used for `describe`).
    pub(crate) fn deny_all() -> NetworkPolicy {
        NetworkPolicy {
            declared: Vec::new(),
            granted: Vec::new(),
            allow_private: false,
        }
    }

    /// Whether `host:port` is both declared and granted; `Err` says which is missing.
    pub(crate) fn permits_name(&self, host: &str, port: u16) -> Result<(), String> {
        let declared = self
            .declared
            .iter()
            .any(|pattern| pattern.matches(host, port));
        let granted = self
            .granted
            .iter()
            .any(|pattern| pattern.matches(host, port));
        match (declared, granted) {
            (true, true) => Ok(()),
            (false, _) => Err("the plugin does not declare this host in its manifest".into()),
            (true, false) => Err("the operator has not granted this host (allowed_hosts)".into()),
        }
    }

    /// Whether a resolved address may be contacted.
    pub(crate) fn permits_address(&self, ip: IpAddr) -> Result<(), String> {
        let ip = canonical(ip);
        if is_metadata(ip) {
            return Err(format!("{ip} is a cloud metadata address"));
        }
        if ip.is_unspecified() || ip.is_multicast() || is_broadcast(ip) {
            return Err(format!("{ip} is not a unicast address"));
        }
        if is_private(ip) && !self.allow_private {
            return Err(format!(
                "{ip} is a private, loopback or link-local address (set allow_private_networks to allow it)"
            ));
        }
        Ok(())
    }

    /// Resolves every concrete (declared ∩ granted) host to the socket addresses TCP
    /// may connect to during one call.
    pub(crate) async fn resolve_tcp_destinations(&self) -> Vec<(IpAddr, Option<u16>)> {
        let mut allowed = Vec::new();
        for (host, port) in self.tcp_grants() {
            let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => resolve(host, port.unwrap_or(0))
                    .await
                    .into_iter()
                    .map(|address| address.ip())
                    .collect(),
            };
            for ip in addresses {
                if self.permits_address(ip).is_ok() {
                    allowed.push((canonical(ip), port));
                }
            }
        }
        allowed
    }

    /// Each granted host with the ports both sides allow (`None`: any port): a grant of
    /// `host:*` against a declaration of `host:993` allows port 993 only.
    fn tcp_grants(&self) -> Vec<(&str, Option<u16>)> {
        let mut grants = Vec::new();
        for grant in &self.granted {
            let Some(host) = grant.host.as_deref() else {
                continue;
            };
            for declared in &self.declared {
                let host_matches = declared
                    .host
                    .as_deref()
                    .is_none_or(|name| name.eq_ignore_ascii_case(host));
                let port = match (declared.port, grant.port) {
                    (Some(a), Some(b)) if a != b => continue,
                    (Some(port), _) | (None, Some(port)) => Some(port),
                    (None, None) => None,
                };
                if host_matches && !grants.contains(&(host, port)) {
                    grants.push((host, port));
                }
            }
        }
        grants
    }
}

async fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    let lookup = tokio::net::lookup_host((host, port));
    match tokio::time::timeout(Duration::from_millis(DNS_TIMEOUT_MS), lookup).await {
        Ok(Ok(addresses)) => addresses.collect(),
        _ => Vec::new(),
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == Ipv4Addr::new(100, 100, 100, 200)
        }
        IpAddr::V6(v6) => v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    }
}

fn is_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || a == 0
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
        }
    }
}

/// Decides TCP socket operations during one call: connect only to resolved, allowed
/// destinations; bind only the implicit ephemeral bind a connect performs.
pub(crate) fn socket_check(
    destinations: Arc<Vec<(IpAddr, Option<u16>)>>,
    denials: Arc<Mutex<Vec<Denial>>>,
) -> impl Fn(SocketAddr, SocketAddrUse) -> Pin<Box<dyn Future<Output = bool> + Send + Sync>>
+ Send
+ Sync
+ 'static {
    move |address, use_| {
        let allowed = match use_ {
            SocketAddrUse::TcpBind => address.ip().is_unspecified() && address.port() == 0,
            SocketAddrUse::TcpConnect => {
                let ip = canonical(address.ip());
                destinations.iter().any(|(allowed, port)| {
                    *allowed == ip && port.is_none_or(|port| port == address.port())
                })
            }
            _ => false,
        };
        if !allowed {
            denials.lock().expect("denials lock").push(Denial {
                target: format!("tcp://{address}"),
                reason: format!(
                    "{use_:?} to {address} is not among the connector's granted destinations"
                ),
            });
        }
        Box::pin(std::future::ready(allowed))
    }
}

/// The `wasi:http` hooks: the allowlist, address checks, timeouts and a body cap.
pub(crate) struct HttpHooks {
    pub(crate) policy: Arc<NetworkPolicy>,
    pub(crate) denials: Arc<Mutex<Vec<Denial>>>,
    pub(crate) limits: CallLimits,
}

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _guest_options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let policy = self.policy.clone();
        let denials = self.denials.clone();
        let limits = self.limits.clone();
        Box::new(async move {
            let uri = request.uri().clone();
            let https = uri.scheme_str() == Some("https");
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let target = format!("{}://{host}:{port}", if https { "https" } else { "http" });
            let deny = |reason: String| {
                denials.lock().expect("denials lock").push(Denial {
                    target: target.clone(),
                    reason,
                });
                wasmtime_wasi_http::Error::HttpRequestDenied
            };
            policy.permits_name(&host, port).map_err(deny)?;
            let addresses = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => resolve(&host, port).await,
            };
            if addresses.is_empty() {
                return Err(wasmtime_wasi_http::Error::DnsError {
                    rcode: None,
                    info_code: None,
                });
            }
            for address in &addresses {
                policy.permits_address(address.ip()).map_err(deny)?;
            }
            let timeout = Some(Duration::from_millis(limits.http_timeout_ms));
            let options = RequestOptions {
                connect_timeout: timeout,
                first_byte_timeout: timeout,
                between_bytes_timeout: timeout,
            };
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            let cap = limits.http_response_bytes_max;
            let response = response.map(|body| {
                CappedBody {
                    inner: body.boxed_unsync(),
                    seen: 0,
                    max: cap,
                }
                .boxed_unsync()
            });
            Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// A response body that fails once it exceeds `max` bytes.
struct CappedBody {
    inner: WasiBody,
    seen: u64,
    max: u64,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.seen += data.len() as u64;
            if self.seen > self.max {
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseBodySize(
                    Some(self.max),
                ))));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(declared: &[&str], granted: &[&str], allow_private: bool) -> NetworkPolicy {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        NetworkPolicy::new(&owned(declared), &owned(granted), allow_private).unwrap()
    }

    #[test]
    fn only_the_intersection_is_allowed() {
        let p = policy(
            &["api.stripe.com", "files.stripe.com:*"],
            &["api.stripe.com", "evil.example"],
            false,
        );
        assert!(p.permits_name("api.stripe.com", 443).is_ok());
        assert!(p.permits_name("API.Stripe.com", 443).is_ok());
        assert_eq!(
            p.permits_name("api.stripe.com", 80),
            Err("the plugin does not declare this host in its manifest".into())
        );
        assert_eq!(
            p.permits_name("evil.example", 443),
            Err("the plugin does not declare this host in its manifest".into())
        );
        assert_eq!(
            p.permits_name("files.stripe.com", 8443),
            Err("the operator has not granted this host (allowed_hosts)".into())
        );
        // A plugin declaring `*` gets exactly what the operator grants.
        let operator_chosen = policy(&["*"], &["imap.example.org:993"], false);
        assert!(
            operator_chosen
                .permits_name("imap.example.org", 993)
                .is_ok()
        );
        assert!(
            operator_chosen
                .permits_name("imap.example.org", 143)
                .is_err()
        );
        assert!(
            operator_chosen
                .permits_name("other.example.org", 993)
                .is_err()
        );
    }

    #[test]
    fn tcp_destinations_take_the_narrower_port() {
        let p = policy(
            &["imap.example.org:993", "*"],
            &["imap.example.org:*", "10.0.0.5:143"],
            true,
        );
        assert_eq!(
            p.tcp_grants(),
            [
                ("imap.example.org", Some(993)),
                ("imap.example.org", None),
                ("10.0.0.5", Some(143)),
            ]
        );
        let narrow = policy(
            &["imap.example.org:993"],
            &["imap.example.org:*", "other.example.org:993"],
            true,
        );
        assert_eq!(narrow.tcp_grants(), [("imap.example.org", Some(993))]);
        let mismatch = policy(&["imap.example.org:993"], &["imap.example.org:143"], true);
        assert!(mismatch.tcp_grants().is_empty());
    }

    #[test]
    fn operators_must_name_hosts() {
        let error = NetworkPolicy::new(&["*".into()], &["*".into()], false).unwrap_err();
        assert!(error.contains("may not contain `*`"));
        assert!(HostPattern::parse("bad host").is_err());
        assert!(HostPattern::parse("host:70000").is_err());
        assert_eq!(
            HostPattern::parse("[::1]:8080").unwrap(),
            HostPattern {
                host: Some("::1".into()),
                port: Some(8080)
            }
        );
    }

    #[test]
    fn private_link_local_and_metadata_addresses_are_refused() {
        let strict = policy(&["*"], &["x.example"], false);
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "169.254.10.10",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            assert!(
                strict.permits_address(refused.parse().unwrap()).is_err(),
                "{refused}"
            );
        }
        for allowed in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(
                strict.permits_address(allowed.parse().unwrap()).is_ok(),
                "{allowed}"
            );
        }
        let lenient = policy(&["*"], &["x.example"], true);
        assert!(
            lenient
                .permits_address("127.0.0.1".parse().unwrap())
                .is_ok()
        );
        assert!(lenient.permits_address("10.0.0.1".parse().unwrap()).is_ok());
        // Metadata stays refused even when private networks are allowed.
        assert!(
            lenient
                .permits_address("169.254.169.254".parse().unwrap())
                .is_err()
        );
        assert!(
            lenient
                .permits_address("fd00:ec2::254".parse().unwrap())
                .is_err()
        );
    }
}
