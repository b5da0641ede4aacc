//! libpcap and pcapng files: records → link layer → IPv4/IPv6 → TCP → [`Reassembler`].

use crate::reassembly::{Reassembler, TcpSegment};
use crate::{Capture, Error, Format, Limits};

fn bad(format: &'static str, offset: usize, message: impl Into<String>) -> Error {
    Error::Malformed {
        format,
        offset: offset as u64,
        message: message.into(),
    }
}

#[derive(Clone, Copy)]
struct Endian(bool); // true = big endian

impl Endian {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.0 {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.0 {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
}

pub(crate) fn parse_pcap(data: &[u8], limits: &Limits) -> Result<Capture, Error> {
    const F: &str = "pcap";
    if data.len() < 24 {
        return Err(bad(
            F,
            data.len(),
            "file header truncated (24 bytes needed)",
        ));
    }
    let (e, nanos) = match data[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] => (Endian(false), false),
        [0xa1, 0xb2, 0xc3, 0xd4] => (Endian(true), false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (Endian(false), true),
        _ => (Endian(true), true),
    };
    let link = e.u32(&data[20..24]) & 0x0fff_ffff;
    check_link(link)?;
    let mut r = Reassembler::new(*limits);
    let mut pos = 24;
    let mut cut = None;
    while pos < data.len() {
        let Some(h) = data.get(pos..pos + 16) else {
            cut = Some(pos as u64);
            break;
        };
        let secs = e.u32(&h[0..4]) as f64;
        let frac = e.u32(&h[4..8]) as f64;
        let incl = e.u32(&h[8..12]) as usize;
        let orig = e.u32(&h[12..16]) as usize;
        if incl > limits.max_record_bytes {
            return Err(Error::Limit {
                what: "pcap record length",
                max: limits.max_record_bytes as u64,
                offset: pos as u64,
            });
        }
        let Some(pkt) = data.get(pos + 16..pos + 16 + incl) else {
            cut = Some(pos as u64);
            break;
        };
        let t = secs + frac / if nanos { 1e9 } else { 1e6 };
        packet(&mut r, link, pkt, incl < orig, t, pos + 16)?;
        pos += 16 + incl;
    }
    let mut c = r.finish(Format::Pcap);
    c.cut_short_at = cut;
    Ok(c)
}

pub(crate) fn parse_pcapng(data: &[u8], limits: &Limits) -> Result<Capture, Error> {
    const F: &str = "pcapng";
    struct Iface {
        link: u32,
        units_per_sec: f64,
    }
    let mut ifaces: Vec<Iface> = Vec::new();
    let mut e = Endian(false);
    let mut r = Reassembler::new(*limits);
    let mut pos = 0;
    let mut cut = None;
    while pos < data.len() {
        let Some(h) = data.get(pos..pos + 12) else {
            cut = Some(pos as u64);
            break;
        };
        let btype_raw = [h[0], h[1], h[2], h[3]];
        if btype_raw == [0x0a, 0x0d, 0x0d, 0x0a] {
            e = match h[8..12] {
                [0x4d, 0x3c, 0x2b, 0x1a] => Endian(false),
                [0x1a, 0x2b, 0x3c, 0x4d] => Endian(true),
                _ => return Err(bad(F, pos + 8, "bad byte-order magic in section header")),
            };
            ifaces.clear();
        }
        let btype = e.u32(&h[0..4]);
        let blen = e.u32(&h[4..8]) as usize;
        if blen < 12 || blen % 4 != 0 {
            return Err(bad(F, pos + 4, format!("bad block length {blen}")));
        }
        if blen > limits.max_record_bytes {
            return Err(Error::Limit {
                what: "pcapng block length",
                max: limits.max_record_bytes as u64,
                offset: pos as u64,
            });
        }
        let Some(block) = data.get(pos..pos + blen) else {
            return Err(bad(
                F,
                pos,
                format!("block of {blen} bytes runs past the end"),
            ));
        };
        if e.u32(&block[blen - 4..]) as usize != blen {
            return Err(bad(F, pos + blen - 4, "trailing block length differs"));
        }
        let body = &block[8..blen - 4];
        match btype {
            0x0A0D_0D0A => {}
            1 => {
                if body.len() < 8 {
                    return Err(bad(F, pos, "interface description block too short"));
                }
                let link = e.u16(&body[0..2]) as u32;
                let mut units = 1e6;
                // options: code u16, len u16, value padded to 4
                let mut o = 8;
                while o + 4 <= body.len() {
                    let code = e.u16(&body[o..o + 2]);
                    let len = e.u16(&body[o + 2..o + 4]) as usize;
                    if code == 0 {
                        break;
                    }
                    let Some(v) = body.get(o + 4..o + 4 + len) else {
                        return Err(bad(F, pos + 8 + o, "interface option runs past its block"));
                    };
                    if code == 9 && len == 1 {
                        let tr = v[0];
                        units = if tr & 0x80 != 0 {
                            2f64.powi(i32::from(tr & 0x7f))
                        } else {
                            10f64.powi(i32::from(tr))
                        };
                    }
                    o += 4 + len.div_ceil(4) * 4;
                }
                if ifaces.len() >= 1024 {
                    return Err(Error::Limit {
                        what: "number of interfaces",
                        max: 1024,
                        offset: pos as u64,
                    });
                }
                ifaces.push(Iface {
                    link,
                    units_per_sec: units,
                });
            }
            6 | 2 => {
                // Enhanced Packet Block (6) / obsolete Packet Block (2, 16-bit interface id).
                if body.len() < 20 {
                    return Err(bad(F, pos, "packet block too short"));
                }
                let ifid = if btype == 6 {
                    e.u32(&body[0..4]) as usize
                } else {
                    e.u16(&body[0..2]) as usize
                };
                let hi = e.u32(&body[4..8]) as u64;
                let lo = e.u32(&body[8..12]) as u64;
                let caplen = e.u32(&body[12..16]) as usize;
                let origlen = e.u32(&body[16..20]) as usize;
                let Some(iface) = ifaces.get(ifid) else {
                    return Err(bad(
                        F,
                        pos + 8,
                        format!("packet names interface {ifid}, which was not described"),
                    ));
                };
                let Some(pkt) = body.get(20..20 + caplen) else {
                    return Err(bad(F, pos + 20, "packet data runs past its block"));
                };
                check_link(iface.link)?;
                let t = ((hi << 32) | lo) as f64 / iface.units_per_sec;
                packet(&mut r, iface.link, pkt, caplen < origlen, t, pos + 28)?;
            }
            3 => {
                // Simple Packet Block: interface 0, no timestamp.
                if body.len() < 4 {
                    return Err(bad(F, pos, "simple packet block too short"));
                }
                let Some(iface) = ifaces.first() else {
                    return Err(bad(F, pos, "simple packet block before any interface"));
                };
                let origlen = e.u32(&body[0..4]) as usize;
                let pkt = &body[4..];
                let pkt = &pkt[..pkt.len().min(origlen)];
                check_link(iface.link)?;
                packet(&mut r, iface.link, pkt, pkt.len() < origlen, 0.0, pos + 12)?;
            }
            _ => {} // name resolution, statistics, custom, ... blocks: skipped
        }
        pos += blen;
    }
    let mut c = r.finish(Format::Pcapng);
    c.cut_short_at = cut;
    Ok(c)
}

fn check_link(link: u32) -> Result<(), Error> {
    match link {
        0 | 1 | 101 | 108 | 113 | 228 | 229 | 276 => Ok(()),
        other => Err(Error::LinkType(other)),
    }
}

/// Decode one captured frame down to TCP and hand it to the reassembler.
fn packet(
    r: &mut Reassembler,
    link: u32,
    pkt: &[u8],
    truncated: bool,
    time: f64,
    file_offset: usize,
) -> Result<(), Error> {
    let ip = match link {
        1 => ethernet(pkt),
        0 | 108 => pkt.get(4..),
        101 | 228 | 229 => Some(pkt),
        113 => {
            // Linux cooked v1: 16-byte header, protocol at 14.
            pkt.get(16..)
                .filter(|_| matches!(pkt.get(14..16), Some([0x08, 0x00]) | Some([0x86, 0xdd])))
        }
        276 => {
            // Linux cooked v2: 20-byte header, protocol at 0.
            pkt.get(20..)
                .filter(|_| matches!(pkt.get(0..2), Some([0x08, 0x00]) | Some([0x86, 0xdd])))
        }
        _ => None,
    };
    let Some(ip) = ip else {
        r.skip();
        return Ok(());
    };
    match tcp_of_ip(ip) {
        Some(seg) => {
            if truncated {
                // Payload cut by the snap length: the stream would be wrong.
                r.skip();
                return Ok(());
            }
            r.segment(TcpSegment { time, ..seg }, file_offset)
        }
        None => {
            r.skip();
            Ok(())
        }
    }
}

fn ethernet(pkt: &[u8]) -> Option<&[u8]> {
    let mut et = u16::from_be_bytes([*pkt.get(12)?, *pkt.get(13)?]);
    let mut off = 14;
    while et == 0x8100 || et == 0x88a8 {
        et = u16::from_be_bytes([*pkt.get(off + 2)?, *pkt.get(off + 3)?]);
        off += 4;
    }
    match et {
        0x0800 | 0x86dd => pkt.get(off..),
        _ => None,
    }
}

fn tcp_of_ip(ip: &[u8]) -> Option<TcpSegment<'_>> {
    let v = ip.first()? >> 4;
    let (src, dst, l4) = match v {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ihl < 20 || *ip.get(9)? != 6 {
                return None;
            }
            // Fragments are not reassembled (TCP on loopback and LANs does not fragment).
            let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
            if frag & 0x3fff != 0 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let l4 = ip.get(ihl..total.min(ip.len()).max(ihl))?;
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (std::net::IpAddr::from(s), std::net::IpAddr::from(d), l4)
        }
        6 => {
            let mut next = *ip.get(6)?;
            let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let mut off = 40;
            let end = (40 + plen).min(ip.len());
            // Hop-by-hop, routing, destination options: skip; anything else that is not TCP: drop.
            let mut hops = 0;
            while matches!(next, 0 | 43 | 60) && hops < 8 {
                next = *ip.get(off)?;
                off += (usize::from(*ip.get(off + 1)?) + 1) * 8;
                hops += 1;
            }
            if next != 6 {
                return None;
            }
            (
                std::net::IpAddr::from(s),
                std::net::IpAddr::from(d),
                ip.get(off..end)?,
            )
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
    let dport = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
    let seq = u32::from_be_bytes(l4.get(4..8)?.try_into().ok()?);
    let doff = usize::from(*l4.get(12)? >> 4) * 4;
    let flags = *l4.get(13)?;
    if doff < 20 {
        return None;
    }
    let payload = l4.get(doff..)?;
    Some(TcpSegment {
        src: std::net::SocketAddr::new(src, sport),
        dst: std::net::SocketAddr::new(dst, dport),
        seq,
        syn: flags & 0x02 != 0,
        ack: flags & 0x10 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
        payload,
        time: 0.0,
    })
}
