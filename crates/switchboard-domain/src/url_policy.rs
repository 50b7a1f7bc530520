//! Which URLs the server may call on a tenant's behalf: webhook endpoints and Bird's
//! `notification.url`.
//!
//! A [`UrlPolicy`] refuses a URL that is not plain `http` or `https`, that carries a user name
//! or password, that names a host which can only be local (`localhost`, `*.localhost`,
//! `*.local`, `*.internal`, `*.home.arpa`), or that names a special address: loopback,
//! private, link-local, shared (CGNAT), multicast, unspecified, broadcast, documentation or
//! otherwise reserved ([`special`] lists them), including the IPv6 forms that embed such an
//! IPv4 address. The operator may allow chosen ranges ([`Cidr`]) for internal deployments: an
//! address in one is never refused, and once any range is allowed, local host names are left
//! to the addresses they resolve to.
//!
//! This module is pure: it never resolves a name. The webhook worker applies the same
//! policy to every address a name resolves to, at the moment it connects
//! ([`UrlPolicy::check_address`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

pub use url::{Host, Url};

/// Longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Host-name suffixes that can only name something local or internal (RFC 6761, RFC 6762,
/// RFC 8375, and the `.internal` top-level domain reserved for private use).
const LOCAL_SUFFIXES: [&str; 4] = [".localhost", ".local", ".internal", ".home.arpa"];

/// A range of addresses, such as `10.1.0.0/16` or `fd00:1::/64`; a bare address is a range of
/// one (`127.0.0.1` is `127.0.0.1/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a range could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an address range such as 10.1.0.0/16 or fd00::/8")]
    Address(String),
    /// The prefix length is not a number up to 32 (IPv4) or 128 (IPv6).
    #[error("{text:?}: the prefix length must be a number from 0 to {max}")]
    Prefix {
        /// The range as given.
        text: String,
        /// The longest prefix for its address family.
        max: u8,
    },
    /// The address has bits set past the prefix, so the range is probably not what was meant.
    #[error("{text:?} has bits set past its prefix: write {network}")]
    HostBits {
        /// The range as given.
        text: String,
        /// The range it may have meant.
        network: Cidr,
    },
}

impl Cidr {
    /// The range of `prefix` leading bits of `network`; refuses a prefix longer than the
    /// address and an address with bits set past the prefix.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let max = if network.is_ipv4() { 32 } else { 128 };
        let text = format!("{network}/{prefix}");
        if prefix > max {
            return Err(CidrError::Prefix { text, max });
        }
        let cidr = Self { network, prefix };
        let masked = cidr.masked(network);
        if masked != network {
            return Err(CidrError::HostBits { text, network: Self { network: masked, prefix } });
        }
        Ok(cidr)
    }

    /// Its first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// Its prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the range (an IPv4 address is never in an IPv6 range, nor the
    /// reverse: [`UrlPolicy`] reads IPv4-mapped IPv6 addresses as IPv4 before asking).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.network.is_ipv4() == ip.is_ipv4() && self.masked(ip) == self.network
    }

    /// `ip` with the bits past the prefix cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix.min(32))).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix.min(128))).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
            }
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| CidrError::Address(text.to_owned()))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or(CidrError::Prefix { text: text.to_owned(), max })?
            }
            Some(_) => return Err(CidrError::Prefix { text: text.to_owned(), max }),
        };
        Self::new(network, prefix).map_err(|e| match e {
            CidrError::HostBits { network, .. } => CidrError::HostBits { text: text.to_owned(), network },
            other => other,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), RFC 4193 (`fc00::/7`) and the old
    /// site-local `fec0::/10`.
    Private,
    /// `169.254/16` (the cloud metadata address `169.254.169.254` among them), `fe80::/10`.
    LinkLocal,
    /// `100.64/10`, carrier-grade NAT.
    Shared,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `0/8` ("this network"), `::`.
    Unspecified,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// Everything else that is not a public unicast address: `192.0.0/24`, `192.88.99/24`,
    /// benchmarking `198.18/15`, `240/4`, and in IPv6 whatever lies outside `2000::/3`
    /// (IPv4-compatible and -translated forms, discard-only `100::/64`, …), the IETF
    /// protocol assignments `2001::/23` (Teredo, benchmarking, ORCHID) and local-use NAT64
    /// `64:ff9b:1::/48`.
    Reserved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Loopback => "a loopback address",
            Refusal::Private => "a private address",
            Refusal::LinkLocal => "a link-local address",
            Refusal::Shared => "a shared (carrier-grade NAT) address",
            Refusal::Multicast => "a multicast address",
            Refusal::Unspecified => "an unspecified address",
            Refusal::Broadcast => "the broadcast address",
            Refusal::Documentation => "a documentation address",
            Refusal::Reserved => "a reserved address",
        })
    }
}

/// Why a URL is refused. The texts never repeat the URL, which may carry a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an absolute URL of at most [`MAX_URL_LEN`] bytes without spaces or control
    /// characters.
    #[error("must be an absolute http or https URL of at most 2048 bytes")]
    Malformed,
    /// A scheme other than `http` and `https`.
    #[error("must be an http or https URL")]
    Scheme,
    /// A user name or password before the host.
    #[error("must not carry a user name or password")]
    UserInfo,
    /// A host name that can only be local.
    #[error("must not name a local host (localhost, .localhost, .local, .internal, .home.arpa)")]
    LocalName,
    /// An address the policy refuses.
    #[error("must not name {0}")]
    Address(Refusal),
}

/// Which special address `ip` is, if any, whatever the operator allows. Addresses embedded
/// in IPv6 (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged
/// by the IPv4 address they carry.
pub fn special(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => Refusal::Unspecified,
        (10, ..) => Refusal::Private,
        (100, b, _) if b & 0xc0 == 64 => Refusal::Shared,
        (127, ..) => Refusal::Loopback,
        (169, 254, _) => Refusal::LinkLocal,
        (172, b, _) if b & 0xf0 == 16 => Refusal::Private,
        (192, 0, 0) | (192, 88, 99) => Refusal::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Refusal::Documentation,
        (192, 168, _) => Refusal::Private,
        (198, b, _) if b & 0xfe == 18 => Refusal::Reserved,
        _ if ip == Ipv4Addr::BROADCAST => Refusal::Broadcast,
        (a, ..) if a & 0xf0 == 224 => Refusal::Multicast,
        (a, ..) if a >= 240 => Refusal::Reserved,
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4);
    }
    if ip.is_unspecified() {
        return Some(Refusal::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Refusal::Loopback);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    Some(match s[0] {
        x if x & 0xff00 == 0xff00 => Refusal::Multicast,
        x if x & 0xffc0 == 0xfe80 => Refusal::LinkLocal,
        x if x & 0xffc0 == 0xfec0 || x & 0xfe00 == 0xfc00 => Refusal::Private,
        // NAT64 (RFC 6052): the IPv4 address it reaches.
        0x64 if s[1] == 0xff9b && s[2..6] == [0; 4] => return special_v4(embedded(s[6], s[7])),
        // 6to4 (RFC 3056): the IPv4 address of the site.
        0x2002 => return special_v4(embedded(s[1], s[2])),
        0x2001 if s[1] == 0x0db8 => Refusal::Documentation,
        0x3fff if s[1] & 0xf000 == 0 => Refusal::Documentation,
        0x2001 if s[1] < 0x0200 => Refusal::Reserved,
        x if x & 0xe000 != 0x2000 => Refusal::Reserved,
        _ => return None,
    })
}

/// The server's rule for the URLs it calls on a tenant's behalf, with the ranges the operator
/// allows. The default allows none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    allowed: Vec<Cidr>,
}

impl UrlPolicy {
    /// A policy that allows these ranges besides the public addresses.
    pub fn new(allowed: Vec<Cidr>) -> Self {
        Self { allowed }
    }

    /// A policy that allows the ranges written in `ranges` (`10.1.0.0/16`, `127.0.0.1`, …).
    pub fn parse<S: AsRef<str>>(ranges: impl IntoIterator<Item = S>) -> Result<Self, CidrError> {
        ranges.into_iter().map(|r| r.as_ref().parse()).collect::<Result<_, _>>().map(Self::new)
    }

    /// The ranges the operator allows.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allowed
    }

    /// Whether the server may connect to `ip`: it is in an allowed range, or not special.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.check_address(ip).is_ok()
    }

    /// [`UrlPolicy::is_allowed`], saying why not. An IPv4-mapped IPv6 address is the IPv4
    /// address it maps.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Refusal> {
        let canonical = ip.to_canonical();
        if self.allowed.iter().any(|range| range.contains(canonical) || range.contains(ip)) {
            return Ok(());
        }
        special(canonical).map_or(Ok(()), Err)
    }

    /// Whether the server may call `host`: an address it allows, or a name that is not a
    /// local one. A name still has to resolve only to allowed addresses when it is called.
    pub fn check_host(&self, host: &Host<&str>) -> Result<(), UrlError> {
        match host {
            Host::Ipv4(v4) => self.check_address(IpAddr::V4(*v4)).map_err(UrlError::Address),
            Host::Ipv6(v6) => self.check_address(IpAddr::V6(*v6)).map_err(UrlError::Address),
            Host::Domain(name) => {
                if self.allowed.is_empty() && is_local_name(name) {
                    Err(UrlError::LocalName)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Reads `text` as a URL the server may call: absolute `http` or `https`, at most
    /// [`MAX_URL_LEN`] bytes, no spaces or control characters, no user name or password, and
    /// a host that [`UrlPolicy::check_host`] allows. IPv4 addresses written as one number,
    /// in hex or in octal (`0x7f000001`, `2130706433`, `0177.1`) are read as the address they
    /// are, as every HTTP client reads them.
    pub fn check_url(&self, text: &str) -> Result<Url, UrlError> {
        if text.is_empty() || text.len() > MAX_URL_LEN || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Malformed);
        }
        let url = Url::parse(text).map_err(|_| UrlError::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::UserInfo);
        }
        let host = url.host().ok_or(UrlError::Malformed)?;
        self.check_host(&host)?;
        Ok(url)
    }
}

/// Whether `name` can only name something local: `localhost`, or a name under
/// `.localhost`, `.local`, `.internal` or `.home.arpa` (with or without the final dot).
pub fn is_local_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || LOCAL_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_addresses() {
        let cases = [
            ("127.0.0.1", Refusal::Loopback),
            ("127.255.255.254", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("10.0.0.1", Refusal::Private),
            ("172.16.0.1", Refusal::Private),
            ("172.31.255.255", Refusal::Private),
            ("192.168.1.1", Refusal::Private),
            ("fc00::1", Refusal::Private),
            ("fd12:3456::1", Refusal::Private),
            ("fec0::1", Refusal::Private),
            ("169.254.169.254", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("febf::1", Refusal::LinkLocal),
            ("100.64.0.1", Refusal::Shared),
            ("100.127.255.255", Refusal::Shared),
            ("224.0.0.1", Refusal::Multicast),
            ("239.255.255.250", Refusal::Multicast),
            ("ff02::1", Refusal::Multicast),
            ("0.0.0.0", Refusal::Unspecified),
            ("0.1.2.3", Refusal::Unspecified),
            ("::", Refusal::Unspecified),
            ("255.255.255.255", Refusal::Broadcast),
            ("192.0.2.1", Refusal::Documentation),
            ("198.51.100.1", Refusal::Documentation),
            ("203.0.113.1", Refusal::Documentation),
            ("2001:db8::1", Refusal::Documentation),
            ("3fff::1", Refusal::Documentation),
            ("192.0.0.170", Refusal::Reserved),
            ("192.88.99.1", Refusal::Reserved),
            ("198.18.0.1", Refusal::Reserved),
            ("198.19.255.255", Refusal::Reserved),
            ("240.0.0.1", Refusal::Reserved),
            ("255.255.255.254", Refusal::Reserved),
            // IPv4-mapped: the IPv4 address's own reason.
            ("::ffff:127.0.0.1", Refusal::Loopback),
            ("::ffff:10.1.2.3", Refusal::Private),
            ("::ffff:169.254.169.254", Refusal::LinkLocal),
            // IPv4-compatible and -translated forms, discard-only, and other non-global space.
            ("::127.0.0.1", Refusal::Reserved),
            ("::8.8.8.8", Refusal::Reserved),
            ("::ffff:0:8.8.8.8", Refusal::Reserved),
            ("100::1", Refusal::Reserved),
            ("5f00::1", Refusal::Reserved),
            ("4000::1", Refusal::Reserved),
            // NAT64 and 6to4 carrying a refused IPv4 address.
            ("64:ff9b::127.0.0.1", Refusal::Loopback),
            ("64:ff9b::a9fe:a9fe", Refusal::LinkLocal),
            ("64:ff9b:1::1", Refusal::Reserved),
            ("2002:7f00:1::", Refusal::Loopback),
            ("2002:0a00:0001::1", Refusal::Private),
            // Teredo, benchmarking, ORCHID.
            ("2001::1", Refusal::Reserved),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Refusal::Reserved),
            ("2001:2::1", Refusal::Reserved),
            ("2001:10::1", Refusal::Reserved),
        ];
        for (text, want) in cases {
            assert_eq!(special(ip(text)), Some(want), "{text}");
            assert!(!UrlPolicy::default().is_allowed(ip(text)), "{text}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
            "2001:200::1",
        ] {
            assert_eq!(special(ip(public)), None, "{public}");
            assert!(UrlPolicy::default().is_allowed(ip(public)), "{public}");
        }
    }

    #[test]
    fn ranges_parse_and_contain() {
        let r: Cidr = "10.1.0.0/16".parse().unwrap();
        assert_eq!(r.to_string(), "10.1.0.0/16");
        assert!(r.contains(ip("10.1.255.255")));
        assert!(!r.contains(ip("10.2.0.0")));
        assert!(!r.contains(ip("::ffff:10.1.0.1")), "families are not mixed");
        let one: Cidr = " 127.0.0.1 ".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && all.contains(ip("127.0.0.1")));
        let v6: Cidr = "fd00:1::/32".parse().unwrap();
        assert!(v6.contains(ip("fd00:1:ffff::1")) && !v6.contains(ip("fd00:2::1")));
        assert_eq!("::1".parse::<Cidr>().unwrap().prefix(), 128);
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("::1")));

        for bad in [
            "",
            "10.1.0.0/",
            "10.1.0.0/33",
            "fd00::/129",
            "10.1.0.0/-1",
            "10.1.0.0/+8",
            "10.1/16",
            "x/8",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        match "10.1.2.3/16".parse::<Cidr>() {
            Err(e @ CidrError::HostBits { .. }) => assert!(e.to_string().contains("write 10.1.0.0/16"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(Cidr::new(ip("10.0.0.0"), 40), Err(CidrError::Prefix { max: 32, .. })));
        assert!(UrlPolicy::parse(["10.1.0.0/16", "bad"]).is_err());
        assert_eq!(UrlPolicy::parse(["10.1.0.0/16", "::1"]).unwrap().allowed().len(), 2);
    }

    #[test]
    fn allowed_ranges_open_refused_addresses() {
        let policy = UrlPolicy::parse(["10.1.0.0/16", "127.0.0.1/32"]).unwrap();
        assert!(policy.is_allowed(ip("10.1.2.3")));
        assert_eq!(policy.check_address(ip("10.2.0.1")), Err(Refusal::Private));
        assert!(policy.is_allowed(ip("127.0.0.1")));
        assert!(policy.is_allowed(ip("::ffff:127.0.0.1")), "a mapped address is its IPv4 address");
        assert_eq!(policy.check_address(ip("127.0.0.2")), Err(Refusal::Loopback));
        assert_eq!(policy.check_address(ip("::1")), Err(Refusal::Loopback));
        assert!(policy.is_allowed(ip("8.8.8.8")));
        let v6 = UrlPolicy::parse(["::1"]).unwrap();
        assert!(v6.is_allowed(ip("::1")) && !v6.is_allowed(ip("127.0.0.1")));
    }

    #[test]
    fn urls_that_are_refused() {
        let p = UrlPolicy::default();
        let refused = [
            ("http://127.0.0.1:8080/hook", UrlError::Address(Refusal::Loopback)),
            ("http://127.1/hook", UrlError::Address(Refusal::Loopback)),
            ("http://0x7f000001/hook", UrlError::Address(Refusal::Loopback)),
            ("http://2130706433/hook", UrlError::Address(Refusal::Loopback)),
            ("http://0177.0.0.1/hook", UrlError::Address(Refusal::Loopback)),
            ("http://0x7f.0.0.1/hook", UrlError::Address(Refusal::Loopback)),
            ("http://127.0.0.1./hook", UrlError::Address(Refusal::Loopback)),
            ("http://10.0.0.1/", UrlError::Address(Refusal::Private)),
            ("http://169.254.169.254/latest/meta-data/", UrlError::Address(Refusal::LinkLocal)),
            ("http://[::1]/", UrlError::Address(Refusal::Loopback)),
            ("http://[::ffff:127.0.0.1]/", UrlError::Address(Refusal::Loopback)),
            ("http://[::ffff:7f00:1]/", UrlError::Address(Refusal::Loopback)),
            ("http://[fe80::1]/", UrlError::Address(Refusal::LinkLocal)),
            ("http://[64:ff9b::a00:1]/", UrlError::Address(Refusal::Private)),
            ("http://0.0.0.0/", UrlError::Address(Refusal::Unspecified)),
            ("http://0/", UrlError::Address(Refusal::Unspecified)),
            ("http://100.64.1.1/", UrlError::Address(Refusal::Shared)),
            ("https://192.0.2.10/", UrlError::Address(Refusal::Documentation)),
            ("https://localhost/hook", UrlError::LocalName),
            ("https://LOCALHOST./hook", UrlError::LocalName),
            ("https://api.localhost/hook", UrlError::LocalName),
            ("https://printer.local/hook", UrlError::LocalName),
            ("https://metadata.google.internal/", UrlError::LocalName),
            ("https://nas.home.arpa/", UrlError::LocalName),
            ("https://user:pass@example.com/hook", UrlError::UserInfo),
            ("https://user@example.com/hook", UrlError::UserInfo),
            ("https://:pass@example.com/hook", UrlError::UserInfo),
            ("ftp://example.com/hook", UrlError::Scheme),
            ("file:///etc/passwd", UrlError::Scheme),
            ("gopher://example.com/", UrlError::Scheme),
            ("javascript:alert(1)", UrlError::Scheme),
            ("not a url", UrlError::Malformed),
            ("/relative/path", UrlError::Malformed),
            ("", UrlError::Malformed),
            ("https://example.com/a b", UrlError::Malformed),
            ("https://exam\tple.com/", UrlError::Malformed),
            ("https://example.com/\n", UrlError::Malformed),
            (" https://example.com/", UrlError::Malformed),
            ("http://", UrlError::Malformed),
        ];
        for (url, want) in refused {
            assert_eq!(p.check_url(url).map(|u| u.to_string()), Err(want), "{url}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(p.check_url(&long), Err(UrlError::Malformed));
        for text in
            [UrlError::Malformed, UrlError::Address(Refusal::Loopback), UrlError::LocalName].map(|e| e.to_string())
        {
            assert!(text.starts_with("must "), "{text}");
        }
        assert_eq!(UrlError::Address(Refusal::LinkLocal).to_string(), "must not name a link-local address");
    }

    #[test]
    fn urls_that_are_allowed() {
        let p = UrlPolicy::default();
        for url in [
            "https://example.com/hook",
            "http://example.com:8080/hook?token=abc#frag",
            "https://8.8.8.8/hook",
            "https://[2606:4700:4700::1111]/hook",
            "https://hooks.example.com./x",
            "https://localhost.example.com/hook",
            "https://xn--bcher-kva.example/",
            "https://bücher.example/",
        ] {
            assert!(p.check_url(url).is_ok(), "{url}");
        }
        let url = p.check_url("HTTPS://Example.COM/Hook").unwrap();
        assert_eq!(url.host_str(), Some("example.com"));

        let internal = UrlPolicy::parse(["127.0.0.1/32", "10.1.0.0/16"]).unwrap();
        assert!(internal.check_url("http://127.0.0.1:4321/hook").is_ok());
        assert!(internal.check_url("http://0x7f000001:4321/hook").is_ok());
        assert!(internal.check_url("http://10.1.9.9/hook").is_ok());
        assert_eq!(internal.check_url("http://10.2.9.9/hook"), Err(UrlError::Address(Refusal::Private)));
        assert_eq!(internal.check_url("http://[::1]/hook"), Err(UrlError::Address(Refusal::Loopback)));
        // Local names are left to the addresses they resolve to once ranges are allowed.
        assert!(internal.check_url("http://receiver.internal/hook").is_ok());
        assert!(internal.check_url("http://localhost/hook").is_ok());
        // Everything else still holds.
        assert_eq!(internal.check_url("http://u:p@127.0.0.1/"), Err(UrlError::UserInfo));
        assert_eq!(internal.check_url("ftp://127.0.0.1/"), Err(UrlError::Scheme));
    }

    #[test]
    fn local_names() {
        for name in
            ["localhost", "localhost.", "LocalHost", "a.localhost", "x.local", "x.local.", "db.internal", "h.home.arpa"]
        {
            assert!(is_local_name(name), "{name}");
        }
        for name in [
            "example.com",
            "localhost.example.com",
            "local",
            "internal",
            "notlocal",
            "mylocal.com",
            "home.arpa.example",
        ] {
            assert!(!is_local_name(name), "{name}");
        }
    }
}
