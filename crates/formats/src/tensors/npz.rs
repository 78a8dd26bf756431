//! `.npz`: read through the `zip` crate (re-exported by `npyz`), so numpy's compressed
//! archives work too; written by a minimal stored-only zip writer of our own, because the
//! bytes must not depend on the clock (zip writers stamp the current time).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;

use super::{npy, Tensor, TensorFile, NPZ_METADATA};
use crate::Error;

type Parsed = (BTreeMap<String, Tensor>, BTreeMap<String, String>);

pub(super) fn read(label: &str, path: &Path) -> Result<Parsed, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(label, "cannot open", e))?;
    let file_len = file.metadata().map_or(0, |m| m.len());
    read_from(label, io::BufReader::new(file), file_len)
}

/// An archive already in memory (read from a pipe).
pub(super) fn read_bytes(label: &str, bytes: &[u8]) -> Result<Parsed, Error> {
    read_from(label, io::Cursor::new(bytes), bytes.len() as u64)
}

fn read_from<R: io::Read + io::Seek>(label: &str, r: R, file_len: u64) -> Result<Parsed, Error> {
    let mut zip = npyz::zip::ZipArchive::new(r)
        .map_err(|e| Error::corrupt(label, format!("not a readable .npz (zip) archive: {e}")))?;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for i in 0..zip.len() {
        let mut member = zip
            .by_index(i)
            .map_err(|e| Error::corrupt(label, format!("zip member #{i}: {e}")))?;
        let Some(name) = member.name().strip_suffix(".npy").map(str::to_string) else {
            continue; // not an array; numpy ignores these too
        };
        // The declared size only sizes the first allocation, and no larger than the archive
        // could plausibly hold: a corrupt archive may lie. Real data grows the buffer.
        let cap = member.size().min(file_len.saturating_mul(4)).min(1 << 26);
        let mut bytes = Vec::with_capacity(cap as usize);
        member
            .read_to_end(&mut bytes)
            .map_err(|e| Error::corrupt(label, format!("member '{name}': cannot read: {e}")))?;
        let t = npy::parse(label, Some(&name), &bytes)?;
        if name == NPZ_METADATA {
            let raw: Vec<u8> = match &t.data {
                super::TensorData::I64(v) => v.iter().map(|&b| b as u8).collect(),
                _ => return Err(Error::corrupt(label, "__metadata__ is not a uint8 array")),
            };
            metadata = serde_json::from_slice(&raw).map_err(|e| {
                Error::corrupt(
                    label,
                    format!("__metadata__ is not a JSON object of strings: {e}"),
                )
            })?;
        } else {
            tensors.insert(name, t);
        }
    }
    Ok((tensors, metadata))
}

/// One member to write, with its size and CRC computed up front (a stored entry needs
/// them in the local header, before the data).
pub(super) struct Member<'a> {
    name: String,
    body: Body<'a>,
    size: u32,
    crc: u32,
}

enum Body<'a> {
    /// A tensor, written as `.npy` in its own dtype.
    Tensor(&'a Tensor),
    /// A ready-made `.npy` (the uint8 metadata array).
    Bytes(Vec<u8>),
}

impl Body<'_> {
    fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        match self {
            Body::Tensor(t) => npy::write(w, t),
            Body::Bytes(b) => w.write_all(b),
        }
    }
}

/// Everything to write, checked before the output file is created.
pub(super) fn plan<'a>(label: &str, file: &'a TensorFile) -> Result<Vec<Member<'a>>, Error> {
    let too_big = || {
        Error::invalid(
            label,
            "npz output over 4 GiB is not supported (no zip64); use .safetensors",
        )
    };
    let mut entries: Vec<(String, Body<'a>)> = Vec::new();
    if !file.metadata.is_empty() {
        let json = serde_json::to_vec(&file.metadata).expect("a string map always serializes");
        let mut bytes = u8_npy_header(json.len());
        bytes.extend_from_slice(&json);
        entries.push((NPZ_METADATA.to_string(), Body::Bytes(bytes)));
    }
    for (name, t) in &file.tensors {
        if name == NPZ_METADATA {
            return Err(Error::invalid(
                label,
                "a tensor cannot be named '__metadata__'",
            ));
        }
        entries.push((name.clone(), Body::Tensor(t)));
    }
    // Sorted member names; "__metadata__" sorts among them like any other.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut total = 0u64;
    let mut members = Vec::with_capacity(entries.len());
    for (name, body) in entries {
        let mut crc = Crc::default();
        body.write_to(&mut crc).expect("CRC sink never fails");
        total += crc.len + 2 * (46 + name.len() as u64 + 4);
        let size = u32::try_from(crc.len).map_err(|_| too_big())?;
        members.push(Member {
            name,
            body,
            size,
            crc: crc.finish(),
        });
    }
    if total > u64::from(u32::MAX) {
        return Err(too_big());
    }
    Ok(members)
}

fn u8_npy_header(n: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({n},), }}");
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// MS-DOS date of 1980-01-01 (the zip epoch), time 00:00:00.
const DOS_DATE: u16 = (1 << 5) | 1;
const DOS_TIME: u16 = 0;

pub(super) fn write(w: &mut dyn Write, members: &[Member<'_>]) -> io::Result<()> {
    let mut offset = 0u32;
    let mut central = Vec::new();
    for m in members {
        let fname = format!("{}.npy", m.name);
        let size = m.size;
        let mut local = Vec::with_capacity(30 + fname.len());
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        local.extend_from_slice(&0u16.to_le_bytes()); // flags
        local.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        local.extend_from_slice(&DOS_TIME.to_le_bytes());
        local.extend_from_slice(&DOS_DATE.to_le_bytes());
        local.extend_from_slice(&m.crc.to_le_bytes());
        local.extend_from_slice(&size.to_le_bytes());
        local.extend_from_slice(&size.to_le_bytes());
        local.extend_from_slice(&(fname.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes()); // extra length
        local.extend_from_slice(fname.as_bytes());
        w.write_all(&local)?;
        m.body.write_to(w)?;

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: unix, 2.0
        central.extend_from_slice(&local[4..30]); // version needed .. extra length
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk number
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes()); // regular file, rw-r--r--
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(fname.as_bytes());
        offset += local.len() as u32 + size;
    }
    w.write_all(&central)?;
    let n = members.len() as u16;
    let mut end = Vec::with_capacity(22);
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes()); // this disk
    end.extend_from_slice(&0u16.to_le_bytes()); // disk with the central directory
    end.extend_from_slice(&n.to_le_bytes());
    end.extend_from_slice(&n.to_le_bytes());
    end.extend_from_slice(&(central.len() as u32).to_le_bytes());
    end.extend_from_slice(&offset.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes()); // comment length
    w.write_all(&end)
}

/// CRC-32 (IEEE, as zip uses) as a `Write` sink, so the CRC is computed by the same code
/// path that later writes the bytes.
#[derive(Default)]
struct Crc {
    state: u32,
    len: u64,
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc {
    fn finish(&self) -> u32 {
        self.state
    }
}

impl Write for Crc {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = !self.state;
        for &b in buf {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.state = !c;
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The standard CRC-32 check value, and the same result when fed in pieces.
        let mut c = Crc::default();
        c.write_all(b"123456789").unwrap();
        assert_eq!(c.finish(), 0xCBF4_3926);
        let mut c = Crc::default();
        c.write_all(b"1234").unwrap();
        c.write_all(b"56789").unwrap();
        assert_eq!(c.finish(), 0xCBF4_3926);
    }
}
