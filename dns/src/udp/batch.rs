//! Batched UDP receive and send: recvmmsg(2) and sendmmsg(2) (Linux) into buffers allocated once per
//! worker. The only unsafe code of the crate is here: the two system calls and a zeroed header.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use tracing::debug;

/// Datagrams taken by one receive call at most (and so replies sent by one send call).
pub const BATCH: usize = 32;
/// Room for any UDP datagram. Untouched pages of the buffers are never made resident.
const MAX_DATAGRAM: usize = 65535;
/// `sockaddr_in6`'s size, which also holds a `sockaddr_in`.
const NAME_LEN: usize = size_of::<libc::sockaddr_in6>();
const IPV4_NAME_LEN: usize = size_of::<libc::sockaddr_in>();

type Name = [u8; NAME_LEN];

/// Receives batches of datagrams. The headers point into this value's own vectors, which are never
/// resized after `new` (a `Vec`'s buffer stays where it is when the `Vec` moves), so the pointers stay
/// valid as long as the `Receiver` lives.
pub struct Receiver {
    buffers: Vec<u8>,
    names: Vec<Name>,
    /// Kept only so that the headers' pointers into them stay valid.
    _iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Datagrams of the last receive.
    received: usize,
}

impl Receiver {
    pub fn new() -> Self {
        let mut buffers = vec![0u8; BATCH * MAX_DATAGRAM];
        let mut names = vec![[0u8; NAME_LEN]; BATCH];
        let base = buffers.as_mut_ptr();
        let mut iovecs: Vec<libc::iovec> = (0..BATCH)
            .map(|i| libc::iovec { iov_base: base.wrapping_add(i * MAX_DATAGRAM).cast(), iov_len: MAX_DATAGRAM })
            .collect();
        let (iovec_base, name_base) = (iovecs.as_mut_ptr(), names.as_mut_ptr());
        let headers = (0..BATCH)
            .map(|i| {
                let mut header = zeroed_header();
                header.msg_hdr.msg_iov = iovec_base.wrapping_add(i);
                header.msg_hdr.msg_iovlen = 1;
                header.msg_hdr.msg_name = name_base.wrapping_add(i).cast();
                header.msg_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
                header
            })
            .collect();
        Self { buffers, names, _iovecs: iovecs, headers, received: 0 }
    }

    /// Blocks until at least one datagram arrives (or the socket's receive timeout passes: an error
    /// of kind `WouldBlock`), then takes whatever else is queued, up to [`BATCH`]. Returns the count.
    #[allow(unsafe_code)]
    pub fn receive(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        // The kernel shortened the address lengths of the last batch to what it wrote.
        for header in &mut self.headers[..self.received] {
            header.msg_hdr.msg_namelen = NAME_LEN as libc::socklen_t;
        }
        self.received = 0;
        // SAFETY: `headers` holds BATCH valid `mmsghdr`s whose single iovec and address point into
        // `buffers` and `names` with the lengths they have (set in `new`, never resized); `&mut self`
        // means nothing else reads or writes them during the call. The kernel writes at most
        // `iov_len` bytes into each buffer, `msg_namelen` bytes into each address and the headers'
        // output fields. A null timeout: the socket's own timeout applies (recvmmsg's is broken).
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let count = usize::try_from(count).map_err(|_| std::io::Error::last_os_error())?;
        self.received = count.min(BATCH);
        Ok(self.received)
    }

    /// The `index`th datagram of the last receive and its source (`None` for an address that is not
    /// IPv4 or IPv6).
    pub fn datagram(&self, index: usize) -> (&[u8], Option<SocketAddr>) {
        let header = &self.headers[index].msg_hdr;
        let len = (self.headers[index].msg_len as usize).min(MAX_DATAGRAM);
        let start = index * MAX_DATAGRAM;
        let name_len = (header.msg_namelen as usize).min(NAME_LEN);
        (&self.buffers[start..start + len], decode_address(&self.names[index][..name_len]))
    }
}

/// Sends batches of datagrams; the vectors are reused between calls.
pub struct Sender {
    iovecs: Vec<libc::iovec>,
    names: Vec<(Name, libc::socklen_t)>,
    headers: Vec<libc::mmsghdr>,
}

impl Sender {
    pub fn new() -> Self {
        Self { iovecs: Vec::with_capacity(BATCH), names: Vec::with_capacity(BATCH), headers: Vec::with_capacity(BATCH) }
    }

    /// Sends each `(bytes, to)` as one datagram, in order. A datagram the kernel refuses (e.g. no
    /// route) is logged and skipped, as a failed `send_to` was.
    #[allow(unsafe_code)]
    pub fn send<'a>(&mut self, socket: &UdpSocket, datagrams: impl Iterator<Item = (&'a [u8], SocketAddr)>) {
        self.iovecs.clear();
        self.names.clear();
        self.headers.clear();
        for (bytes, to) in datagrams {
            // The kernel only reads a datagram being sent; `*mut` is what the C type says.
            self.iovecs.push(libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() });
            self.names.push(encode_address(to));
        }
        // Pointers are taken once both vectors are complete: no push can move them afterwards.
        for (i, (name, name_len)) in self.names.iter_mut().enumerate() {
            let mut header = zeroed_header();
            header.msg_hdr.msg_iov = self.iovecs.as_mut_ptr().wrapping_add(i);
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_name = name.as_mut_ptr().cast();
            header.msg_hdr.msg_namelen = *name_len;
            self.headers.push(header);
        }
        let mut start = 0;
        while start < self.headers.len() {
            let pending = &mut self.headers[start..];
            // SAFETY: each header holds one iovec of `iovecs` and one address of `names`, neither
            // resized since the pointers were taken; each iovec points at a datagram borrowed for
            // `'a`, which outlives this call. The kernel reads those and writes only `msg_len`.
            let sent =
                unsafe { libc::sendmmsg(socket.as_raw_fd(), pending.as_mut_ptr(), pending.len() as libc::c_uint, 0) };
            match usize::try_from(sent) {
                Ok(sent) if sent > 0 => start += sent,
                Ok(_) => start += 1,
                Err(_) => {
                    let error = std::io::Error::last_os_error();
                    if error.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    debug!(%error, "failed to send a response");
                    start += 1;
                }
            }
        }
    }
}

/// An `mmsghdr` with every field zero: null pointers, no control data, no flags.
#[allow(unsafe_code)]
fn zeroed_header() -> libc::mmsghdr {
    // SAFETY: `mmsghdr` is a C struct of pointers and integers (plus private padding on some libcs,
    // which is why it is not written as a literal); all-zero bytes are a valid value of each.
    unsafe { std::mem::zeroed() }
}

/// A `sockaddr_in` or `sockaddr_in6` as the kernel wrote it; `None` for any other family.
fn decode_address(name: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*name.first()?, *name.get(1)?]));
    let port = u16::from_be_bytes([*name.get(2)?, *name.get(3)?]);
    let word = |at: usize| -> Option<[u8; 4]> { name.get(at..at + 4)?.try_into().ok() };
    match family {
        libc::AF_INET if name.len() >= IPV4_NAME_LEN => {
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(word(4)?), port)))
        }
        libc::AF_INET6 if name.len() >= NAME_LEN => {
            let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let (flowinfo, scope_id) = (u32::from_ne_bytes(word(4)?), u32::from_ne_bytes(word(24)?));
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope_id)))
        }
        _ => None,
    }
}

/// `to` as a `sockaddr_in` or `sockaddr_in6`, and its length.
fn encode_address(to: SocketAddr) -> (Name, libc::socklen_t) {
    let mut name = [0u8; NAME_LEN];
    name[2..4].copy_from_slice(&to.port().to_be_bytes());
    match to {
        SocketAddr::V4(v4) => {
            name[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            name[4..8].copy_from_slice(&v4.ip().octets());
            (name, IPV4_NAME_LEN as libc::socklen_t)
        }
        SocketAddr::V6(v6) => {
            name[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            name[4..8].copy_from_slice(&v6.flowinfo().to_ne_bytes());
            name[8..24].copy_from_slice(&v6.ip().octets());
            name[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
            (name, NAME_LEN as libc::socklen_t)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn addresses_round_trip_through_the_kernel_layout() {
        for text in ["127.0.0.1:53", "10.244.1.7:40000", "[::1]:5353", "[fe80::1%3]:1"] {
            let addr: SocketAddr = text.parse().unwrap();
            let (name, len) = encode_address(addr);
            assert_eq!(decode_address(&name[..len as usize]), Some(addr), "{text}");
        }
        assert_eq!(decode_address(&[0, 0, 0, 53]), None, "too short");
        assert_eq!(decode_address(&[0u8; NAME_LEN]), None, "AF_UNSPEC");
    }

    /// Several datagrams from two clients come back in one receive, each with its own source, and
    /// one batched send reaches both clients; the buffers are reused by the next receive.
    #[test]
    fn a_batch_is_received_and_answered_in_one_call_each() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let addr = server.local_addr().unwrap();
        let clients = [UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap()];
        for (i, client) in clients.iter().enumerate() {
            client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            client.send_to(&[u8::try_from(i).unwrap(); 3], addr).unwrap();
            client.send_to(&vec![9u8; 1500], addr).unwrap();
        }
        let mut receiver = Receiver::new();
        let mut got = Vec::new();
        while got.len() < 4 {
            let count = receiver.receive(&server).unwrap();
            got.extend((0..count).map(|i| {
                let (bytes, src) = receiver.datagram(i);
                (bytes.to_vec(), src.unwrap())
            }));
        }
        let sources = [clients[0].local_addr().unwrap(), clients[1].local_addr().unwrap()];
        assert_eq!(got[0], (vec![0u8; 3], sources[0]));
        assert_eq!(got[1], (vec![9u8; 1500], sources[0]));
        assert_eq!(got[2], (vec![1u8; 3], sources[1]));
        assert_eq!(got[3].0.len(), 1500);

        let mut sender = Sender::new();
        sender.send(&server, got.iter().map(|(bytes, src)| (&bytes[..], *src)));
        let mut buffer = [0u8; 2000];
        for (i, client) in clients.iter().enumerate() {
            let len = client.recv(&mut buffer).unwrap();
            assert_eq!(&buffer[..len], &[u8::try_from(i).unwrap(); 3]);
            assert_eq!(client.recv(&mut buffer).unwrap(), 1500);
        }

        // With nothing queued, the receive ends at the socket's timeout.
        server.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        assert_eq!(receiver.receive(&server).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    }
}
