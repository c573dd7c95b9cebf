//! The container's `/etc/resolv.conf`, from the host's, by network mode (what docker and
//! podman do): `host` keeps the host's file; the private namespaces cannot reach the host's
//! loopback, so loopback name servers (systemd-resolved's 127.0.0.53, a local dnsmasq) are
//! dropped, and with `slirp4netns` its DNS forwarder 10.0.2.3 (which reaches the host's
//! resolver) takes their place.

use std::net::IpAddr;

use super::NetworkMode;

/// slirp4netns's DNS forwarder, as seen from the container.
pub const SLIRP_DNS: &str = "10.0.2.3";

/// Docker's fallback when no usable name server is left (and no slirp4netns to forward).
const FALLBACK: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The container's `resolv.conf` for `mode` from the host's text `host`. `slirp` says whether
/// a `bridge` container gets slirp4netns ([`super::slirp::find`] is `Some`).
///
/// - `host`: `host` unchanged;
/// - `bridge` with slirp4netns: loopback `nameserver` lines dropped; `nameserver 10.0.2.3`
///   first when any was dropped or none is left;
/// - `none`, or `bridge` without slirp4netns: loopback name servers dropped, docker's
///   8.8.8.8/8.8.4.4 when none is left.
///
/// Other lines (`search`, `options`, comments) are kept.
pub fn resolv_conf(mode: NetworkMode, slirp: bool, host: &str) -> String {
    if mode == NetworkMode::Host {
        return host.to_string();
    }
    let mut kept = Vec::new();
    let (mut servers, mut dropped) = (0usize, false);
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            // `fe80::1%eth0`: the scope is not part of the address.
            let addr = words.next().unwrap_or("");
            let ip = addr.split('%').next().unwrap_or(addr).parse::<IpAddr>();
            if ip.is_ok_and(|ip| ip.is_loopback()) {
                dropped = true;
                continue;
            }
            servers += 1;
        }
        kept.push(line);
    }
    let mut out = String::new();
    let bridge_slirp = mode == NetworkMode::Bridge && slirp;
    if bridge_slirp && (dropped || servers == 0) {
        out.push_str(&format!("nameserver {SLIRP_DNS}\n"));
    }
    for line in kept {
        out.push_str(line);
        out.push('\n');
    }
    if !bridge_slirp && servers == 0 {
        for s in FALLBACK {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOLVED: &str =
        "# systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n";
    const PLAIN: &str = "nameserver 10.255.255.53\nnameserver ::1\n";

    #[test]
    fn by_mode() {
        assert_eq!(resolv_conf(NetworkMode::Host, true, RESOLVED), RESOLVED);
        assert_eq!(
            resolv_conf(NetworkMode::Bridge, true, RESOLVED),
            "nameserver 10.0.2.3\n# systemd-resolved\noptions edns0 trust-ad\nsearch lan\n"
        );
        assert_eq!(
            resolv_conf(NetworkMode::Bridge, true, PLAIN),
            "nameserver 10.0.2.3\nnameserver 10.255.255.53\n"
        );
        assert_eq!(
            resolv_conf(NetworkMode::Bridge, true, "nameserver 192.0.2.53\n"),
            "nameserver 192.0.2.53\n"
        );
        assert_eq!(
            resolv_conf(NetworkMode::Bridge, true, ""),
            "nameserver 10.0.2.3\n"
        );
        assert_eq!(
            resolv_conf(NetworkMode::None, false, RESOLVED),
            "# systemd-resolved\noptions edns0 trust-ad\nsearch lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf(NetworkMode::Bridge, false, PLAIN),
            "nameserver 10.255.255.53\n"
        );
        assert_eq!(
            resolv_conf(
                NetworkMode::None,
                false,
                "nameserver fe80::1%eth0\nnameserver\n"
            ),
            "nameserver fe80::1%eth0\nnameserver\n"
        );
    }
}
