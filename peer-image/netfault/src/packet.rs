//! Just enough IPv4 to key flows, corrupt a packet and, if asked, fix its checksum.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::Ipv4Addr;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// The parts of an IPv4 packet this crate looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4View {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// Offset of the transport header.
    pub l4: usize,
    /// Total length from the IP header (may be less than the buffer).
    pub total: usize,
    /// Source and destination ports for TCP/UDP of a first fragment.
    pub ports: Option<(u16, u16)>,
}

impl Ipv4View {
    pub fn parse(p: &[u8]) -> Option<Ipv4View> {
        if p.len() < 20 || p[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        if ihl < 20 || total < ihl || p.len() < total {
            return None;
        }
        let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
        let proto = p[9];
        let ports = if frag_offset == 0 && matches!(proto, PROTO_TCP | PROTO_UDP) && total >= ihl + 4 {
            Some((
                u16::from_be_bytes([p[ihl], p[ihl + 1]]),
                u16::from_be_bytes([p[ihl + 2], p[ihl + 3]]),
            ))
        } else {
            None
        };
        Some(Ipv4View {
            src: Ipv4Addr::new(p[12], p[13], p[14], p[15]),
            dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]),
            proto,
            l4: ihl,
            total,
            ports,
        })
    }

    /// Offset of the transport payload, when the transport header is complete.
    pub fn payload_offset(&self, p: &[u8]) -> Option<usize> {
        let hdr = match self.proto {
            PROTO_UDP => 8,
            PROTO_ICMP => 8,
            PROTO_TCP if self.total >= self.l4 + 20 => usize::from(p[self.l4 + 12] >> 4) * 4,
            _ => return None,
        };
        (self.l4 + hdr <= self.total).then_some(self.l4 + hdr)
    }
}

/// A flow key: the 5-tuple (or the address pair and protocol for other traffic).
pub fn flow_key(p: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    match Ipv4View::parse(p) {
        Some(v) => (v.src, v.dst, v.proto, v.ports).hash(&mut h),
        None => p.get(..40.min(p.len())).hash(&mut h),
    }
    h.finish()
}

/// Flip one bit of the transport segment, chosen by `pick`: in the payload when there is one
/// (so a fixed checksum hands the application bad bytes), else anywhere after the IP header.
/// Any single flipped bit changes a ones' complement sum, so unless `fix_checksum` the receiver
/// drops the packet with a checksum error (UDP with checksum 0 excepted). Returns the byte
/// offset flipped, or `None` when the packet is not IPv4 or has nothing after its header.
pub fn corrupt(p: &mut [u8], pick: u64, fix_checksum: bool) -> Option<usize> {
    let v = Ipv4View::parse(p)?;
    let start = match v.payload_offset(p) {
        Some(o) if o < v.total => o,
        _ => v.l4,
    };
    if start >= v.total {
        return None;
    }
    let span = (v.total - start) as u64;
    let byte = start + (pick % span) as usize;
    let bit = (pick / span) % 8;
    p[byte] ^= 1 << bit;
    if fix_checksum {
        fix_l4_checksum(p);
    }
    Some(byte)
}

fn ones_sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recompute the TCP, UDP or ICMP checksum of a whole (unfragmented) IPv4 packet.
/// Returns false when it cannot (fragments, other protocols, truncated).
pub fn fix_l4_checksum(p: &mut [u8]) -> bool {
    let Some(v) = Ipv4View::parse(p) else {
        return false;
    };
    let more_frags = p[6] & 0x20 != 0;
    if more_frags || v.ports.is_none() && v.proto != PROTO_ICMP {
        return false;
    }
    let seg_len = v.total - v.l4;
    let at = match v.proto {
        PROTO_TCP if seg_len >= 20 => v.l4 + 16,
        PROTO_UDP if seg_len >= 8 => v.l4 + 6,
        PROTO_ICMP if seg_len >= 4 => v.l4 + 2,
        _ => return false,
    };
    if v.proto == PROTO_UDP && p[at] == 0 && p[at + 1] == 0 {
        return true; // no checksum in use
    }
    p[at] = 0;
    p[at + 1] = 0;
    let mut acc = 0;
    if v.proto != PROTO_ICMP {
        acc = ones_sum(acc, &p[12..20]);
        acc += u32::from(v.proto) + seg_len as u32;
    }
    acc = ones_sum(acc, &p[v.l4..v.total]);
    let mut sum = fold(acc);
    if v.proto == PROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    p[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

/// Is the transport checksum of this packet right? (For tests and diagnostics.)
pub fn l4_checksum_ok(p: &[u8]) -> bool {
    let mut copy = p.to_vec();
    fix_l4_checksum(&mut copy) && copy == p
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A UDP/IPv4 packet with a correct checksum.
    pub(crate) fn udp_packet(payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = PROTO_UDP;
        p[12..16].copy_from_slice(&[10, 250, 0, 1]);
        p[16..20].copy_from_slice(&[10, 250, 0, 2]);
        p[20..22].copy_from_slice(&4000u16.to_be_bytes());
        p[22..24].copy_from_slice(&9000u16.to_be_bytes());
        p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p[28..].copy_from_slice(payload);
        p[26] = 0xff; // any nonzero value, so fix computes it
        assert!(fix_l4_checksum(&mut p));
        p
    }

    fn tcp_packet(payload: &[u8]) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 250, 0, 1]);
        p[16..20].copy_from_slice(&[10, 250, 0, 2]);
        p[20..22].copy_from_slice(&5555u16.to_be_bytes());
        p[22..24].copy_from_slice(&80u16.to_be_bytes());
        p[32] = 5 << 4;
        p[40..].copy_from_slice(payload);
        assert!(fix_l4_checksum(&mut p));
        p
    }

    #[test]
    fn udp_checksum_matches_a_known_value() {
        // Computed by hand-checked reference (RFC 1071 sum over pseudo-header + segment).
        let p = udp_packet(b"hi");
        let mut acc = 0x0afa + 0x0001 + 0x0afa + 0x0002 + 17 + 10; // pseudo-header
        acc += 4000 + 9000 + 10 + 0x6869; // header (checksum 0) + payload
        let want = !(((acc & 0xffff) + (acc >> 16)) as u16);
        assert_eq!(u16::from_be_bytes([p[26], p[27]]), want);
        assert!(l4_checksum_ok(&p));
    }

    #[test]
    fn parse_reads_addresses_ports_and_payload() {
        let p = udp_packet(b"payload");
        let v = Ipv4View::parse(&p).unwrap();
        assert_eq!(v.src, Ipv4Addr::new(10, 250, 0, 1));
        assert_eq!(v.dst, Ipv4Addr::new(10, 250, 0, 2));
        assert_eq!(v.ports, Some((4000, 9000)));
        assert_eq!(v.payload_offset(&p), Some(28));
        assert_eq!(Ipv4View::parse(&p[..10]), None);
        let mut v6 = p.clone();
        v6[0] = 0x60;
        assert_eq!(Ipv4View::parse(&v6), None);
    }

    #[test]
    fn flows_differ_by_port_and_agree_on_same_tuple() {
        let a = udp_packet(b"x");
        let mut b = a.clone();
        b[21] ^= 1;
        assert_eq!(flow_key(&a), flow_key(&udp_packet(b"other payload")));
        assert_ne!(flow_key(&a), flow_key(&b));
    }

    #[test]
    fn corruption_breaks_the_checksum_in_the_payload() {
        for pick in 0..200u64 {
            let orig = udp_packet(b"0123456789");
            let mut p = orig.clone();
            let at = corrupt(&mut p, pick * 7919, false).unwrap();
            assert!((28..38).contains(&at), "flipped {at}");
            assert_eq!((0..p.len()).filter(|i| p[*i] != orig[*i]).count(), 1);
            assert!(!l4_checksum_ok(&p));
        }
    }

    #[test]
    fn fixed_corruption_carries_bad_bytes_with_a_good_checksum() {
        for mk in [udp_packet as fn(&[u8]) -> Vec<u8>, tcp_packet] {
            let orig = mk(b"abcdefgh");
            let mut p = orig.clone();
            corrupt(&mut p, 12345, true).unwrap();
            assert!(l4_checksum_ok(&p));
            let off = Ipv4View::parse(&p).unwrap().payload_offset(&p).unwrap();
            assert_ne!(&p[off..], &orig[off..]);
        }
    }

    #[test]
    fn empty_payload_corrupts_the_transport_header() {
        let orig = tcp_packet(b"");
        let mut p = orig.clone();
        let at = corrupt(&mut p, 3, false).unwrap();
        assert!((20..40).contains(&at));
        assert!(!l4_checksum_ok(&p));
    }
}
