//! The switch process of one network: a learning Ethernet switch between the members' NICs (qemu's
//! `-netdev socket`: each frame after its length, 4 bytes big-endian, on a unix stream), with the
//! network's own services ([`Gateway`]: ARP, ping, DHCP, DNS) as one more host on it. Names it
//! cannot answer are asked of the host's resolvers.
//!
//! It ends, removing the network, when its last NIC has been gone for [`LINGER`]: it takes the
//! network's lock first, so that no member is joining meanwhile (a joiner holds the lock from its
//! connection until its VM runs).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{UdpSocket, UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::gateway::{DnsClient, Gateway, Member, Outcome};
use super::registry::{NetworkDir, NetworkLock};
use super::NetworkError;

/// How long the network outlives its last NIC (a member restarting keeps it).
pub(crate) const LINGER: Duration = Duration::from_secs(3);

/// The largest frame taken (qemu's own limit is 69632 bytes with its headers).
const MAX_FRAME: usize = 65_550;

/// Frames queued for one NIC before more are dropped (as a switch drops under congestion).
const PORT_QUEUE: usize = 512;

/// How long an answer from the host's resolvers is waited for.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

type PortId = u64;
type Mac = [u8; 6];

enum Event {
    Frame(PortId, Vec<u8>),
    Closed(PortId),
}

/// A query asked of the host's resolvers, under the ID we gave it.
struct Pending {
    client: DnsClient,
    id: u16,
    asked: Instant,
}

/// Serves the network in `dir` until it ends.
pub(crate) async fn serve(dir: PathBuf) -> Result<(), NetworkError> {
    let net = NetworkDir::at(dir);
    let network = net.read_network()?.ok_or_else(|| NetworkError::Corrupt {
        path: net.dir().join("network.json"),
        why: "missing".into(),
    })?;
    let socket = net.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).map_err(NetworkError::io("listen on", &socket))?;
    let pid_file = net.pid_file();
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).map_err(NetworkError::io("write", &pid_file))?;
    eprintln!(
        "switch of {} ({}) listening on {}",
        network.name,
        network.subnet,
        socket.display()
    );

    let mut switch = Switch {
        net: net.clone(),
        gateway: Gateway::new(network.subnet, &network.name),
        ports: HashMap::new(),
        macs: HashMap::new(),
        members: Vec::new(),
        members_seen: None,
        upstream: Upstream::new().await,
        pending: HashMap::new(),
        next_id: 1,
    };
    let (events_tx, mut events) = mpsc::channel::<Event>(1024);
    let mut next_port: PortId = 0;
    let mut empty_since = Some(tokio::time::Instant::now());
    let mut buf = vec![0u8; 4096];
    loop {
        let linger = async {
            match empty_since {
                Some(since) => tokio::time::sleep_until(since + LINGER).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    next_port += 1;
                    switch.add_port(next_port, stream, events_tx.clone());
                    empty_since = None;
                }
                Err(e) => eprintln!("accept: {e}"),
            },
            Some(event) = events.recv() => match event {
                Event::Frame(port, frame) => switch.forward(Some(port), &frame),
                Event::Closed(port) => {
                    switch.remove_port(port);
                    if switch.ports.is_empty() {
                        empty_since = Some(tokio::time::Instant::now());
                    }
                }
            },
            Some((len, from)) = switch.upstream.recv(&mut buf) => switch.relay_answer(&buf[..len], from),
            () = linger => {
                let lock = lock(&net).await?;
                match accept_waiting(&listener) {
                    Some(stream) => {
                        next_port += 1;
                        switch.add_port(next_port, stream, events_tx.clone());
                        empty_since = None;
                    }
                    None if switch.ports.is_empty() => return end(&net, lock),
                    None => empty_since = None,
                }
            }
        }
    }
}

/// Takes the network's lock without holding up the runtime's thread... there is one task only, so
/// this waits on a blocking thread.
async fn lock(net: &NetworkDir) -> Result<NetworkLock, NetworkError> {
    let net = net.clone();
    tokio::task::spawn_blocking(move || net.lock())
        .await
        .map_err(|e| NetworkError::io("lock", "the network")(std::io::Error::other(e)))?
}

/// A connection waiting in the listen queue (a joiner connected before we took the lock).
fn accept_waiting(listener: &UnixListener) -> Option<UnixStream> {
    use std::os::fd::AsFd;
    // The same listening socket, non-blocking as tokio made it: accept answers at once.
    let listener = std::os::unix::net::UnixListener::from(listener.as_fd().try_clone_to_owned().ok()?);
    let (stream, _) = listener.accept().ok()?;
    stream.set_nonblocking(true).ok()?;
    UnixStream::from_std(stream).ok()
}

/// Ends the network: its directory goes, unless another switch has taken it over.
fn end(net: &NetworkDir, _lock: NetworkLock) -> Result<(), NetworkError> {
    let ours = std::fs::read_to_string(net.pid_file())
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if ours {
        eprintln!("no member left: the network ends");
        std::fs::remove_dir_all(net.dir()).map_err(NetworkError::io("remove", net.dir()))?;
    }
    Ok(())
}

struct Port {
    tx: mpsc::Sender<Vec<u8>>,
}

struct Switch {
    net: NetworkDir,
    gateway: Gateway,
    ports: HashMap<PortId, Port>,
    /// Where each MAC was last seen.
    macs: HashMap<Mac, PortId>,
    members: Vec<Member>,
    members_seen: Option<SystemTime>,
    upstream: Upstream,
    pending: HashMap<u16, Pending>,
    next_id: u16,
}

impl Switch {
    fn add_port(&mut self, id: PortId, stream: UnixStream, events: mpsc::Sender<Event>) {
        let (reader, writer) = stream.into_split();
        let (tx, rx) = mpsc::channel(PORT_QUEUE);
        tokio::spawn(read_frames(id, reader, events));
        tokio::spawn(write_frames(writer, rx));
        self.ports.insert(id, Port { tx });
        eprintln!("port {id} connected ({} now)", self.ports.len());
    }

    fn remove_port(&mut self, id: PortId) {
        self.ports.remove(&id);
        self.macs.retain(|_, port| *port != id);
        eprintln!("port {id} gone ({} left)", self.ports.len());
    }

    /// Delivers `frame` from `from` (`None`: the gateway) to where its destination is.
    fn forward(&mut self, from: Option<PortId>, frame: &[u8]) {
        if frame.len() < 14 {
            return;
        }
        let dst: Mac = frame[0..6].try_into().unwrap_or_default();
        let src: Mac = frame[6..12].try_into().unwrap_or_default();
        if let Some(port) = from {
            if src[0] & 1 == 0 {
                self.macs.insert(src, port);
            }
        }
        let group = dst[0] & 1 == 1;
        if from.is_some() && (group || dst == self.gateway.mac()) && self.gateway.wants(frame) {
            self.hand_to_gateway(frame);
        }
        if dst == self.gateway.mac() {
            return;
        }
        match self.macs.get(&dst).filter(|_| !group) {
            Some(port) if Some(*port) != from => self.send(*port, frame),
            Some(_) => {}
            None => {
                let others: Vec<PortId> = self.ports.keys().copied().filter(|p| Some(*p) != from).collect();
                for port in others {
                    self.send(port, frame);
                }
            }
        }
    }

    fn send(&mut self, port: PortId, frame: &[u8]) {
        if let Some(p) = self.ports.get(&port) {
            // A full queue drops the frame, as a congested switch does; TCP resends.
            let _ = p.tx.try_send(frame.to_vec());
        }
    }

    fn hand_to_gateway(&mut self, frame: &[u8]) {
        self.reload_members();
        for outcome in self.gateway.handle(frame, &self.members) {
            match outcome {
                Outcome::Send(reply) => self.forward(None, &reply),
                Outcome::Forward { client, query } => self.ask_upstream(client, query),
                Outcome::Leased { name, ip } => {
                    eprintln!("{name} took {ip}");
                    if let Err(e) = self.net.record_lease(&name, ip) {
                        eprintln!("{e}");
                    }
                }
            }
        }
    }

    /// Reads the members again when their directory changed.
    fn reload_members(&mut self) {
        let stamp = std::fs::metadata(self.net.members_dir())
            .and_then(|m| m.modified())
            .ok();
        if stamp.is_some() && stamp == self.members_seen {
            return;
        }
        match self.net.members() {
            Ok(files) => {
                self.members = files
                    .into_iter()
                    .filter_map(|f| {
                        Some(Member {
                            mac: f.mac()?.0,
                            name: f.name,
                            ip: f.ip,
                        })
                    })
                    .collect();
                self.members_seen = stamp;
            }
            Err(e) => eprintln!("{e}"),
        }
    }

    fn ask_upstream(&mut self, client: DnsClient, mut query: Vec<u8>) {
        let now = Instant::now();
        self.pending.retain(|_, p| now.duration_since(p.asked) < DNS_TIMEOUT);
        if query.len() < 12 || self.upstream.servers.is_empty() {
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let original = u16::from_be_bytes([query[0], query[1]]);
        query[0..2].copy_from_slice(&id.to_be_bytes());
        self.pending.insert(
            id,
            Pending {
                client,
                id: original,
                asked: now,
            },
        );
        self.upstream.send(&query);
    }

    fn relay_answer(&mut self, answer: &[u8], from: SocketAddr) {
        if answer.len() < 12 || !self.upstream.servers.contains(&from) {
            return;
        }
        let id = u16::from_be_bytes([answer[0], answer[1]]);
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        let mut answer = answer.to_vec();
        answer[0..2].copy_from_slice(&pending.id.to_be_bytes());
        let frame = self.gateway.dns_reply_frame(&pending.client, &answer);
        self.forward(None, &frame);
    }
}

async fn read_frames(port: PortId, mut reader: tokio::net::unix::OwnedReadHalf, events: mpsc::Sender<Event>) {
    loop {
        let mut len = [0u8; 4];
        if reader.read_exact(&mut len).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME {
            eprintln!("port {port}: a frame of {len} bytes: disconnecting it");
            break;
        }
        let mut frame = vec![0u8; len];
        if reader.read_exact(&mut frame).await.is_err() || events.send(Event::Frame(port, frame)).await.is_err() {
            break;
        }
    }
    let _ = events.send(Event::Closed(port)).await;
}

async fn write_frames(writer: tokio::net::unix::OwnedWriteHalf, mut frames: mpsc::Receiver<Vec<u8>>) {
    let mut writer = BufWriter::new(writer);
    while let Some(frame) = frames.recv().await {
        let Ok(len) = u32::try_from(frame.len()) else { continue };
        if writer.write_all(&len.to_be_bytes()).await.is_err() || writer.write_all(&frame).await.is_err() {
            return;
        }
        if frames.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
}

/// The host's resolvers (from `/etc/resolv.conf`), asked over one UDP socket.
struct Upstream {
    socket: Option<UdpSocket>,
    servers: Vec<SocketAddr>,
}

impl Upstream {
    async fn new() -> Upstream {
        let servers = std::fs::read_to_string("/etc/resolv.conf")
            .map(|text| nameservers(&text))
            .unwrap_or_default();
        let socket = match UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await {
            Ok(socket) => Some(socket),
            Err(e) => {
                eprintln!("no upstream DNS: {e}");
                None
            }
        };
        let servers = servers.into_iter().filter(SocketAddr::is_ipv4).collect();
        Upstream { socket, servers }
    }

    /// Asks every resolver at once; the first answer wins.
    fn send(&self, query: &[u8]) {
        if let Some(socket) = &self.socket {
            for server in &self.servers {
                let _ = socket.try_send_to(query, *server);
            }
        }
    }

    async fn recv(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        match &self.socket {
            Some(socket) => socket.recv_from(buf).await.ok(),
            None => std::future::pending().await,
        }
    }
}

/// The `nameserver` addresses of a resolv.conf, port 53.
fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let text = "# x\nsearch lan\nnameserver 10.0.2.3\nnameserver  ::1\nnameserver bogus\noptions ndots:1\n";
        assert_eq!(
            nameservers(text),
            vec![
                "10.0.2.3:53".parse().unwrap(),
                "[::1]:53".parse::<SocketAddr>().unwrap()
            ]
        );
    }
}
