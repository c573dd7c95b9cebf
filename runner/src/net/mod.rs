//! Container networking: docker's `--network none|host|bridge`, `-p`/`-P` parsing, and the
//! per-container [`NetHandle`] the supervisor keeps for the container's life.
//!
//! - `none`: a new network namespace with only `lo` (the sandbox brings `lo` up).
//! - `host`: no network namespace; the host's network.
//! - `bridge` (the default): a new network namespace with `lo`, plus outbound access through
//!   `slirp4netns` ([`slirp`]) when it is installed; without it, loopback only and a warning
//!   that the caller prints.
//! - Published ports (`-p`, `-P`) go through a userspace proxy ([`proxy`]) in the host
//!   namespace: it listens on `HOST_IP:HOST_PORT` and, per connection (or UDP peer), creates a
//!   socket inside the container's network namespace that talks to `127.0.0.1:CONTAINER_PORT`.
//!   No iptables.
//!
//! [`resolv_conf`] gives the container's `/etc/resolv.conf` for its mode ([`dns`]).
//!
//! Data enters as flag strings ([`parse_publish`], [`NetworkMode::from_str`]) and the image's
//! `ExposedPorts` ([`publish_all`]); it leaves as [`PortBinding`]s (stored in the container
//! record) and as docker's `port`/`ps`/`inspect` forms ([`format_ports`], [`ps_ports`],
//! [`inspect_ports`]).

pub mod dns;
mod format;
pub mod proxy;
pub mod slirp;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strata_executor::sandbox::Network;

pub use dns::resolv_conf;
pub use format::{format_ports, inspect_ports, ps_ports};

use crate::error::{Error, Result};

/// Docker's `--network` modes that strata supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A private network namespace with loopback only.
    None,
    /// The host's network namespace.
    Host,
    /// A private network namespace with loopback, outbound access through `slirp4netns` and
    /// published ports (docker's default).
    #[default]
    Bridge,
}

impl NetworkMode {
    /// Whether the container needs its own network namespace (every mode but `host`).
    pub fn needs_netns(self) -> bool {
        self != NetworkMode::Host
    }

    /// Docker's name of the mode (`none`, `host`, `bridge`).
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
            NetworkMode::Bridge => "bridge",
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NetworkMode {
    type Err = Error;

    /// `none`, `host`, `bridge`, and `default` (= `bridge`, as docker).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            "bridge" | "default" => Ok(NetworkMode::Bridge),
            other => Err(Error::NetworkMode(other.to_string())),
        }
    }
}

/// The sandbox network a mode needs: [`Network::None`] (a new namespace whose `lo` the sandbox
/// brings up) for `none` and `bridge`, [`Network::Host`] for `host`.
pub fn netns_kinds(mode: NetworkMode) -> Network {
    if mode.needs_netns() {
        Network::None
    } else {
        Network::Host
    }
}

/// A transport protocol of a published port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(Error::PortSpec {
                spec: s.to_string(),
                reason: format!("unsupported protocol {other:?} (tcp or udp)"),
            }),
        }
    }
}

/// One published port: `host_ip:host_port` on the host forwards to `container_port/proto`
/// inside the container. `host_port` 0 means "any free port"; [`NetHandle::ports`] has the
/// port actually bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortBinding {
    /// The host address to listen on (`0.0.0.0` when not given).
    pub host_ip: IpAddr,
    /// The host port (0: pick a free one).
    pub host_port: u16,
    /// The port inside the container.
    pub container_port: u16,
    /// TCP or UDP (also read from a `protocol` key).
    #[serde(alias = "protocol")]
    pub proto: Proto,
}

/// The address a binding listens on when `-p` gives none.
pub const ANY_V4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Parses one `-p` value with docker's syntax: `CONTAINER`, `HOST:CONTAINER`,
/// `IP:HOST:CONTAINER`, `IP::CONTAINER` (any host port), each with an optional `/tcp` or
/// `/udp`; ports may be ranges (`8000-8001:9000-9001`, of equal length), and an IPv6 address
/// is written in brackets (`[::1]:80:80`). A bare container port or range gets host port 0
/// (a free port each).
///
/// # Errors
/// [`Error::PortSpec`] naming the value and what is wrong with it.
pub fn parse_publish(spec: &str) -> Result<Vec<PortBinding>> {
    let bad = |reason: &str| Error::PortSpec {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((rest, proto)) => (
            rest,
            proto
                .parse::<Proto>()
                .map_err(|_| bad(&format!("unsupported protocol {proto:?} (tcp or udp)")))?,
        ),
        None => (spec, Proto::Tcp),
    };
    if rest.is_empty() {
        return Err(bad("no container port"));
    }
    // Split off an IP: either `[v6]:` or everything before the second-to-last colon.
    let (ip, ports) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after
            .split_once(']')
            .ok_or_else(|| bad("unterminated [ in the IPv6 address"))?;
        let tail = tail
            .strip_prefix(':')
            .ok_or_else(|| bad("expected ':' after the IPv6 address"))?;
        (Some(ip), tail)
    } else {
        let colons = rest.matches(':').count();
        match colons {
            0 | 1 => (None, rest),
            2 => {
                let (ip, tail) = rest.split_once(':').ok_or_else(|| bad("malformed"))?;
                (Some(ip), tail)
            }
            _ => return Err(bad("too many ':' (write an IPv6 address in brackets)")),
        }
    };
    let host_ip = match ip {
        None | Some("") => ANY_V4,
        Some(ip) => ip
            .parse::<IpAddr>()
            .map_err(|_| bad(&format!("invalid IP address {ip:?}")))?,
    };
    let (host, container) = match ports.split_once(':') {
        Some((host, container)) => (Some(host), container),
        None if ip.is_some() => return Err(bad("an IP needs HOST:CONTAINER after it")),
        None => (None, ports),
    };
    let (cstart, cend) =
        parse_range(container).map_err(|r| bad(&format!("container port: {r}")))?;
    if cstart == 0 {
        return Err(bad("container port 0 is invalid"));
    }
    let count = u32::from(cend - cstart) + 1;
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(parse_range(h).map_err(|r| bad(&format!("host port: {r}")))?),
    };
    let host_start = match host {
        None => None,
        Some((hs, he)) => {
            let hcount = u32::from(he - hs) + 1;
            if hcount != count {
                return Err(bad(&format!(
                    "the host range has {hcount} ports and the container range {count}; they must match"
                )));
            }
            if hs == 0 && count > 1 {
                return Err(bad("host port 0 in a range"));
            }
            Some(hs)
        }
    };
    Ok((0..count)
        .map(|i| {
            // `i < count <= 65535 - start + 1`, so the sums fit in u16.
            let off = i as u16;
            PortBinding {
                host_ip,
                host_port: host_start.map_or(0, |h| h + off),
                container_port: cstart + off,
                proto,
            }
        })
        .collect())
}

/// `N` or `N-M` (N <= M) as an inclusive range of ports.
fn parse_range(s: &str) -> std::result::Result<(u16, u16), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port {p:?} (0-65535)"))
    };
    if s.is_empty() {
        return Err("missing".to_string());
    }
    match s.split_once('-') {
        None => {
            let p = port(s)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(format!("invalid range {s:?} (start above end)"));
            }
            Ok((a, b))
        }
    }
}

/// `-P`: every port the image EXPOSEs (`"8080/tcp"`, `"53/udp"`, `"8000-8001/tcp"`), published
/// on `0.0.0.0` at a free host port each.
///
/// # Errors
/// [`Error::PortSpec`] for a malformed `ExposedPorts` entry.
pub fn publish_all(exposed: &[String]) -> Result<Vec<PortBinding>> {
    let mut out = Vec::new();
    for e in exposed {
        if e.contains(':') {
            return Err(Error::PortSpec {
                spec: e.clone(),
                reason: "an exposed port has no host part".to_string(),
            });
        }
        out.extend(parse_publish(e)?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub use handle::{NetHandle, NetSetup, setup};

mod handle;

#[cfg(test)]
mod tests;
