//! Which of a peer's addresses are worth dialling. A loopback address names the dialling host
//! itself, so one taken from another host's list either fails or, worse, reaches a different
//! node on this host listening on the same port: libp2p then fails the whole dial with a wrong
//! peer id, whatever the other addresses would have given. Loopback addresses are therefore kept
//! only when a list has nothing else (nodes that all run on one host, as tests and the demo do).

use libp2p::{multiaddr::Protocol, Multiaddr};

/// Whether `addr` is a loopback address.
pub(super) fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// `addrs` without loopback addresses, unless they are all loopback.
pub(super) fn dialable(addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
    if addrs.iter().all(is_loopback) {
        return addrs;
    }
    addrs.into_iter().filter(|a| !is_loopback(a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_is_dropped_only_when_something_else_is_there() {
        let only_loopback = vec![a("/ip4/127.0.0.1/tcp/1"), a("/ip6/::1/tcp/1")];
        assert_eq!(dialable(only_loopback.clone()), only_loopback);
        let mixed = vec![
            a("/ip4/127.0.0.1/tcp/4001"),
            a("/ip4/10.1.0.2/tcp/4001"),
            a("/ip4/203.0.113.1/tcp/4001/p2p/12D3KooWCVpJJKRM3sf88WTf6oPZyiMScoHSjKMMnCcGACbkvudw/p2p-circuit"),
        ];
        assert_eq!(dialable(mixed.clone()), mixed[1..].to_vec());
        assert!(dialable(Vec::new()).is_empty());
    }
}
