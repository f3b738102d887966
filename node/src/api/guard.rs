//! What guards every API answer against a hostile web page in the user's browser: the security
//! headers (no framing, no caching, no sniffing, a strict CSP for the page) and the `Host` /
//! `Origin` check that defeats DNS rebinding and cross-site requests, WebSocket upgrades included.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use axum::{
    extract::{Request, State},
    http::{
        header::{HOST, ORIGIN},
        HeaderName, HeaderValue,
    },
    middleware::Next,
    response::{IntoResponse, Response},
};
use tim_protocol::Code;

use super::error::ApiError;

/// The page loads its script and style from this API only, talks only to it (HTTP and its
/// WebSocket: CSP 3 `'self'` covers `ws:` to the same host), may not be framed, and has no
/// inline script. JSON answers get the same policy; it only matters if one were ever rendered.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Headers on every answer: the page, API answers, errors and refusals alike. Names in lowercase.
const HEADERS: [(&str, &str); 6] = [
    ("content-security-policy", CSP),
    // For browsers that predate `frame-ancestors`: the revoke and burn buttons cannot be framed.
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    // Message bodies never reach the browser's disk cache.
    ("cache-control", "no-store"),
    // Other sites cannot load these answers as images or scripts.
    ("cross-origin-resource-policy", "same-origin"),
];

/// Adds [`HEADERS`] to a response, replacing any a handler set.
pub(crate) async fn security_headers(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    resp
}

/// A `Host` (or an allowlist entry) reduced to what is compared: an IP address, or a lowercase
/// DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// `host` without a port: an IPv4 address, an IPv6 address in brackets, or a DNS name.
    fn parse(host: &str) -> Option<Host> {
        if let Some(inner) = host.strip_prefix('[') {
            return inner
                .strip_suffix(']')
                .and_then(|v6| v6.parse::<Ipv6Addr>().ok())
                .map(|ip| Host::Ip(IpAddr::V6(ip)));
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Some(Host::Ip(IpAddr::V4(ip)));
        }
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        name_ok.then(|| Host::Name(host.to_ascii_lowercase()))
    }

    /// A `Host` header value or an origin's authority: `host` or `host:port`.
    fn parse_authority(authority: &str) -> Option<Host> {
        let host = match authority.rsplit_once(':') {
            // `[::1]` alone has a colon inside the brackets, not a port.
            Some((host, port)) if !port.contains(']') => {
                if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                host
            }
            _ => authority,
        };
        Host::parse(host)
    }
}

/// The names a request's `Host` may carry. Loopback ones (`localhost`, `127.0.0.0/8`, `[::1]`)
/// always; the API's bind address when it is not loopback; and the names the operator adds.
/// Ports are not compared: DNS rebinding needs an attacker's name, not a port.
/// `HostAllowlist::default()` holds the loopback names only.
#[derive(Debug, Clone, Default)]
pub struct HostAllowlist {
    extra: Vec<Host>,
}

impl HostAllowlist {
    /// The allowlist of an API bound to `bind`, plus `names` (each a DNS name or an IP address,
    /// without a port; IPv6 with or without brackets).
    pub fn new(bind: IpAddr, names: &[String]) -> crate::Result<Self> {
        let mut extra = Vec::new();
        if !bind.is_loopback() {
            extra.push(Host::Ip(bind));
        }
        for name in names {
            let trimmed = name.trim();
            let parsed = trimmed
                .parse::<IpAddr>()
                .ok()
                .map(Host::Ip)
                .or_else(|| Host::parse(trimmed))
                .ok_or_else(|| {
                    crate::Error::BadParameters(format!(
                        "API allowed host {name:?}: give a DNS name or an IP address, without a port"
                    ))
                })?;
            extra.push(parsed);
        }
        Ok(HostAllowlist { extra })
    }

    /// Whether a `Host` header value (`host[:port]`) is one this API answers to.
    pub fn allows(&self, authority: &str) -> bool {
        match Host::parse_authority(authority) {
            Some(Host::Ip(ip)) if ip.is_loopback() => true,
            Some(Host::Name(name)) if name == "localhost" => true,
            Some(host) => self.extra.contains(&host),
            None => false,
        }
    }
}

/// Whether `origin` (an `Origin` header) is the origin whose authority is `host`: the page this
/// API served. Browsers send `Origin` on cross-site requests and on every WebSocket handshake.
fn same_origin(origin: &str, host: &str) -> bool {
    match origin.split_once("://") {
        Some(("http" | "https", authority)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// Refuses (4403) a request whose `Host` is not in the allowlist, or that carries an `Origin`
/// other than this API's own: a page on another site (or on a rebound name) gets nothing, not
/// even a WebSocket on which to guess tokens.
pub(crate) async fn check_host(State(hosts): State<Arc<HostAllowlist>>, req: Request, next: Next) -> Response {
    // HTTP/2 carries the host in the URI instead of a header.
    let host = match req.headers().get(HOST) {
        Some(v) => v.to_str().ok().map(str::to_owned),
        None => req.uri().authority().map(|a| a.as_str().to_owned()),
    };
    let Some(host) = host.clone().filter(|h| hosts.allows(h)) else {
        let shown = host.as_deref().unwrap_or("(none)");
        return ApiError::new(
            Code::HostNotAllowed,
            format!(
                "host {shown:?} is not one this API answers to; an operator adds names with \
                 --api-allowed-hosts or api_allowed_hosts"
            ),
        )
        .into_response();
    };
    if let Some(origin) = req.headers().get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        if !same_origin(origin, &host) {
            return ApiError::new(
                Code::HostNotAllowed,
                format!("requests from origin {origin:?} are refused: only this API's own page may call it"),
            )
            .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(bind: &str, names: &[&str]) -> HostAllowlist {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        HostAllowlist::new(bind.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)), &names)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn loopback_names_with_any_port_in_any_case() {
        let l = list("127.0.0.1", &[]);
        for ok in [
            "localhost",
            "localhost:7117",
            "LocalHost:1",
            "127.0.0.1",
            "127.0.0.1:7117",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:7117",
            "[0:0:0:0:0:0:0:1]:7117",
        ] {
            assert!(l.allows(ok), "{ok} refused");
        }
        for bad in [
            "evil.example",
            "evil.example:7117",
            "localhost.evil.example",
            "localhost.",
            "127.0.0.1.nip.io:7117",
            "10.0.0.5:7117",
            "[::2]:7117",
            "::1",
            "",
            ":7117",
            "localhost:",
            "localhost:x",
            "local host",
            "[::1]junk",
        ] {
            assert!(!l.allows(bad), "{bad:?} allowed");
        }
    }

    #[test]
    fn a_wider_bind_adds_its_address_and_the_operator_adds_names() {
        let l = list("10.0.0.5", &["Tim.Example", "192.168.1.9", "[fd00::1]", "fd00::2"]);
        for ok in [
            "10.0.0.5:7117",
            "tim.example:7117",
            "TIM.EXAMPLE",
            "192.168.1.9",
            "[fd00::1]:1",
            "[fd00::2]",
            "localhost:7117",
        ] {
            assert!(l.allows(ok), "{ok} refused");
        }
        assert!(!l.allows("evil.example:7117"));
        assert!(!l.allows("10.0.0.6:7117"));
        // A loopback bind adds nothing but the operator's names.
        assert!(!list("127.0.0.1", &[]).allows("10.0.0.5"));
        assert!(list("127.0.0.1", &["tim.local"]).allows("tim.local:7117"));
    }

    #[test]
    fn bad_allowlist_entries_are_refused() {
        for bad in ["tim.example:7117", "http://tim.example", "", "a b", "[::1"] {
            let got = HostAllowlist::new(IpAddr::V4(Ipv4Addr::LOCALHOST), &[bad.to_string()]);
            assert!(got.is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn header_names_and_values_are_valid() {
        for (name, value) in HEADERS {
            assert!(
                HeaderName::from_bytes(name.as_bytes()).is_ok_and(|n| n.as_str() == name),
                "{name}"
            );
            assert!(HeaderValue::from_str(value).is_ok(), "{value}");
        }
    }

    #[test]
    fn only_the_api_s_own_origin_passes() {
        assert!(same_origin("http://127.0.0.1:7117", "127.0.0.1:7117"));
        assert!(same_origin("http://LOCALHOST:7117", "localhost:7117"));
        assert!(!same_origin("http://127.0.0.1:8080", "127.0.0.1:7117"));
        assert!(!same_origin("http://localhost:7117", "127.0.0.1:7117"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:7117"));
        assert!(!same_origin("null", "127.0.0.1:7117"));
        assert!(!same_origin("file://", "127.0.0.1:7117"));
    }
}
