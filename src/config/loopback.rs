//! Plain http is trusted only to the machine itself (a local emulator, proxy or dev server): keys,
//! codes, refresh tokens and client secrets travel over these URLs.

use std::net::IpAddr;

/// True when `url`'s host is `localhost` or a loopback address.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// `url` parsed: https anywhere, plain http only to a loopback address.
pub fn https_unless_loopback(url: &str) -> Result<reqwest::Url, &'static str> {
    let url = reqwest::Url::parse(url).map_err(|_| "is not a URL")?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("must be https unless it points at a loopback address"),
        _ => Err("must be an http(s) URL"),
    }
}
