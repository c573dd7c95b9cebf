//! `-p` parsing, `--network` modes and docker's port text.

use std::net::IpAddr;

use super::*;

fn b(ip: &str, host: u16, container: u16, proto: Proto) -> PortBinding {
    PortBinding {
        host_ip: ip.parse::<IpAddr>().unwrap_or(ANY_V4),
        host_port: host,
        container_port: container,
        proto,
    }
}

fn one(spec: &str) -> PortBinding {
    match parse_publish(spec) {
        Ok(v) if v.len() == 1 => v[0],
        other => panic!("{spec}: {other:?}"),
    }
}

#[test]
fn publish_forms() {
    use Proto::{Tcp, Udp};
    assert_eq!(one("8080"), b("0.0.0.0", 0, 8080, Tcp));
    assert_eq!(one("18080:8080"), b("0.0.0.0", 18080, 8080, Tcp));
    assert_eq!(
        one("127.0.0.1:18080:8080"),
        b("127.0.0.1", 18080, 8080, Tcp)
    );
    assert_eq!(one("127.0.0.1::8080"), b("127.0.0.1", 0, 8080, Tcp));
    assert_eq!(one(":8080"), b("0.0.0.0", 0, 8080, Tcp));
    assert_eq!(one("53:53/udp"), b("0.0.0.0", 53, 53, Udp));
    assert_eq!(one("53/UDP"), b("0.0.0.0", 0, 53, Udp));
    assert_eq!(one("80:80/tcp"), b("0.0.0.0", 80, 80, Tcp));
    assert_eq!(one("[::1]:8080:80"), b("::1", 8080, 80, Tcp));
    assert_eq!(one("[::]::80/udp"), b("::", 0, 80, Udp));
}

#[test]
fn publish_ranges() -> Result<()> {
    use Proto::Tcp;
    assert_eq!(
        parse_publish("8000-8001:9000-9001")?,
        vec![b("0.0.0.0", 8000, 9000, Tcp), b("0.0.0.0", 8001, 9001, Tcp)]
    );
    assert_eq!(
        parse_publish("127.0.0.1::9000-9002/tcp")?,
        vec![
            b("127.0.0.1", 0, 9000, Tcp),
            b("127.0.0.1", 0, 9001, Tcp),
            b("127.0.0.1", 0, 9002, Tcp)
        ]
    );
    assert_eq!(parse_publish("65535-65535:65535")?.len(), 1);
    assert_eq!(parse_publish("1-65535")?.len(), 65535);
    Ok(())
}

#[test]
fn publish_errors_name_the_value() {
    for (spec, needle) in [
        ("", "no container port"),
        ("/udp", "no container port"),
        ("8080/sctp", "protocol"),
        ("abc", "invalid port"),
        ("70000", "invalid port"),
        ("18080:", "missing"),
        ("0", "container port 0"),
        ("9001-9000", "start above end"),
        ("8000-8002:9000-9001", "must match"),
        ("8000:9000-9001", "must match"),
        ("1.2.3.4:8080", "invalid port \"1.2.3.4\""),
        ("[::1]:8080", "HOST:CONTAINER"),
        ("300.1.1.1:80:80", "invalid IP"),
        ("a:b:c:d", "too many"),
        ("[::1:80:80", "unterminated"),
        ("[::1]80:80", "expected ':'"),
        ("-1:80", "invalid port"),
        ("0-1:80-81", "host port 0"),
    ] {
        match parse_publish(spec) {
            Err(e @ Error::PortSpec { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{spec}: {msg}");
                assert!(msg.contains(&format!("{spec:?}")), "{spec}: {msg}");
            }
            other => panic!("{spec}: {other:?}"),
        }
    }
}

#[test]
fn publish_all_takes_the_exposed_ports() -> Result<()> {
    let exposed = vec![
        "8080/tcp".to_string(),
        "53/udp".to_string(),
        "80".to_string(),
        "8080/tcp".to_string(),
    ];
    assert_eq!(
        publish_all(&exposed)?,
        vec![
            b("0.0.0.0", 0, 53, Proto::Udp),
            b("0.0.0.0", 0, 80, Proto::Tcp),
            b("0.0.0.0", 0, 8080, Proto::Tcp),
        ]
    );
    assert!(publish_all(&["1:2/tcp".to_string()]).is_err());
    assert!(publish_all(&[]).is_ok_and(|v| v.is_empty()));
    Ok(())
}

#[test]
fn network_modes() {
    assert_eq!("none".parse::<NetworkMode>().ok(), Some(NetworkMode::None));
    assert_eq!("host".parse::<NetworkMode>().ok(), Some(NetworkMode::Host));
    assert_eq!(
        "bridge".parse::<NetworkMode>().ok(),
        Some(NetworkMode::Bridge)
    );
    assert_eq!(
        "default".parse::<NetworkMode>().ok(),
        Some(NetworkMode::Bridge)
    );
    assert_eq!(NetworkMode::default(), NetworkMode::Bridge);
    for bad in ["", "Bridge", "container:web", "mynet"] {
        let err = bad.parse::<NetworkMode>().err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|m| m.contains("none, host and bridge")),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(netns_kinds(NetworkMode::Host), Network::Host);
    assert_eq!(netns_kinds(NetworkMode::None), Network::None);
    assert_eq!(netns_kinds(NetworkMode::Bridge), Network::None);
    assert!(!NetworkMode::Host.needs_netns());
}

#[test]
fn binding_json_round_trips() -> std::result::Result<(), serde_json::Error> {
    let v = b("127.0.0.1", 18080, 8080, Proto::Udp);
    let json = serde_json::to_string(&v)?;
    assert_eq!(
        json,
        r#"{"host_ip":"127.0.0.1","host_port":18080,"container_port":8080,"proto":"udp"}"#
    );
    assert_eq!(serde_json::from_str::<PortBinding>(&json)?, v);
    let other =
        r#"{"host_ip":"127.0.0.1","host_port":18080,"container_port":8080,"protocol":"udp"}"#;
    assert_eq!(serde_json::from_str::<PortBinding>(other)?, v);
    assert_eq!(serde_json::to_string(&NetworkMode::Bridge)?, r#""bridge""#);
    Ok(())
}

#[test]
fn port_lines_like_docker() -> Result<()> {
    let ports = vec![
        b("0.0.0.0", 18080, 8080, Proto::Tcp),
        b("::1", 5353, 53, Proto::Udp),
        b("127.0.0.1", 18081, 8080, Proto::Tcp),
    ];
    assert_eq!(
        format_ports(&ports, None)?,
        vec![
            "53/udp -> [::1]:5353",
            "8080/tcp -> 0.0.0.0:18080",
            "8080/tcp -> 127.0.0.1:18081",
        ]
    );
    assert_eq!(
        format_ports(&ports, Some("8080"))?,
        vec!["0.0.0.0:18080", "127.0.0.1:18081"]
    );
    assert_eq!(format_ports(&ports, Some("53/udp"))?, vec!["[::1]:5353"]);
    let missing = format_ports(&ports, Some("53"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        missing.as_deref(),
        Some("No public port '53/tcp' published")
    );
    assert!(format_ports(&ports, Some("x/tcp")).is_err());
    assert!(format_ports(&[], None)?.is_empty());
    Ok(())
}

#[test]
fn ps_column_like_docker() -> Result<()> {
    let mut ports = parse_publish("8000-8001:9000-9001")?;
    ports.push(b("0.0.0.0", 18080, 8080, Proto::Tcp));
    ports.push(b("127.0.0.1", 5353, 53, Proto::Udp));
    assert_eq!(
        ps_ports(
            &ports,
            &[
                "8080/tcp".to_string(),
                "443/tcp".to_string(),
                "444/tcp".to_string()
            ]
        ),
        "0.0.0.0:18080->8080/tcp, 0.0.0.0:8000-8001->9000-9001/tcp, 127.0.0.1:5353->53/udp, 443-444/tcp"
    );
    assert_eq!(ps_ports(&[], &[]), "");
    assert_eq!(ps_ports(&[], &["80/tcp".to_string()]), "80/tcp");
    Ok(())
}

#[test]
fn inspect_map_like_docker() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut ports = parse_publish("127.0.0.1:18080:8080")?;
    ports.extend(parse_publish("18081:8080")?);
    ports.extend(parse_publish("53:53/udp")?);
    let map = inspect_ports(&ports, &["8080/tcp".to_string(), "9000/tcp".to_string()]);
    assert_eq!(
        serde_json::to_string(&map)?,
        r#"{"53/udp":[{"HostIp":"0.0.0.0","HostPort":"53"}],"8080/tcp":[{"HostIp":"0.0.0.0","HostPort":"18081"},{"HostIp":"127.0.0.1","HostPort":"18080"}],"9000/tcp":null}"#
    );
    Ok(())
}

/// Every short combination of the syntax's pieces parses or fails cleanly (no panic, no
/// overflow), and what parses is consistent.
#[test]
fn publish_never_panics() {
    const PIECES: [&str; 14] = [
        "1",
        "0",
        "65535",
        "65536",
        "-",
        ":",
        "/",
        "udp",
        "[",
        "]",
        "::1",
        "1.2.3.4",
        "a",
        "8000-8001",
    ];
    let mut spec = String::new();
    for n in 0..14usize.pow(4) {
        spec.clear();
        let mut k = n;
        for _ in 0..4 {
            spec.push_str(PIECES[k % 14]);
            k /= 14;
        }
        if let Ok(bindings) = parse_publish(&spec) {
            assert!(!bindings.is_empty(), "{spec}");
            for b in bindings {
                assert_ne!(b.container_port, 0, "{spec}");
            }
        }
    }
}
