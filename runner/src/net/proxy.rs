//! The userspace port proxy (docker-proxy's role, without iptables): threads in the host
//! network namespace listen on each published `HOST_IP:HOST_PORT` and forward to
//! `127.0.0.1:CONTAINER_PORT` inside the container's network namespace.
//!
//! A socket belongs to the network namespace it was created in, for its whole life, whichever
//! thread uses it later. So one long-lived worker thread ([`NsSockets`]) `setns(2)`es into the
//! container's namespace (from `/proc/PID/ns/net`, opened once) and only creates sockets on
//! request; the host-side threads connect and move the data. TCP: one connection inside per
//! accepted connection, data copied both ways, an EOF half-closes the other side
//! (`shutdown(SHUT_WR)`), an error closes both. UDP: one connected socket inside per client
//! address, dropped after [`UDP_IDLE`] without traffic.
//!
//! Dropping the [`Proxy`] closes a stop pipe every thread polls, shuts down the open
//! connections and joins the listener threads.

use std::collections::HashMap;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, connect, socket};

use super::{PortBinding, Proto};
use crate::error::{Error, Result};

/// How long a UDP client's socket inside the container lives without traffic (docker-proxy's
/// value).
pub const UDP_IDLE: Duration = Duration::from_secs(90);

/// The copy buffer per direction of a TCP connection.
const BUF: usize = 64 * 1024;

/// A request to the namespace worker: a socket of this type, answered on `reply`.
struct Request {
    ty: SockType,
    reply: SyncSender<io::Result<OwnedFd>>,
}

/// Creates sockets inside one network namespace: a worker thread that joined it.
#[derive(Clone)]
pub struct NsSockets {
    tx: Sender<Request>,
}

impl std::fmt::Debug for NsSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NsSockets")
    }
}

impl NsSockets {
    /// Opens the network namespace of `pid` and starts the worker that joins it. The worker
    /// (and the namespace reference it holds) ends when the last clone is dropped.
    ///
    /// # Errors
    /// [`Error::Net`] when the namespace cannot be opened or joined (no such process, no
    /// `CAP_SYS_ADMIN`).
    pub fn open(pid: i32) -> Result<NsSockets> {
        let path = format!("/proc/{pid}/ns/net");
        let ns = std::fs::File::open(&path).map_err(|source| Error::Net {
            what: format!("cannot open {path}"),
            source,
        })?;
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
        std::thread::Builder::new()
            .name(format!("netns-{pid}"))
            .spawn(move || {
                // setns(2) with CLONE_NEWNET moves only the calling thread:
                // https://man7.org/linux/man-pages/man2/setns.2.html
                if let Err(e) = setns(&ns, CloneFlags::CLONE_NEWNET) {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
                drop(ns);
                let _ = ready_tx.send(Ok(()));
                for req in rx {
                    let made = socket(AddressFamily::Inet, req.ty, SockFlag::SOCK_CLOEXEC, None)
                        .map_err(io::Error::from);
                    let _ = req.reply.send(made);
                }
            })
            .map_err(|source| Error::Net {
                what: "cannot start the namespace thread".to_string(),
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(NsSockets { tx }),
            Ok(Err(source)) => Err(Error::Net {
                what: format!("cannot join {path}"),
                source,
            }),
            Err(_) => Err(Error::Net {
                what: format!("cannot join {path}"),
                source: io::Error::other("the namespace thread ended"),
            }),
        }
    }

    /// A new IPv4 socket (TCP or UDP) in the namespace.
    ///
    /// # Errors
    /// The worker's `socket(2)` error, or `BrokenPipe` when the worker is gone.
    pub fn socket(&self, proto: Proto) -> io::Result<OwnedFd> {
        let ty = match proto {
            Proto::Tcp => SockType::Stream,
            Proto::Udp => SockType::Datagram,
        };
        let (reply, answer) = mpsc::sync_channel(1);
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the namespace thread ended");
        self.tx.send(Request { ty, reply }).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    /// A socket in the namespace connected to `127.0.0.1:port`.
    ///
    /// # Errors
    /// Creating or connecting it failed (`ECONNREFUSED` when nothing listens).
    pub fn connect_local(&self, proto: Proto, port: u16) -> io::Result<OwnedFd> {
        let fd = self.socket(proto)?;
        let addr = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        loop {
            match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
                Ok(()) => return Ok(fd),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The open TCP connections (both sides), so that a stop can shut them down.
#[derive(Debug, Default)]
struct Open {
    /// Set by the stop: a connection registered later is shut down at once.
    stopped: bool,
    conns: HashMap<u64, (TcpStream, TcpStream)>,
}

type Conns = Arc<Mutex<Open>>;

/// A running proxy for a container's published ports; dropping it stops it.
#[derive(Debug)]
pub struct Proxy {
    ports: Vec<PortBinding>,
    stop_w: Option<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
    conns: Conns,
}

/// A bound host socket, before its thread starts.
enum Bound {
    Tcp(TcpListener, u16),
    Udp(UdpSocket, u16),
}

impl Proxy {
    /// Binds every binding's host address (port 0: a free port), then serves them, forwarding
    /// into the network namespace of `pid`.
    ///
    /// # Errors
    /// [`Error::PortBind`] when a host address cannot be bound (port in use, ...), before
    /// anything is served; [`Error::Net`] when the namespace cannot be joined.
    pub fn start(pid: i32, bindings: &[PortBinding]) -> Result<Proxy> {
        let ns = NsSockets::open(pid)?;
        let mut bound = Vec::with_capacity(bindings.len());
        let mut ports = Vec::with_capacity(bindings.len());
        for b in bindings {
            let addr = SocketAddr::new(b.host_ip, b.host_port);
            let bind_err = |source| Error::PortBind {
                addr: addr.to_string(),
                proto: b.proto.to_string(),
                source,
            };
            let (sock, local) = match b.proto {
                Proto::Tcp => {
                    let l = TcpListener::bind(addr).map_err(bind_err)?;
                    l.set_nonblocking(true).map_err(bind_err)?;
                    let local = l.local_addr().map_err(bind_err)?;
                    (Bound::Tcp(l, b.container_port), local)
                }
                Proto::Udp => {
                    let s = UdpSocket::bind(addr).map_err(bind_err)?;
                    s.set_nonblocking(true).map_err(bind_err)?;
                    let local = s.local_addr().map_err(bind_err)?;
                    (Bound::Udp(s, b.container_port), local)
                }
            };
            ports.push(PortBinding {
                host_port: local.port(),
                ..*b
            });
            bound.push(sock);
        }
        let (stop_r, stop_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::Net {
            what: "stop pipe".to_string(),
            source: e.into(),
        })?;
        let stop_r = Arc::new(stop_r);
        let conns: Conns = Arc::default();
        let mut proxy = Proxy {
            ports,
            stop_w: Some(stop_w),
            threads: Vec::new(),
            conns: conns.clone(),
        };
        for sock in bound {
            let (ns, stop, conns) = (ns.clone(), stop_r.clone(), conns.clone());
            let spawned = match sock {
                Bound::Tcp(l, port) => std::thread::Builder::new()
                    .name(format!("proxy-tcp-{port}"))
                    .spawn(move || serve_tcp(&l, port, &ns, &stop, &conns)),
                Bound::Udp(s, port) => std::thread::Builder::new()
                    .name(format!("proxy-udp-{port}"))
                    .spawn(move || serve_udp(s, port, &ns, &stop)),
            };
            // On error `proxy` is dropped, which stops the threads already started.
            let handle = spawned.map_err(|source| Error::Net {
                what: "cannot start a proxy thread".to_string(),
                source,
            })?;
            proxy.threads.push(handle);
        }
        Ok(proxy)
    }

    /// The bindings served, with the host ports actually bound.
    pub fn ports(&self) -> &[PortBinding] {
        &self.ports
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Every thread polls the read end: closing the write end wakes them all (POLLHUP).
        self.stop_w.take();
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
        let conns = {
            let mut open = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
            open.stopped = true;
            std::mem::take(&mut open.conns)
        };
        for (a, b) in conns.values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

/// What woke a poll.
enum Wake {
    Ready,
    Stop,
    Timeout,
}

/// Waits until `fd` is readable, the stop pipe closes, or `timeout`.
fn wait(fd: BorrowedFd<'_>, stop: &OwnedFd, timeout: PollTimeout) -> io::Result<Wake> {
    loop {
        let mut fds = [
            PollFd::new(fd, PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(0) => return Ok(Wake::Timeout),
            Ok(_) => {
                if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                    return Ok(Wake::Stop);
                }
                return Ok(Wake::Ready);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether an accept/recv error is passing (try again at once).
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    )
}

fn serve_tcp(
    listener: &TcpListener,
    port: u16,
    ns: &NsSockets,
    stop: &Arc<OwnedFd>,
    conns: &Conns,
) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        match wait(listener.as_fd(), stop, PollTimeout::NONE) {
            Ok(Wake::Ready) => {}
            Ok(Wake::Timeout) => continue,
            Ok(Wake::Stop) | Err(_) => return,
        }
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if transient(&e) => continue,
            Err(_) => {
                // Out of fds or memory: back off instead of spinning; the stop still wins.
                if matches!(
                    wait(listener.as_fd(), stop, PollTimeout::from(100u8)),
                    Ok(Wake::Stop)
                ) {
                    return;
                }
                continue;
            }
        };
        let (ns, conns) = (ns.clone(), conns.clone());
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let _ = std::thread::Builder::new()
            .name(format!("proxy-conn-{port}"))
            .spawn(move || tcp_connection(client, port, &ns, &conns, id));
    }
}

/// One accepted connection: connect inside, copy both ways until both sides are done.
fn tcp_connection(client: TcpStream, port: u16, ns: &NsSockets, conns: &Conns, id: u64) {
    let Ok(inner) = ns.connect_local(Proto::Tcp, port).map(TcpStream::from) else {
        // Nothing listens inside (or the namespace is gone): the client sees a close.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut open = conns.lock().unwrap_or_else(PoisonError::into_inner);
        if open.stopped {
            return;
        }
        if let (Ok(a), Ok(b)) = (client.try_clone(), inner.try_clone()) {
            open.conns.insert(id, (a, b));
        }
    }
    std::thread::scope(|s| {
        s.spawn(|| pump(&client, &inner));
        pump(&inner, &client);
    });
    conns
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .conns
        .remove(&id);
}

/// Copies `from` to `to` until EOF, then half-closes `to`; on an error, shuts both down (so
/// the other direction ends too).
fn pump(mut from: &TcpStream, mut to: &TcpStream) {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// The UDP clients seen recently, each with its own connected socket inside.
type Peers = Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>;

fn serve_udp(host: UdpSocket, port: u16, ns: &NsSockets, stop: &Arc<OwnedFd>) {
    let host = Arc::new(host);
    let peers: Peers = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        match wait(host.as_fd(), stop, PollTimeout::NONE) {
            Ok(Wake::Ready) => {}
            Ok(Wake::Timeout) => continue,
            Ok(Wake::Stop) | Err(_) => return,
        }
        let (n, peer) = match host.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        let existing = peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .cloned();
        let inner = match existing {
            Some(inner) => inner,
            None => {
                let Ok(inner) = ns.connect_local(Proto::Udp, port).map(UdpSocket::from) else {
                    continue;
                };
                let inner = Arc::new(inner);
                peers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(peer, inner.clone());
                let (host, inner2, peers2, stop2) =
                    (host.clone(), inner.clone(), peers.clone(), stop.clone());
                let _ = std::thread::Builder::new()
                    .name(format!("proxy-udp-{port}-reply"))
                    .spawn(move || udp_replies(&host, &inner2, peer, &peers2, &stop2));
                inner
            }
        };
        // A refused or dropped datagram is UDP's normal loss.
        let _ = inner.send(&buf[..n]);
    }
}

/// Sends what the container answers back to `peer`, until [`UDP_IDLE`] passes without any.
fn udp_replies(
    host: &UdpSocket,
    inner: &UdpSocket,
    peer: SocketAddr,
    peers: &Peers,
    stop: &OwnedFd,
) {
    let mut buf = vec![0u8; 65536];
    let idle = PollTimeout::try_from(UDP_IDLE).unwrap_or(PollTimeout::MAX);
    loop {
        match wait(inner.as_fd(), stop, idle) {
            Ok(Wake::Ready) => {}
            Ok(Wake::Timeout) => break,
            Ok(Wake::Stop) | Err(_) => return,
        }
        match inner.recv(&mut buf) {
            Ok(n) => {
                let _ = host.send_to(&buf[..n], peer);
            }
            // ECONNREFUSED from an earlier datagram nobody received: keep going.
            Err(_) => continue,
        }
    }
    peers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&peer);
}
