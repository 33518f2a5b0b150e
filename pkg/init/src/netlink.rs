//! The few rtnetlink requests init makes: bring a link up, create a veth pair or another link
//! type, move a link into a container's network namespace (runtime.json `interfaces`).

use anyhow::{bail, Context, Result};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::Socket;

use crate::bundle::Interface;

fn request(message: RouteNetlinkMessage, flags: u16) -> Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("open a netlink socket")?;
    socket.bind_auto().context("bind the netlink socket")?;
    let mut req = NetlinkMessage::from(message);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    req.finalize();
    let mut buf = vec![0; req.header.length as usize];
    req.serialize(&mut buf[..]);
    socket.send(&buf, 0).context("send the netlink request")?;
    let mut reply = vec![0u8; 8192];
    let n = socket
        .recv(&mut &mut reply[..], 0)
        .context("receive the netlink reply")?;
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[..n])
        .map_err(|e| anyhow::anyhow!("bad netlink reply: {e}"))?;
    match msg.payload {
        NetlinkPayload::Error(err) => match err.code {
            None => Ok(()),
            Some(code) => Err(std::io::Error::from_raw_os_error(-code.get()).into()),
        },
        _ => Ok(()),
    }
}

fn index_of(name: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(name).with_context(|| format!("no network interface named {name}"))
}

/// Sets `name` up (in init's network namespace).
pub fn link_up(name: &str) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index_of(name)?;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    request(RouteNetlinkMessage::SetLink(msg), 0).with_context(|| format!("set {name} up"))
}

fn move_to_pid(name: &str, pid: i32) -> Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index_of(name)?;
    msg.attributes.push(LinkAttribute::NetNsPid(pid as u32));
    request(RouteNetlinkMessage::SetLink(msg), 0)
        .with_context(|| format!("move {name} into the network namespace of pid {pid}"))
}

/// LinuxKit's semantics: a `peer` alone means `add: veth`; a veth pair is created in the root
/// namespace and `name` moved into the container (the peer stays in the root); another `add` type
/// is created inside the container unless `createInRoot`; without `add` an existing link is moved.
pub fn setup_interface(iface: &Interface, pid: i32) -> Result<()> {
    if iface.name.is_empty() {
        bail!("an interface needs a name");
    }
    let add = if iface.add.is_empty() && !iface.peer.is_empty() {
        "veth"
    } else {
        iface.add.as_str()
    };
    if add.is_empty() {
        return move_to_pid(&iface.name, pid);
    }
    let in_root = iface.create_in_root || add == "veth";
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(iface.name.clone()));
    if !in_root {
        msg.attributes.push(LinkAttribute::NetNsPid(pid as u32));
    }
    if add == "veth" {
        if iface.peer.is_empty() {
            bail!("creating the veth pair {} needs a peer", iface.name);
        }
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(iface.peer.clone()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
    } else {
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Other(
                add.to_string(),
            ))]));
    }
    request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
        .with_context(|| format!("create the {add} link {}", iface.name))?;
    if in_root {
        move_to_pid(&iface.name, pid)?;
    }
    Ok(())
}
