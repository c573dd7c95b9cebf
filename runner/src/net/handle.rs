//! [`NetHandle`]: a container's network, set up by the supervisor between the sandbox's
//! `create` and `start`, alive as long as the handle.

use super::proxy::Proxy;
use super::slirp::{self, Slirp};
use super::{NetworkMode, PortBinding};
use crate::error::Result;

/// Docker's warning when `-p`/`-P` are given with `--network host`.
pub const WARN_HOST_PORTS: &str = "Published ports are discarded when using host network mode";
/// The warning when `-p`/`-P` are given with `--network none`.
pub const WARN_NONE_PORTS: &str = "Published ports are discarded when using the none network mode";
/// The warning for `bridge` without `slirp4netns`.
pub const WARN_NO_SLIRP: &str = "slirp4netns is not installed: the container has loopback only \
     (no outbound network); published ports still work";

/// A container's network (the port proxy, `slirp4netns`); dropping it stops both.
#[derive(Debug)]
pub struct NetHandle {
    mode: NetworkMode,
    ports: Vec<PortBinding>,
    warnings: Vec<String>,
    // Field order is drop order: the proxy stops before slirp4netns.
    proxy: Option<Proxy>,
    slirp: Option<Slirp>,
}

impl NetHandle {
    /// Sets up the network of the created (not yet started) container whose pid 1 is
    /// `container_pid` on the host:
    /// - `host`: nothing (published ports are discarded, with docker's warning);
    /// - `none`: nothing beyond the namespace's `lo` (ports discarded, with a warning);
    /// - `bridge`: binds the published ports (port 0: a free one) and serves them through the
    ///   proxy, then starts `slirp4netns` and waits until `tap0` is configured; without
    ///   `slirp4netns`, a warning.
    ///
    /// Warnings are returned as text ([`NetHandle::warnings`]) for the caller to print.
    /// [`NetHandle::begin`] + [`NetSetup::finish`].
    ///
    /// # Errors
    /// [`crate::Error::PortBind`] when a host port is in use (nothing is left running);
    /// [`crate::Error::Net`] / [`crate::Error::Slirp`] when the namespace cannot be joined or
    /// slirp4netns fails.
    pub fn setup(
        mode: NetworkMode,
        ports: &[PortBinding],
        container_pid: i32,
    ) -> Result<NetHandle> {
        NetHandle::begin(mode, ports, container_pid)?.finish()
    }

    /// [`NetHandle::setup`] without waiting for `slirp4netns` (~20 ms, mostly its library
    /// loading): the ports are bound and served, slirp4netns is spawned. Do other work, then
    /// [`NetSetup::finish`] before starting the container.
    ///
    /// # Errors
    /// [`crate::Error::PortBind`] when a host port is in use (nothing is left running);
    /// [`crate::Error::Net`] when the namespace cannot be joined or slirp4netns cannot be run.
    pub fn begin(mode: NetworkMode, ports: &[PortBinding], container_pid: i32) -> Result<NetSetup> {
        let mut handle = NetHandle {
            mode,
            ports: Vec::new(),
            warnings: Vec::new(),
            proxy: None,
            slirp: None,
        };
        match mode {
            NetworkMode::Host | NetworkMode::None => {
                if !ports.is_empty() {
                    let warning = if mode == NetworkMode::Host {
                        WARN_HOST_PORTS
                    } else {
                        WARN_NONE_PORTS
                    };
                    handle.warnings.push(warning.to_string());
                }
            }
            NetworkMode::Bridge => {
                if !ports.is_empty() {
                    let proxy = Proxy::start(container_pid, ports)?;
                    handle.ports = proxy.ports().to_vec();
                    handle.proxy = Some(proxy);
                }
                match slirp::find() {
                    Some(exe) => handle.slirp = Some(Slirp::spawn(&exe, container_pid)?),
                    None => handle.warnings.push(WARN_NO_SLIRP.to_string()),
                }
            }
        }
        Ok(NetSetup { handle })
    }

    /// The mode set up.
    pub fn mode(&self) -> NetworkMode {
        self.mode
    }

    /// The ports published, with the host ports actually bound (to record in the container
    /// for `port` and `ps`). Empty unless `bridge`.
    pub fn ports(&self) -> &[PortBinding] {
        &self.ports
    }

    /// Warnings for the caller to print on stderr (`WARNING: ...`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The pid of the container's `slirp4netns`, when one runs.
    pub fn slirp_pid(&self) -> Option<u32> {
        self.slirp.as_ref().map(Slirp::pid)
    }
}

/// A container network being set up ([`NetHandle::begin`]): ports served, `slirp4netns`
/// possibly still configuring `tap0`. Dropping it stops everything, like a [`NetHandle`].
#[derive(Debug)]
pub struct NetSetup {
    handle: NetHandle,
}

impl NetSetup {
    /// The ports published, with the host ports actually bound.
    pub fn ports(&self) -> &[PortBinding] {
        self.handle.ports()
    }

    /// Waits until `slirp4netns` (if any) has configured `tap0`.
    ///
    /// # Errors
    /// [`crate::Error::Slirp`] when it fails; everything set up is stopped.
    pub fn finish(mut self) -> Result<NetHandle> {
        if let Some(slirp) = self.handle.slirp.as_mut() {
            slirp.wait_ready()?;
        }
        Ok(self.handle)
    }
}

/// [`NetHandle::setup`] (the name the design note uses).
///
/// # Errors
/// As [`NetHandle::setup`].
pub fn setup(mode: NetworkMode, ports: &[PortBinding], container_pid: i32) -> Result<NetHandle> {
    NetHandle::setup(mode, ports, container_pid)
}
