//! safetensors, read and written by hand: reading checks every size against the file so a
//! truncated file says by how much; writing controls the byte order of the header (the
//! `safetensors` crate keeps metadata in a `HashMap`, so its output is not reproducible).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use serde_json::Value;

use super::{write_le, DType, RawType, Tensor, TensorFile};
use crate::error::fmt_shape;
use crate::Error;

/// Same cap as the `safetensors` crate: a larger header means a corrupt length prefix.
const MAX_HEADER: u64 = 100_000_000;

type Parsed = (BTreeMap<String, Tensor>, BTreeMap<String, String>);

pub(super) fn read(label: &str, path: &Path) -> Result<Parsed, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(label, "cannot open", e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io(label, "cannot stat", e))?
        .len();
    if len < 8 {
        return Err(Error::corrupt(
            label,
            format!(
                "file has {len} bytes, too short for a safetensors header (8-byte length prefix)"
            ),
        ));
    }
    // SAFETY: the map is read-only and dropped before we return; like every mmap reader
    // we rely on nobody truncating the file underneath us while we copy out of it.
    let map =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(label, "cannot map", e))?;
    parse(label, &map)
}

pub(super) fn parse(label: &str, buf: &[u8]) -> Result<Parsed, Error> {
    let len = buf.len() as u64;
    let n = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER {
        return Err(Error::corrupt(
            label,
            format!("header says {n} bytes, more than the {MAX_HEADER} allowed (not a safetensors file?)"),
        ));
    }
    if 8 + n > len {
        return Err(Error::corrupt(
            label,
            format!(
                "header says {n} bytes, file has {} after the 8-byte length prefix (truncated?)",
                len - 8
            ),
        ));
    }
    let header_bytes = &buf[8..8 + n as usize];
    let data = &buf[8 + n as usize..];
    let header: serde_json::Map<String, Value> = serde_json::from_slice(header_bytes)
        .map_err(|e| Error::corrupt(label, format!("header is not a JSON object: {e}")))?;

    let mut metadata = BTreeMap::new();
    let mut tensors = BTreeMap::new();
    for (name, v) in header {
        if name == "__metadata__" {
            let obj = v
                .as_object()
                .ok_or_else(|| Error::corrupt(label, "__metadata__ is not a JSON object"))?;
            for (k, v) in obj {
                let s = v.as_str().ok_or_else(|| {
                    Error::corrupt(
                        label,
                        format!("__metadata__ key '{k}' is not a string: {v}"),
                    )
                })?;
                metadata.insert(k.clone(), s.to_string());
            }
            continue;
        }
        let t = parse_tensor(label, &name, &v, data)?;
        tensors.insert(name, t);
    }
    Ok((tensors, metadata))
}

fn parse_tensor(label: &str, name: &str, v: &Value, data: &[u8]) -> Result<Tensor, Error> {
    let bad = |what: &str| {
        Error::corrupt(
            label,
            format!("tensor '{name}': {what} in header entry {v}"),
        )
    };
    let dtype = v
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no dtype"))?;
    let shape: Vec<usize> = v
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no shape"))?
        .iter()
        .map(|d| {
            d.as_u64()
                .map(|d| d as usize)
                .ok_or_else(|| bad("bad shape"))
        })
        .collect::<Result<_, _>>()?;
    let offsets = v
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or_else(|| bad("no data_offsets"))?;
    let (start, end) = match (offsets[0].as_u64(), offsets[1].as_u64()) {
        (Some(s), Some(e)) if s <= e => (s, e),
        _ => return Err(bad("bad data_offsets")),
    };
    let raw = match dtype {
        "F16" => RawType::F16,
        "BF16" => RawType::BF16,
        "F32" => RawType::F32,
        "F64" => RawType::F64,
        "I8" => RawType::I8,
        "I16" => RawType::I16,
        "I32" => RawType::I32,
        "I64" => RawType::I64,
        "U8" => RawType::U8,
        "U16" => RawType::U16,
        "U32" => RawType::U32,
        other => {
            return Err(Error::UnsupportedDtype {
                path: label.to_string(),
                tensor: name.to_string(),
                dtype: other.to_string(),
            })
        }
    };
    let numel = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let needed = numel.and_then(|n| n.checked_mul(raw.size() as u64));
    if needed != Some(end - start) {
        return Err(Error::corrupt(
            label,
            format!(
                "tensor '{name}': shape {} of {dtype} needs {} bytes, data_offsets [{start}, {end}] span {}",
                fmt_shape(&shape),
                needed.map_or_else(|| "too many".to_string(), |n| n.to_string()),
                end - start
            ),
        ));
    }
    if end > data.len() as u64 {
        return Err(Error::corrupt(
            label,
            format!(
                "tensor '{name}': data ends at byte {end} of the data section, file has {} data bytes (truncated?)",
                data.len()
            ),
        ));
    }
    let data = raw.decode(&data[start as usize..end as usize], false);
    Ok(Tensor { shape, data })
}

/// The header bytes (length prefix excluded, padding included), built before anything is
/// written so that an invalid file fails without creating output.
pub(super) fn header(label: &str, file: &TensorFile) -> Result<Vec<u8>, Error> {
    let mut h = String::from("{");
    let mut first = true;
    let mut sep = |h: &mut String| {
        if !first {
            h.push(',');
        }
        first = false;
    };
    if !file.metadata.is_empty() {
        sep(&mut h);
        h.push_str("\"__metadata__\":{");
        for (i, (k, v)) in file.metadata.iter().enumerate() {
            if i > 0 {
                h.push(',');
            }
            h.push_str(&json_str(k));
            h.push(':');
            h.push_str(&json_str(v));
        }
        h.push('}');
    }
    let mut offset = 0usize;
    for (name, t) in &file.tensors {
        if name == "__metadata__" {
            return Err(Error::invalid(
                label,
                "a tensor cannot be named '__metadata__'",
            ));
        }
        let bytes = t.numel() * t.dtype().size();
        let dtype = match t.dtype() {
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::I64 => "I64",
        };
        let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        sep(&mut h);
        h.push_str(&format!(
            "{}:{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            json_str(name),
            shape.join(","),
            offset + bytes
        ));
        offset += bytes;
    }
    h.push('}');
    // Pad so the data section starts 8-byte aligned (8 + header is a multiple of 8).
    while h.len() % 8 != 0 {
        h.push(' ');
    }
    Ok(h.into_bytes())
}

pub(super) fn write(w: &mut dyn Write, header: &[u8], file: &TensorFile) -> io::Result<()> {
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(header)?;
    for t in file.tensors.values() {
        write_le(w, &t.data)?;
    }
    Ok(())
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}
