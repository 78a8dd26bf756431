//! `.npy`: the header is parsed by `npyz` (Python-literal dict), the data by us, so that
//! f16, big-endian and Fortran-order arrays all work and a short file says how short.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;

use npyz::{DType as NpDType, Endianness, Order, TypeChar};

use super::{resid_name, write_le, DType, RawType, Tensor, TensorData};
use crate::atomic::is_dash;
use crate::error::fmt_shape;
use crate::Error;

/// Reads one `.npy` (a path, or `-` for stdin) and names its tensors per the module docs.
pub(super) fn read_file(label: &str, path: &Path) -> Result<BTreeMap<String, Tensor>, Error> {
    let mut bytes = Vec::new();
    if is_dash(path) {
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(label, "cannot read", e))?;
    } else {
        bytes = std::fs::read(path).map_err(|e| Error::io(label, "cannot read", e))?;
    }
    let t = parse(label, None, &bytes)?;
    Ok(name_single(t))
}

/// One `.npy` already in memory (read from a pipe), named per the module docs.
pub(super) fn read_bytes(label: &str, bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, Error> {
    Ok(name_single(parse(label, None, bytes)?))
}

/// 2-D -> `resid.0`; 3-D `[L, n, d]` -> `resid.0..L-1`; anything else -> `arr_0`.
fn name_single(t: Tensor) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    match t.shape[..] {
        [_, _] => {
            out.insert(resid_name(0), t);
        }
        [l, n, d] => {
            let per = n * d;
            for i in 0..l {
                let data = match &t.data {
                    TensorData::F32(v) => TensorData::F32(v[i * per..(i + 1) * per].to_vec()),
                    TensorData::F64(v) => TensorData::F64(v[i * per..(i + 1) * per].to_vec()),
                    TensorData::I64(v) => TensorData::I64(v[i * per..(i + 1) * per].to_vec()),
                };
                out.insert(
                    resid_name(i),
                    Tensor {
                        shape: vec![n, d],
                        data,
                    },
                );
            }
        }
        _ => {
            out.insert("arr_0".to_string(), t);
        }
    }
    out
}

/// Parses the bytes of one `.npy`; `member` names it inside an `.npz` for messages.
pub(super) fn parse(label: &str, member: Option<&str>, bytes: &[u8]) -> Result<Tensor, Error> {
    let what = member.map_or_else(String::new, |m| format!("member '{m}': "));
    let (header, data) = read_header(label, &what, bytes)?;
    let ts = match header.dtype() {
        NpDType::Plain(ts) => ts,
        _ => return Err(unsupported(label, member, &header)),
    };
    let raw = raw_type(&ts).ok_or_else(|| unsupported(label, member, &header))?;
    let shape: Vec<usize> = header.shape().iter().map(|&d| d as usize).collect();
    check_data_len(
        label,
        &what,
        &shape,
        raw,
        &header.dtype().descr(),
        data.len(),
    )?;
    let big = ts.endianness() == Endianness::Big;
    let mut decoded = raw.decode(data, big);
    if header.order() == Order::Fortran && shape.len() > 1 {
        decoded = match decoded {
            TensorData::F32(v) => TensorData::F32(fortran_to_c(&v, &shape)),
            TensorData::F64(v) => TensorData::F64(fortran_to_c(&v, &shape)),
            TensorData::I64(v) => TensorData::I64(fortran_to_c(&v, &shape)),
        };
    }
    Ok(Tensor {
        shape,
        data: decoded,
    })
}

/// The header and the data bytes after it; a truncated or corrupt header is an error.
fn read_header<'b>(
    label: &str,
    what: &str,
    bytes: &'b [u8],
) -> Result<(npyz::NpyHeader, &'b [u8]), Error> {
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err(Error::corrupt(
            label,
            format!("{what}not a .npy (no \\x93NUMPY magic)"),
        ));
    }
    // npyz allocates the header length the file declares (up to 4 GiB) before reading it;
    // a declared length past the end of the bytes is a truncated or corrupt file.
    let declared = match bytes.get(6) {
        Some(1) => bytes
            .get(8..10)
            .map(|b| 10 + u16::from_le_bytes([b[0], b[1]]) as usize),
        Some(2 | 3) => bytes
            .get(8..12)
            .map(|b| 12 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
        _ => None,
    };
    let truncated = || {
        format!(
            "{what}.npy header is truncated (file has {} bytes)",
            bytes.len()
        )
    };
    if declared.is_some_and(|n| n > bytes.len()) {
        return Err(Error::corrupt(label, truncated()));
    }
    let mut r = bytes;
    let header = npyz::NpyHeader::from_reader(&mut r).map_err(|e| {
        let msg = if e.kind() == io::ErrorKind::UnexpectedEof {
            truncated()
        } else {
            format!("{what}bad .npy header: {e}")
        };
        Error::corrupt(label, msg)
    })?;
    Ok((header, r))
}

fn unsupported(label: &str, member: Option<&str>, header: &npyz::NpyHeader) -> Error {
    Error::UnsupportedDtype {
        path: label.to_string(),
        tensor: member.unwrap_or("array").to_string(),
        dtype: header.dtype().descr(),
    }
}

/// The element type of a plain dtype we read (`None`: unsupported).
fn raw_type(ts: &npyz::TypeStr) -> Option<RawType> {
    Some(match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 2) => RawType::F16,
        (TypeChar::Float, 4) => RawType::F32,
        (TypeChar::Float, 8) => RawType::F64,
        (TypeChar::Int, 1) => RawType::I8,
        (TypeChar::Int, 2) => RawType::I16,
        (TypeChar::Int, 4) => RawType::I32,
        (TypeChar::Int, 8) => RawType::I64,
        (TypeChar::Uint, 1) | (TypeChar::Bool, 1) => RawType::U8,
        (TypeChar::Uint, 2) => RawType::U16,
        (TypeChar::Uint, 4) => RawType::U32,
        _ => return None,
    })
}

/// The data must be exactly what the shape and dtype need.
fn check_data_len(
    label: &str,
    what: &str,
    shape: &[usize],
    raw: RawType,
    descr: &str,
    found: usize,
) -> Result<(), Error> {
    let needed = shape
        .iter()
        .try_fold(raw.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Error::corrupt(
                label,
                format!("{what}shape {} is too large", fmt_shape(shape)),
            )
        })?;
    if found == needed {
        return Ok(());
    }
    let how = if found < needed {
        "truncated?"
    } else {
        "trailing bytes"
    };
    Err(Error::corrupt(
        label,
        format!(
            "{what}shape {} of {descr} needs {needed} data bytes, found {found} ({how})",
            fmt_shape(shape)
        ),
    ))
}

/// Reorders column-major data into row-major.
fn fortran_to_c<T: Copy>(v: &[T], shape: &[usize]) -> Vec<T> {
    let mut f_strides = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        f_strides[k] = f_strides[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; shape.len()];
    let mut out = Vec::with_capacity(v.len());
    for _ in 0..v.len() {
        let off: usize = idx.iter().zip(&f_strides).map(|(i, s)| i * s).sum();
        out.push(v[off]);
        // Advance the row-major multi-index (last axis fastest).
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

/// The `.npy` header (magic through the newline), version 1.0 unless it needs 2.0, padded
/// so the data starts 64-byte aligned, as numpy writes it.
pub(super) fn header(t: &Tensor) -> Vec<u8> {
    let descr = match t.dtype() {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I64 => "<i8",
    };
    let shape = match t.shape.len() {
        1 => format!("({},)", t.shape[0]),
        _ => {
            let parts: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // 6 magic + 2 version + 2 (v1) or 4 (v2) length bytes, then dict + padding + '\n'.
    let (version, prefix) = if dict.len() + 1 + 10 <= u16::MAX as usize {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    let hlen = total - prefix;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"\x93NUMPY");
    out.push(version);
    out.push(0);
    if version == 1 {
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

pub(super) fn write(w: &mut dyn Write, t: &Tensor) -> io::Result<()> {
    w.write_all(&header(t))?;
    write_le(w, &t.data)
}
