//! Predefined build args: the platform args BuildKit defines and the proxy args.
//!
//! The platform args (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`, `TARGETVARIANT`,
//! `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`, `BUILDVARIANT`) are visible in FROM lines and in a
//! stage once declared with `ARG NAME`. The proxy args (`HTTP_PROXY` etc., either case) may be
//! given with `--build-arg` without being declared; they reach RUN steps but never a cache key
//! or the image history.

/// The proxy args, which never enter cache keys.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `name` is a proxy arg.
pub fn is_proxy(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// Whether `name` is predefined (platform or proxy): using it undeclared is not a warning.
pub fn is_predefined(name: &str) -> bool {
    is_proxy(name)
        || matches!(
            name,
            "TARGETPLATFORM"
                | "TARGETOS"
                | "TARGETARCH"
                | "TARGETVARIANT"
                | "BUILDPLATFORM"
                | "BUILDOS"
                | "BUILDARCH"
                | "BUILDVARIANT"
        )
}

pub use strata_cas::Platform;

/// The platform args for a target and a build platform.
pub fn predefined(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let v = |p: &Platform| p.variant.clone().unwrap_or_default();
    vec![
        ("TARGETPLATFORM".into(), target.to_string()),
        ("TARGETOS".into(), target.os.clone()),
        ("TARGETARCH".into(), target.arch.clone()),
        ("TARGETVARIANT".into(), v(target)),
        ("BUILDPLATFORM".into(), build.to_string()),
        ("BUILDOS".into(), build.os.clone()),
        ("BUILDARCH".into(), build.arch.clone()),
        ("BUILDVARIANT".into(), v(build)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_print() {
        let p: Platform = "linux/amd64".parse().unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        let p: Platform = "Linux/aarch64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//".parse::<Platform>().is_err());
        let args = predefined(&"linux/arm64".parse().unwrap(), &Platform::host());
        assert!(args.contains(&("TARGETARCH".into(), "arm64".into())));
        assert!(is_proxy("no_proxy") && !is_proxy("PATH"));
        assert!(is_predefined("BUILDOS") && !is_predefined("FOO"));
    }
}
