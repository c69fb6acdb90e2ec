//! Client addresses as onair's limits count them.

use std::net::{IpAddr, Ipv6Addr};

/// The network a client is counted under by the per-client limits (RTMP connections, logins,
/// sign-ups): an IPv4 address itself (an IPv4-mapped IPv6 address as IPv4), an IPv6 address's
/// /64 (one customer's prefix: a host picks any of its 2^64 addresses freely, RFC 8981).
pub fn client_net(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::client_net;

    #[test]
    fn v6_by_its_64_v4_as_is() {
        let net = |s: &str| client_net(s.parse().expect("ip")).to_string();
        assert_eq!(net("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::");
        assert_eq!(net("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(net("192.0.2.1"), "192.0.2.1");
    }
}
