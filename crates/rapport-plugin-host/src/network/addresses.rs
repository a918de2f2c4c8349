//! Which addresses a connector may reach, judged against the IANA IPv4 and IPv6
//! Special-Purpose Address Registries (RFC 6890 and its updates), the IPv6 address
//! space registry (only `2000::/3` is global unicast), and every form that embeds an
//! IPv4 address in an IPv6 one (mapped, compatible, NAT64 well-known and local-use,
//! 6to4, Teredo, ISATAP), so `[::ffff:127.0.0.1]`, `[::127.0.0.1]` or the NAT64 form of
//! the metadata address are judged as what they reach.
//!
//! Three verdicts: public; private (loopback, private-use, shared, link-local,
//! unique-local, benchmarking — allowed only with `allow_private_networks`); and never
//! (unspecified, "this network", broadcast, multicast, documentation, reserved,
//! discard-only, deprecated forms, cloud metadata endpoints — refused always).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the policy makes of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    /// Globally reachable.
    Public,
    /// Not globally reachable, but a deployment may run servers there (named).
    Private(&'static str),
    /// Never a destination a connector needs (named).
    Never(&'static str),
}

impl Verdict {
    /// The stricter of two verdicts.
    fn stricter(self, other: Verdict) -> Verdict {
        let rank = |verdict: &Verdict| match verdict {
            Verdict::Public => 0,
            Verdict::Private(_) => 1,
            Verdict::Never(_) => 2,
        };
        if rank(&other) > rank(&self) {
            other
        } else {
            self
        }
    }
}

/// Cloud metadata endpoints: credentials live behind them, so they are refused even
/// when private networks are allowed.
const METADATA_V4: &[Ipv4Addr] = &[
    Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
    Ipv4Addr::new(169, 254, 170, 2),   // AWS ECS task metadata
    Ipv4Addr::new(169, 254, 170, 23),  // AWS EKS pod identity
    Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    Ipv4Addr::new(168, 63, 129, 16),   // Azure wire server
];
const METADATA_V6: &[Ipv6Addr] = &[
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254), // AWS IMDS over IPv6
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),  // AWS EKS pod identity
];

/// The IANA IPv4 Special-Purpose Address Registry, most specific entries first (the
/// first match decides), plus multicast.
const SPECIAL_V4: &[(Ipv4Addr, u8, Verdict)] = &[
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        Verdict::Never("\"this network\" (0.0.0.0/8)"),
    ),
    (
        Ipv4Addr::new(10, 0, 0, 0),
        8,
        Verdict::Private("private-use (10.0.0.0/8)"),
    ),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        Verdict::Private("shared address space, carrier-grade NAT (100.64.0.0/10)"),
    ),
    (
        Ipv4Addr::new(127, 0, 0, 0),
        8,
        Verdict::Private("loopback (127.0.0.0/8)"),
    ),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        Verdict::Private("link-local (169.254.0.0/16)"),
    ),
    (
        Ipv4Addr::new(172, 16, 0, 0),
        12,
        Verdict::Private("private-use (172.16.0.0/12)"),
    ),
    (Ipv4Addr::new(192, 0, 0, 9), 32, Verdict::Public), // PCP anycast
    (Ipv4Addr::new(192, 0, 0, 10), 32, Verdict::Public), // TURN anycast
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        Verdict::Never("IETF protocol assignments (192.0.0.0/24)"),
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        Verdict::Never("documentation, TEST-NET-1 (192.0.2.0/24)"),
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        Verdict::Never("deprecated 6to4 relay anycast (192.88.99.0/24)"),
    ),
    (
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        Verdict::Private("private-use (192.168.0.0/16)"),
    ),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        Verdict::Private("benchmarking (198.18.0.0/15)"),
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        Verdict::Never("documentation, TEST-NET-2 (198.51.100.0/24)"),
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        Verdict::Never("documentation, TEST-NET-3 (203.0.113.0/24)"),
    ),
    (
        Ipv4Addr::new(224, 0, 0, 0),
        4,
        Verdict::Never("multicast (224.0.0.0/4)"),
    ),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        Verdict::Never("limited broadcast (255.255.255.255)"),
    ),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        Verdict::Never("reserved for future use (240.0.0.0/4)"),
    ),
];

/// The IANA IPv6 Special-Purpose Address Registry and the ranges outside global
/// unicast, most specific first. Forms that embed IPv4 addresses are judged by
/// [`embedded_v4`] as well.
const SPECIAL_V6: &[(Ipv6Addr, u8, Verdict)] = &[
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        128,
        Verdict::Never("the unspecified address (::)"),
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1),
        128,
        Verdict::Private("loopback (::1)"),
    ),
    // Judged by the IPv4 address inside.
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        96,
        Verdict::Public,
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        Verdict::Never("deprecated IPv4-compatible form (::/96)"),
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        96,
        Verdict::Public,
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        Verdict::Private("local-use NAT64 (64:ff9b:1::/48)"),
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        Verdict::Never("discard-only (100::/64)"),
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        Verdict::Never("dummy prefix (100:0:0:1::/64)"),
    ),
    (
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 1),
        128,
        Verdict::Public,
    ), // PCP anycast
    (
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 2),
        128,
        Verdict::Public,
    ), // TURN anycast
    (
        Ipv6Addr::new(0x2001, 1, 0, 0, 0, 0, 0, 3),
        128,
        Verdict::Public,
    ), // DNS-SD SRP anycast
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        Verdict::Private("benchmarking (2001:2::/48)"),
    ),
    (
        Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0),
        32,
        Verdict::Public,
    ), // AMT
    (
        Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0),
        48,
        Verdict::Public,
    ), // AS112-v6
    (
        Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0),
        28,
        Verdict::Never("deprecated ORCHID (2001:10::/28)"),
    ),
    (
        Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0),
        28,
        Verdict::Public,
    ), // ORCHIDv2
    (
        Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0),
        28,
        Verdict::Public,
    ), // drone remote ID
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        Verdict::Never("Teredo tunnel (2001::/32)"),
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        Verdict::Never("IETF protocol assignments (2001::/23)"),
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        Verdict::Never("documentation (2001:db8::/32)"),
    ),
    (
        Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        Verdict::Public,
    ), // 6to4: judged inside
    (
        Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0),
        48,
        Verdict::Public,
    ), // AS112
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        Verdict::Never("documentation (3fff::/20)"),
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        Verdict::Never("segment routing SIDs (5f00::/16)"),
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        Verdict::Private("unique-local (fc00::/7)"),
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        Verdict::Private("link-local (fe80::/10)"),
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        Verdict::Private("deprecated site-local (fec0::/10)"),
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        Verdict::Never("multicast (ff00::/8)"),
    ),
    (
        Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0),
        3,
        Verdict::Public,
    ), // global unicast
];

/// Judges an address.
pub(crate) fn verdict(ip: IpAddr) -> Verdict {
    match ip {
        IpAddr::V4(v4) => verdict_v4(v4),
        IpAddr::V6(v6) => verdict_v6(v6),
    }
}

fn verdict_v4(ip: Ipv4Addr) -> Verdict {
    if METADATA_V4.contains(&ip) {
        return Verdict::Never("a cloud metadata endpoint");
    }
    let bits = u32::from(ip);
    SPECIAL_V4
        .iter()
        .find(|(network, prefix, _)| within_v4(bits, u32::from(*network), *prefix))
        .map_or(Verdict::Public, |(_, _, verdict)| *verdict)
}

fn verdict_v6(ip: Ipv6Addr) -> Verdict {
    if METADATA_V6.contains(&ip) {
        return Verdict::Never("a cloud metadata endpoint");
    }
    let bits = u128::from(ip);
    let own = SPECIAL_V6
        .iter()
        .find(|(network, prefix, _)| within_v6(bits, u128::from(*network), *prefix))
        .map_or(
            Verdict::Never("reserved by the IETF (outside 2000::/3)"),
            |(_, _, verdict)| *verdict,
        );
    embedded_v4(ip)
        .into_iter()
        .fold(own, |verdict, v4| verdict.stricter(verdict_v4(v4)))
}

/// Every IPv4 address an IPv6 address carries, by the forms that carry one.
pub(crate) fn embedded_v4(ip: Ipv6Addr) -> Vec<Ipv4Addr> {
    let o = ip.octets();
    let s = ip.segments();
    let bits = u128::from(ip);
    let v4 = |a: u8, b: u8, c: u8, d: u8| Ipv4Addr::new(a, b, c, d);
    let mut found = Vec::new();
    let low = v4(o[12], o[13], o[14], o[15]);
    // IPv4-mapped (::ffff:0:0/96), IPv4-compatible (::/96), NAT64 well-known
    // (64:ff9b::/96): the last 32 bits.
    if within_v6(bits, 0xffff_0000_0000, 96)
        || (within_v6(bits, 0, 96) && bits > 1)
        || within_v6(
            bits,
            u128::from(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0)),
            96,
        )
    {
        found.push(low);
    }
    // Local-use NAT64 (64:ff9b:1::/48, RFC 8215) with a /48 prefix (RFC 6052 §2.2):
    // 16 bits after the prefix, the "u" octet, then 16 more.
    if within_v6(
        bits,
        u128::from(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0)),
        48,
    ) {
        found.push(v4(o[6], o[7], o[9], o[10]));
    }
    // 6to4 (2002::/16): bits 16 to 48.
    if s[0] == 0x2002 {
        found.push(v4(o[2], o[3], o[4], o[5]));
    }
    // Teredo (2001::/32): the server in bits 32 to 64, the client inverted at the end.
    if s[0] == 0x2001 && s[1] == 0 {
        found.push(v4(o[4], o[5], o[6], o[7]));
        found.push(v4(!o[12], !o[13], !o[14], !o[15]));
    }
    // ISATAP (RFC 5214): an interface id of 0000:5efe or 0200:5efe, then the address.
    if (s[4] & 0xfdff) == 0 && s[5] == 0x5efe {
        found.push(low);
    }
    found
}

fn within_v4(bits: u32, network: u32, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    bits & mask == network & mask
}

fn within_v6(bits: u128, network: u128, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    bits & mask == network & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every literal here is only parsed and judged; nothing connects anywhere.
    #[test]
    fn every_special_purpose_range_and_embedded_form() {
        use Verdict::*;
        let public = Public;
        let private = Private("");
        let never = Never("");
        let table: &[(&str, Verdict)] = &[
            // IPv4 special-purpose registry.
            ("0.0.0.0", never),
            ("0.1.2.3", never),
            ("10.1.2.3", private),
            ("100.64.0.1", private),
            ("100.127.255.254", private),
            ("100.128.0.1", public),
            ("127.0.0.1", private),
            ("127.255.255.254", private),
            ("169.254.10.10", private),
            ("169.254.169.254", never),
            ("169.254.170.2", never),
            ("100.100.100.200", never),
            ("168.63.129.16", never),
            ("172.16.0.9", private),
            ("172.31.255.255", private),
            ("172.32.0.1", public),
            ("192.0.0.1", never),
            ("192.0.0.8", never),
            ("192.0.0.9", public),
            ("192.0.0.10", public),
            ("192.0.0.170", never),
            ("192.0.2.55", never),
            ("192.31.196.1", public),
            ("192.52.193.1", public),
            ("192.88.99.1", never),
            ("192.168.1.1", private),
            ("192.175.48.1", public),
            ("198.18.0.1", private),
            ("198.19.255.254", private),
            ("198.51.100.7", never),
            ("203.0.113.9", never),
            ("224.0.0.1", never),
            ("239.255.255.250", never),
            ("240.0.0.1", never),
            ("255.255.255.255", never),
            ("8.8.8.8", public),
            ("93.184.216.34", public),
            // IPv6 special-purpose registry and address space.
            ("::", never),
            ("::1", private),
            ("::ffff:127.0.0.1", private),
            ("::ffff:10.0.0.1", private),
            ("::ffff:169.254.169.254", never),
            ("::ffff:8.8.8.8", public),
            ("::127.0.0.1", never),
            ("::8.8.8.8", never),
            ("64:ff9b::a9fe:a9fe", never),
            ("64:ff9b::7f00:1", private),
            ("64:ff9b::808:808", public),
            ("64:ff9b:1:a00:1::", private),
            ("64:ff9b:1:a9fe:a9:fe00::", never),
            ("100::1", never),
            ("100:0:0:1::1", never),
            ("2001::1", never),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", never),
            ("2001:1::1", public),
            ("2001:1::2", public),
            ("2001:1::3", public),
            ("2001:1::4", never),
            ("2001:2::1", private),
            ("2001:3::1", public),
            ("2001:4:112::1", public),
            ("2001:10::1", never),
            ("2001:20::1", public),
            ("2001:30::1", public),
            ("2001:db8::1", never),
            ("2002:7f00:1::", private),
            ("2002:a9fe:a9fe::1", never),
            ("2002:c000:0201::1", never),
            ("2002:0808:0808::1", public),
            ("2620:4f:8000::1", public),
            ("3fff::1", never),
            ("5f00::1", never),
            ("fc00::1", private),
            ("fd12::1", private),
            ("fd00:ec2::254", never),
            ("fe80::1", private),
            ("febf::1", private),
            ("fec0::1", private),
            ("ff02::1", never),
            ("4000::1", never),
            ("1::1", never),
            ("2001:4860:4860::8888", public),
            ("2606:2800:220:1::1", public),
            // ISATAP around a private and a public address.
            ("2606:2800:220:1:0:5efe:a00:1", private),
            ("2606:2800:220:1:200:5efe:808:808", public),
        ];
        for (literal, expected) in table {
            let ip: IpAddr = literal.parse().unwrap();
            let got = verdict(ip);
            let same = matches!(
                (got, expected),
                (Public, Public) | (Private(_), Private(_)) | (Never(_), Never(_))
            );
            assert!(same, "{literal}: expected {expected:?}, got {got:?}");
        }
    }

    #[test]
    fn embedded_addresses_are_found() {
        let embedded = |literal: &str| embedded_v4(literal.parse().unwrap());
        assert_eq!(embedded("::ffff:1.2.3.4"), [Ipv4Addr::new(1, 2, 3, 4)]);
        assert_eq!(embedded("2002:0102:0304::"), [Ipv4Addr::new(1, 2, 3, 4)]);
        assert_eq!(
            embedded("2001:0:0102:0304::fefd:fcfb"),
            [Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(1, 2, 3, 4)]
        );
        assert!(embedded("2606:2800:220:1::1").is_empty());
        assert!(embedded("::1").is_empty());
    }
}
