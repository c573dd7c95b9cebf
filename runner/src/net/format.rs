//! Docker's text for published ports: `strata port C [PORT[/PROTO]]` lines and the `ps`
//! PORTS column.

use std::net::IpAddr;

use super::{PortBinding, Proto};
use crate::error::{Error, Result};

/// `IP:PORT`, with brackets around an IPv6 address.
fn host_addr(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// `docker port`'s lines: `8080/tcp -> 0.0.0.0:18080` for each binding, sorted by container
/// port; with `filter` (`8080` or `8080/udp`), only that port's host addresses
/// (`0.0.0.0:18080`).
///
/// # Errors
/// [`Error::PortSpec`] for a malformed filter; [`Error::Invalid`] (docker's "No public port
/// '8080/tcp' published") when the filter matches no binding. The caller may add
/// " for NAME".
pub fn format_ports(ports: &[PortBinding], filter: Option<&str>) -> Result<Vec<String>> {
    let mut sorted = ports.to_vec();
    sorted.sort_by_key(|p| (p.container_port, p.proto, p.host_ip, p.host_port));
    let Some(filter) = filter else {
        return Ok(sorted
            .iter()
            .map(|p| {
                format!(
                    "{}/{} -> {}",
                    p.container_port,
                    p.proto,
                    host_addr(p.host_ip, p.host_port)
                )
            })
            .collect());
    };
    let bad = |reason: &str| Error::PortSpec {
        spec: filter.to_string(),
        reason: reason.to_string(),
    };
    let (port, proto) = match filter.split_once('/') {
        Some((port, proto)) => (port, proto.parse::<Proto>()?),
        None => (filter, Proto::Tcp),
    };
    let port: u16 = port
        .parse()
        .map_err(|_| bad("expected PORT or PORT/PROTO"))?;
    let lines: Vec<String> = sorted
        .iter()
        .filter(|p| p.container_port == port && p.proto == proto)
        .map(|p| host_addr(p.host_ip, p.host_port))
        .collect();
    if lines.is_empty() {
        return Err(Error::Invalid(format!(
            "No public port '{port}/{proto}' published"
        )));
    }
    Ok(lines)
}

/// `ps`'s PORTS column: `0.0.0.0:18080->8080/tcp` per binding, runs of consecutive ports
/// merged (`0.0.0.0:8000-8001->9000-9001/tcp`), then the `exposed` ports (`"8080/tcp"`, as in
/// the image config) that are not published, as `8080/tcp`; entries sorted and joined with
/// `", "`, as docker prints them.
pub fn ps_ports(ports: &[PortBinding], exposed: &[String]) -> String {
    let mut sorted = ports.to_vec();
    sorted.sort_by_key(|p| (p.host_ip, p.proto, p.container_port, p.host_port));
    let mut entries: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut last = first;
        let mut j = i + 1;
        while j < sorted.len() {
            let next = sorted[j];
            let consecutive = next.host_ip == first.host_ip
                && next.proto == first.proto
                && u32::from(next.container_port) == u32::from(last.container_port) + 1
                && u32::from(next.host_port) == u32::from(last.host_port) + 1;
            if !consecutive {
                break;
            }
            last = next;
            j += 1;
        }
        let range = |a: u16, b: u16| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        };
        let host = match first.host_ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        entries.push(format!(
            "{host}:{}->{}/{}",
            range(first.host_port, last.host_port),
            range(first.container_port, last.container_port),
            first.proto
        ));
        i = j;
    }
    let mut unpublished: Vec<(Proto, u16)> = exposed
        .iter()
        .filter_map(|e| super::parse_publish(e).ok())
        .flatten()
        .filter(|e| {
            !ports
                .iter()
                .any(|p| p.container_port == e.container_port && p.proto == e.proto)
        })
        .map(|e| (e.proto, e.container_port))
        .collect();
    unpublished.sort();
    unpublished.dedup();
    let mut i = 0;
    while i < unpublished.len() {
        let (proto, start) = unpublished[i];
        let mut end = start;
        let mut j = i + 1;
        while j < unpublished.len()
            && unpublished[j].0 == proto
            && u32::from(unpublished[j].1) == u32::from(end) + 1
        {
            end = unpublished[j].1;
            j += 1;
        }
        if start == end {
            entries.push(format!("{start}/{proto}"));
        } else {
            entries.push(format!("{start}-{end}/{proto}"));
        }
        i = j;
    }
    entries.sort();
    entries.join(", ")
}

/// Docker's `inspect` map of ports (`NetworkSettings.Ports`, and with `exposed` empty
/// `HostConfig.PortBindings`): `{"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "18080"}]}`,
/// with `null` for an exposed port that is not published. Keys sorted.
pub fn inspect_ports(
    ports: &[PortBinding],
    exposed: &[String],
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{Map, Value, json};

    let mut sorted = ports.to_vec();
    sorted.sort_by_key(|p| (p.container_port, p.proto, p.host_ip, p.host_port));
    let mut map: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for e in exposed
        .iter()
        .filter_map(|e| super::parse_publish(e).ok())
        .flatten()
    {
        map.insert(format!("{}/{}", e.container_port, e.proto), Value::Null);
    }
    for p in &sorted {
        let entry = map
            .entry(format!("{}/{}", p.container_port, p.proto))
            .or_insert(Value::Null);
        let binding = json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()});
        match entry {
            Value::Array(list) => list.push(binding),
            other => *other = Value::Array(vec![binding]),
        }
    }
    map.into_iter().collect::<Map<String, Value>>()
}
