//! Where a connector may connect. Deny by default: a destination is allowed only if it
//! matches a host the plugin declares in its manifest *and* one the operator grants,
//! and, after DNS resolution, every address it resolves to is public — or private and
//! explicitly allowed (`addresses`). Name lookups from the guest are answered only for
//! granted names. Cloud metadata endpoints are refused always.

mod addresses;
mod hosts;

pub use hosts::{HostPattern, HostTemplate};

use crate::config::CallLimits;
use addresses::Verdict;
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// How long resolving a granted host name may take.
const DNS_TIMEOUT_MS: u64 = 5_000;

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
    /// Builds the policy from the plugin's declarations (templates already filled in
    /// from the settings) and the operator's grants, refusing grants that are not
    /// concrete hosts.
    pub(crate) fn new(
        declared: Vec<HostPattern>,
        granted: &[String],
        allow_private: bool,
    ) -> Result<NetworkPolicy, String> {
        let granted = granted
            .iter()
            .map(|text| {
                HostPattern::parse_grant(text).map_err(|reason| format!("allowed_hosts: {reason}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
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
        match addresses::verdict(ip) {
            Verdict::Public => Ok(()),
            Verdict::Private(_) if self.allow_private => Ok(()),
            Verdict::Private(what) => Err(format!(
                "{ip} is {what}, a private address (set allow_private_networks to allow it)"
            )),
            Verdict::Never(what) => Err(format!("{ip} is {what}, which no connector may reach")),
        }
    }

    /// Resolves every concrete (declared ∩ granted) host to the addresses TCP may
    /// connect to during one call, keeping only addresses the policy permits; what a
    /// guest's name lookups are answered from.
    pub(crate) async fn resolve_names(&self) -> NameGrants {
        let mut grants = NameGrants::default();
        for (host, port) in self.tcp_grants() {
            let addresses: Vec<IpAddr> = match parse_ip_literal(host) {
                Some(ip) => vec![ip],
                None => resolve(host, port.unwrap_or(0))
                    .await
                    .into_iter()
                    .map(|address| address.ip())
                    .collect(),
            };
            let permitted: Vec<IpAddr> = addresses
                .into_iter()
                .map(|ip| ip.to_canonical())
                .filter(|ip| self.permits_address(*ip).is_ok())
                .collect();
            for ip in &permitted {
                if !grants.destinations.contains(&(*ip, port)) {
                    grants.destinations.push((*ip, port));
                }
            }
            if parse_ip_literal(host).is_none() {
                grants
                    .names
                    .entry(hosts::normalise(host))
                    .or_default()
                    .extend(permitted);
            }
        }
        grants
    }

    /// Each granted host with the ports both sides allow (`None`: any port): a grant of
    /// `host:*` against a declaration of `host:993` allows port 993 only.
    fn tcp_grants(&self) -> Vec<(&str, Option<u16>)> {
        let mut grants = Vec::new();
        for grant in &self.granted {
            let Some(host) = grant.concrete_host() else {
                continue;
            };
            for declared in &self.declared {
                let port = match (declared.port(), grant.port()) {
                    (Some(a), Some(b)) if a != b => continue,
                    (Some(port), _) | (None, Some(port)) => Some(port),
                    (None, None) => None,
                };
                // Without a port of its own, the declaration admits any port.
                let host_matches = declared.matches(host, port.unwrap_or(443));
                if host_matches && !grants.contains(&(host, port)) {
                    grants.push((host, port));
                }
            }
        }
        grants
    }
}

/// The names a call's guest may look up and what they resolved to (checked), and the
/// socket addresses it may connect to: computed once when the call starts.
#[derive(Debug, Default)]
pub(crate) struct NameGrants {
    names: BTreeMap<String, Vec<IpAddr>>,
    destinations: Vec<(IpAddr, Option<u16>)>,
}

impl NameGrants {
    /// The addresses a granted name resolved to, or `None` if no grant covers it.
    pub(crate) fn addresses_of(&self, name: &str) -> Option<&[IpAddr]> {
        self.names.get(&hosts::normalise(name)).map(Vec::as_slice)
    }

    /// Where TCP may connect.
    pub(crate) fn destinations(&self) -> Arc<Vec<(IpAddr, Option<u16>)>> {
        Arc::new(self.destinations.clone())
    }
}

/// `text` as an IP address literal (`10.0.0.5`, `::1`, `[::1]`), if it is one.
pub(crate) fn parse_ip_literal(text: &str) -> Option<IpAddr> {
    hosts::normalise(text).parse().ok()
}

async fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    let lookup = tokio::net::lookup_host((host, port));
    match tokio::time::timeout(Duration::from_millis(DNS_TIMEOUT_MS), lookup).await {
        Ok(Ok(addresses)) => addresses.collect(),
        _ => Vec::new(),
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
                let ip = address.ip().to_canonical();
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
            let addresses = match parse_ip_literal(&host) {
                Some(ip) => vec![SocketAddr::new(ip, port)],
                None => resolve(&host, port).await,
            };
            if addresses.is_empty() {
                return Err(wasmtime_wasi_http::Error::DnsError {
                    rcode: None,
                    info_code: None,
                });
            }
            for address in &addresses {
                policy
                    .permits_address(address.ip().to_canonical())
                    .map_err(deny)?;
            }
            let mut request = request;
            if !https {
                // Connect to the address just checked, not to a second resolution of
                // the name, which a DNS server could answer differently (rebinding to
                // an internal address). The Host header keeps the name. Over TLS the
                // certificate is verified against the name, which an internal service
                // cannot present.
                pin_authority(&mut request, addresses[0]);
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

/// Points a plain-HTTP request's URI at `address` (the Host header, set from the
/// original authority, stays as it was).
fn pin_authority(request: &mut http::Request<WasiBody>, address: SocketAddr) {
    let mut parts = request.uri().clone().into_parts();
    let Ok(authority) = http::uri::Authority::try_from(address.to_string()) else {
        return;
    };
    parts.authority = Some(authority);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
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
        let declared = declared
            .iter()
            .map(|text| HostPattern::parse(text).unwrap())
            .collect();
        let granted: Vec<String> = granted.iter().map(|s| s.to_string()).collect();
        NetworkPolicy::new(declared, &granted, allow_private).unwrap()
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
        // Wildcard declarations admit the names under them, as the operator grants.
        let zendesk = policy(&["*.zendesk.com"], &["acme.zendesk.com"], false);
        assert!(zendesk.permits_name("acme.zendesk.com", 443).is_ok());
        assert!(zendesk.permits_name("other.zendesk.com", 443).is_err());
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
        let error = NetworkPolicy::new(Vec::new(), &["*".into()], false).unwrap_err();
        assert!(
            error.contains("allowed_hosts: `*` would allow any host"),
            "{error}"
        );
    }

    #[test]
    fn plain_http_is_sent_to_the_checked_address_under_its_name() {
        use http_body_util::BodyExt;
        let body: WasiBody = http_body_util::Empty::new()
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync();
        let mut request = http::Request::get("http://feed.example:8080/feed?after=3")
            .header(http::header::HOST, "feed.example:8080")
            .body(body)
            .unwrap();
        pin_authority(&mut request, "93.184.216.34:8080".parse().unwrap());
        assert_eq!(
            request.uri().to_string(),
            "http://93.184.216.34:8080/feed?after=3"
        );
        assert_eq!(request.headers()[http::header::HOST], "feed.example:8080");
        pin_authority(&mut request, "[2606:2800:220:1::1]:8080".parse().unwrap());
        assert_eq!(
            request.uri().authority().unwrap(),
            "[2606:2800:220:1::1]:8080"
        );
    }

    #[test]
    fn the_policy_applies_the_address_verdicts() {
        let strict = policy(&["*"], &["x.example"], false);
        let lenient = policy(&["*"], &["x.example"], true);
        for (literal, strict_ok, lenient_ok) in [
            ("127.0.0.1", false, true),
            ("10.0.0.1", false, true),
            ("::ffff:127.0.0.1", false, true),
            ("169.254.169.254", false, false),
            ("fd00:ec2::254", false, false),
            ("64:ff9b::a9fe:a9fe", false, false),
            ("::127.0.0.1", false, false),
            ("198.18.0.1", false, true),
            ("192.0.2.1", false, false),
            ("93.184.216.34", true, true),
        ] {
            let ip: IpAddr = literal.parse().unwrap();
            assert_eq!(strict.permits_address(ip).is_ok(), strict_ok, "{literal}");
            assert_eq!(lenient.permits_address(ip).is_ok(), lenient_ok, "{literal}");
        }
        let refused = strict
            .permits_address("::ffff:10.1.2.3".parse().unwrap())
            .unwrap_err();
        assert!(refused.contains("private-use"), "{refused}");
    }
}
