//! Value checks that BuildKit performs on EXPOSE ports and STOPSIGNAL signals. The typed layer
//! applies them to words without `$` at parse time and to every word after expansion.

/// Linux signal names accepted by STOPSIGNAL, without the `SIG` prefix (docker's signal map).
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// Checks a STOPSIGNAL value: a non-zero number, or a signal name with or without `SIG`
/// (any case), including `RTMIN+n` (1..=15) and `RTMAX-n` (1..=14).
pub(crate) fn check_signal(raw: &str) -> Result<(), String> {
    let invalid = || format!("STOPSIGNAL: invalid signal: {raw}");
    if let Ok(n) = raw.parse::<i64>() {
        return if n == 0 || i32::try_from(n).is_err() {
            Err(invalid())
        } else {
            Ok(())
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) || is_realtime(name) {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// `RTMIN+1` ..= `RTMIN+15` and `RTMAX-14` ..= `RTMAX-1`.
fn is_realtime(name: &str) -> bool {
    let offset = |rest: &str, max: u8| {
        rest.parse::<u8>()
            .is_ok_and(|n| (1..=max).contains(&n) && !rest.starts_with('0'))
    };
    if let Some(rest) = name.strip_prefix("RTMIN+") {
        return offset(rest, 15);
    }
    if let Some(rest) = name.strip_prefix("RTMAX-") {
        return offset(rest, 14);
    }
    false
}

/// What [`check_port`] learned about a valid port spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortForm {
    /// `80`, `80/tcp`, `8000-8010/udp`.
    Plain,
    /// `127.0.0.1:8080:80` or `8080:80`: accepted (the host part is ignored) with a warning.
    WithHost,
}

/// Checks an EXPOSE word: `[[ip:]hostPort:]port[-port][/tcp|udp|sctp]`.
pub(crate) fn check_port(spec: &str) -> Result<PortForm, String> {
    let (port_part, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (spec, ""),
    };
    if !proto.is_empty() && !["tcp", "udp", "sctp"].contains(&proto.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "EXPOSE: invalid protocol {proto:?} in {spec:?} (expected tcp, udp or sctp)"
        ));
    }
    let (container, form) = match port_part.rsplit_once(':') {
        Some((_, c)) => (c, PortForm::WithHost),
        None => (port_part, PortForm::Plain),
    };
    check_port_range(container).map_err(|why| format!("EXPOSE: invalid port {spec:?}: {why}"))?;
    Ok(form)
}

/// `80` or `8000-8010`, each a 16-bit number, the range not reversed.
fn check_port_range(range: &str) -> Result<(), String> {
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{s:?} is not a port number"));
        }
        s.parse::<u16>()
            .map_err(|_| format!("{s} is out of range (0-65535)"))
    };
    match range.split_once('-') {
        None => number(range).map(|_| ()),
        Some((start, end)) => {
            let (start, end) = (number(start)?, number(end)?);
            if end < start {
                Err(format!("range {range} ends before it starts"))
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        for ok in [
            "SIGTERM",
            "TERM",
            "sigkill",
            "9",
            "-1",
            "SIGRTMIN+3",
            "RTMAX-1",
            "SIGUSR1",
        ] {
            assert_eq!(check_signal(ok), Ok(()), "{ok}");
        }
        for bad in [
            "0",
            "SIGFOO",
            "",
            "RTMIN+16",
            "RTMAX-0",
            "99999999999",
            "SIG",
        ] {
            let e = check_signal(bad).unwrap_err();
            assert!(e.contains("invalid signal"), "{e}");
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn ports() {
        for ok in [
            "80",
            "80/tcp",
            "80/UDP",
            "8000-8010/udp",
            "53/sctp",
            "0",
            "65535",
            "80/",
        ] {
            assert_eq!(check_port(ok), Ok(PortForm::Plain), "{ok}");
        }
        assert_eq!(check_port("8080:80"), Ok(PortForm::WithHost));
        assert_eq!(check_port("127.0.0.1:8080:80/tcp"), Ok(PortForm::WithHost));
    }

    #[test]
    fn bad_ports_name_the_value() {
        let e = check_port("abc").unwrap_err();
        assert!(e.contains("EXPOSE: invalid port \"abc\""), "{e}");
        let e = check_port("80/xyz").unwrap_err();
        assert!(e.contains("invalid protocol \"xyz\""), "{e}");
        let e = check_port("70000").unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        let e = check_port("90-80/tcp").unwrap_err();
        assert!(e.contains("ends before it starts"), "{e}");
        assert!(check_port("").is_err());
        assert!(check_port("80-").is_err());
        assert!(check_port("/tcp").is_err());
    }
}
