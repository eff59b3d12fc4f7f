//! Who is at the other end: the client's address behind trusted load balancers.
//!
//! A peer the config trusts (`trusted_proxies`) reports the client in `X-Forwarded-For` or
//! `Forwarded` (`client_ip_header`). Each proxy appends the address it received the request
//! from, so the list is read from the right: the first address that is not itself a trusted
//! proxy is the client. Whatever stands to its left was written by the client and is
//! ignored. The header of a peer that is not trusted is ignored altogether. The address feeds
//! the rate limit, a signed policy's `ip` condition and the access line; never routing or
//! which integration a caller may reach. A trusted peer also says whether the browser spoke
//! HTTPS ([`browser_used_https`]), for cookies' `Secure`.

use std::net::IpAddr;

use http::HeaderMap;

use crate::config::{ForwardedHeader, FrontProxies, ServerConfig};

/// Who sent a request: the socket's peer, and the client behind it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    /// The address the connection came from (a balancer's, behind one); `None` in-process.
    pub socket: Option<IpAddr>,
    /// The client: `socket`, or what trusted proxies in front of it report ([`client_ip`]).
    pub client: Option<IpAddr>,
}

impl Peer {
    /// The request's peer as [`client_ip`] resolves it.
    pub fn of(front: &FrontProxies, socket: Option<IpAddr>, headers: &HeaderMap) -> Peer {
        Peer {
            socket,
            client: socket.map(|socket| client_ip(front, socket, headers)),
        }
    }
}

/// Whether the browser spoke HTTPS, for cookies' `Secure`. Over the proxy's own TLS, yes. A
/// trusted balancer says which scheme it received in `X-Forwarded-Proto` or `Forwarded:
/// proto=` (whichever `client_ip_header` names); when it says nothing, yes, since balancers
/// terminate TLS. From any other peer, yes unless both the listener and the peer are
/// loopback: a browser on the developer's own machine over plain HTTP (the demo), whose
/// cookies a `Secure` attribute would drop.
pub fn browser_used_https(
    server: &ServerConfig,
    socket: Option<IpAddr>,
    headers: &HeaderMap,
) -> bool {
    if server.tls.is_some() {
        return true;
    }
    let Some(socket) = socket.map(unmapped) else {
        return !server.listen.ip().is_loopback();
    };
    if is_trusted(&server.front, socket) {
        return forwarded_proto(&server.front, headers)
            .is_none_or(|proto| proto.eq_ignore_ascii_case("https"));
    }
    !(server.listen.ip().is_loopback() && socket.is_loopback())
}

/// The scheme the nearest trusted balancer received (the right-most value it wrote).
fn forwarded_proto<'a>(front: &FrontProxies, headers: &'a HeaderMap) -> Option<&'a str> {
    match front.header {
        ForwardedHeader::XForwardedFor => {
            let value = headers.get_all("x-forwarded-proto").iter().next_back()?;
            value.to_str().ok()?.rsplit(',').next().map(str::trim)
        }
        ForwardedHeader::Forwarded => {
            let value = headers.get_all("forwarded").iter().next_back()?;
            let element = value.to_str().ok()?.rsplit(',').next()?;
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("proto")
                    .then(|| value.trim().trim_matches('"'))
            })
        }
    }
}

/// The client's address: `peer`, or what trusted proxies in front of it report.
pub fn client_ip(front: &FrontProxies, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = unmapped(peer);
    if !is_trusted(front, peer) {
        return peer;
    }
    let name = match front.header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    // Several header lines are one list, in order.
    let mut hops: Vec<&str> = Vec::new();
    for value in headers.get_all(name) {
        let Ok(text) = value.to_str() else {
            return peer;
        };
        hops.extend(text.split(','));
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let address = match front.header {
            ForwardedHeader::XForwardedFor => parse_address(hop.trim()),
            ForwardedHeader::Forwarded => forwarded_for(hop),
        };
        // A hop that is not an address (`unknown`, an obfuscated name, garbage) ends the
        // chain: the last address a trusted proxy vouched for stands.
        let Some(address) = address else {
            return client;
        };
        client = address;
        if !is_trusted(front, address) {
            return address;
        }
    }
    client
}

fn is_trusted(front: &FrontProxies, address: IpAddr) -> bool {
    front.trusted.iter().any(|net| net.contains(address))
}

/// Whether a socket's peer is a listed balancer (`trusted_proxies`), as an IPv4 address even
/// when an IPv6 listener sees it mapped: the one test for both forwarding headers and PROXY
/// headers.
pub fn trusts(front: &FrontProxies, peer: IpAddr) -> bool {
    is_trusted(front, unmapped(peer))
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_address(value)
    })
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_address(text: &str) -> Option<IpAddr> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(unmapped(address));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return address.parse().ok().map(unmapped);
    }
    let (address, port) = text.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn unmapped(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IpNet;

    fn front(header: ForwardedHeader) -> FrontProxies {
        let net = |address: &str, prefix| IpNet {
            address: address.parse().expect("address"),
            prefix,
        };
        FrontProxies {
            trusted: vec![net("10.0.0.0", 8), net("fd00::", 8)],
            header,
            proxy_protocol: false,
        }
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_the_right_most_untrusted_hop_wins() {
        let front = front(ForwardedHeader::XForwardedFor);
        let xff = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.7, 10.1.1.1"]);
        // From a trusted balancer: its list is read from the right, past trusted hops; the
        // spoofed left-most entry is never reached.
        assert_eq!(client_ip(&front, ip("10.0.0.5"), &xff), ip("203.0.113.7"));
        // From anyone else, the header is the caller's own words.
        assert_eq!(
            client_ip(&front, ip("198.51.100.9"), &xff),
            ip("198.51.100.9")
        );
        // Header lines are one list; ports and brackets are allowed.
        let split = headers("x-forwarded-for", &["6.6.6.6", "203.0.113.7:5555"]);
        assert_eq!(client_ip(&front, ip("10.0.0.5"), &split), ip("203.0.113.7"));
        let v6 = headers("x-forwarded-for", &["[2001:db8::7]:443, fd00::1"]);
        assert_eq!(client_ip(&front, ip("fd00::2"), &v6), ip("2001:db8::7"));
        // Garbage ends the chain at the last vouched-for hop; no header leaves the peer.
        let junk = headers("x-forwarded-for", &["203.0.113.7, junk, 10.2.2.2"]);
        assert_eq!(client_ip(&front, ip("10.0.0.5"), &junk), ip("10.2.2.2"));
        assert_eq!(
            client_ip(&front, ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
        // Every hop trusted: the left-most is as far as the chain goes.
        let inner = headers("x-forwarded-for", &["10.9.9.9, 10.1.1.1"]);
        assert_eq!(client_ip(&front, ip("10.0.0.5"), &inner), ip("10.9.9.9"));
        // A mapped IPv4 peer is trusted as its IPv4 self.
        assert_eq!(
            client_ip(&front, ip("::ffff:10.0.0.5"), &xff),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn forwarded_is_read_when_configured_and_x_forwarded_for_is_then_ignored() {
        let front = front(ForwardedHeader::Forwarded);
        let mut both = headers(
            "forwarded",
            &[r#"for=6.6.6.6, for="[2001:db8::7]:443";proto=https, for=10.1.1.1"#],
        );
        both.append("x-forwarded-for", "198.51.100.1".parse().expect("value"));
        assert_eq!(client_ip(&front, ip("10.0.0.5"), &both), ip("2001:db8::7"));
        let hidden = headers("forwarded", &["for=203.0.113.7, for=_hidden, for=10.1.1.1"]);
        assert_eq!(client_ip(&front, ip("10.0.0.5"), &hidden), ip("10.1.1.1"));
        let xff_only = headers("x-forwarded-for", &["203.0.113.7"]);
        assert_eq!(client_ip(&front, ip("10.0.0.5"), &xff_only), ip("10.0.0.5"));
    }

    #[test]
    fn the_nearest_balancers_scheme_is_read_from_the_header_it_writes() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, value.parse().expect("value"));
            }
            map
        };
        let xff = front(ForwardedHeader::XForwardedFor);
        let rfc = front(ForwardedHeader::Forwarded);
        let cases: [(&FrontProxies, HeaderMap, Option<&str>); 6] = [
            (
                &xff,
                headers(&[("x-forwarded-proto", "https")]),
                Some("https"),
            ),
            (
                &xff,
                headers(&[("x-forwarded-proto", "https, http")]),
                Some("http"),
            ),
            (
                &xff,
                headers(&[
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-proto", "https"),
                ]),
                Some("https"),
            ),
            (&xff, headers(&[("forwarded", "proto=http")]), None),
            (
                &rfc,
                headers(&[(
                    "forwarded",
                    "for=1.2.3.4;proto=http, for=10.0.0.1;Proto=\"https\"",
                )]),
                Some("https"),
            ),
            (&rfc, headers(&[("x-forwarded-proto", "http")]), None),
        ];
        for (front, map, expected) in cases {
            assert_eq!(forwarded_proto(front, &map), expected, "{map:?}");
        }
    }
}
