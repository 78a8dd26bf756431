//! Tensor files: activations (`resid.{i}`), components (`components.{i}`, ...), in
//! safetensors, `.npz` or `.npy`, chosen by extension.
//!
//! # Formats
//! - **safetensors** (`.safetensors`, `.st`): read through a memory map; written by our own
//!   serializer so the bytes are deterministic: 8-byte little-endian header length, a JSON
//!   header with `__metadata__` first (keys sorted) and then the tensors in sorted-name order
//!   (data offsets in that same order), padded with spaces to a multiple of 8.
//! - **npz** (`.npz`): a zip of one `<name>.npy` member per tensor, in sorted-name order,
//!   stored (no compression) with a fixed 1980-01-01 timestamp. The metadata map is kept as
//!   a `uint8` array named `__metadata__` holding its JSON bytes (`np.load(f)["__metadata__"]
//!   .tobytes()` gives it back); [`TensorFile::read`] parses it back into
//!   [`TensorFile::metadata`]. Compressed `.npz` (`np.savez_compressed`) is read too.
//! - **npy** (`.npy`): exactly one tensor; metadata has nowhere to
//!   go and is dropped on write. On read a 2-D array becomes `resid.0`, a 3-D `[L, n, d]`
//!   array becomes `resid.0` .. `resid.{L-1}` (one `[n, d]` tensor per layer), and any other
//!   rank becomes `arr_0` (numpy's own default name).
//!
//! # Pipes
//! `-` (stdin/stdout) and other non-regular files (FIFOs, `/dev/stdout`, `<(...)`) work for
//! every format. Written to a pipe, a file is safetensors unless the caller picks another
//! format ([`TensorFile::write_as`]; a known extension on a FIFO also picks it): the
//! serializers compute every offset before the first byte, so none needs to seek. Read from
//! a pipe, the bytes are buffered and the format is sniffed from the magic bytes
//! ([`sniff`]: `\x93NUMPY`, `PK\x03\x04`, or a safetensors length prefix followed by `{`).
//!
//! On read, f32/f16/bf16 become [`TensorData::F32`], f64 stays [`TensorData::F64`], and
//! every integer type becomes [`TensorData::I64`]. Big-endian and Fortran-order `.npy`
//! arrays are converted to little-endian row-major.

mod npy;
mod npz;
mod st;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::atomic::{in_label, is_dash, out_label, Outputs};
use crate::error::{abbreviate, fmt_shape};
use crate::Error;

// ---------------------------------------------------------------------------------------
// Tensor names: built and parsed only here.

/// The indexed tensor families of DESIGN.md ("Files between stages").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `resid.{i}`: residual stream at hidden-state index `i` (HF `output_hidden_states`).
    Resid,
    /// `components.{i}`: `[k, d]` unit rows, the safety residual space of layer `i`.
    Components,
    /// `singular_values.{i}`: `[min(n, d)]`.
    SingularValues,
    /// `mean_shift.{i}`: `[d]`.
    MeanShift,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 4] = [
        Kind::Resid,
        Kind::Components,
        Kind::SingularValues,
        Kind::MeanShift,
    ];

    /// The name prefix before the dot.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Resid => "resid",
            Kind::Components => "components",
            Kind::SingularValues => "singular_values",
            Kind::MeanShift => "mean_shift",
        }
    }

    /// `{prefix}.{i}`.
    pub fn name(self, i: usize) -> String {
        format!("{}.{i}", self.prefix())
    }
}

/// `offsets` `[n+1]` (i64) of a `--positions all` dump.
pub const OFFSETS: &str = "offsets";
/// `token_ids` `[total_tokens]` (i64) of a `--positions all` dump.
pub const TOKEN_IDS: &str = "token_ids";
/// The npz member that holds the metadata JSON.
pub const NPZ_METADATA: &str = "__metadata__";

/// `resid.{i}`.
pub fn resid_name(i: usize) -> String {
    Kind::Resid.name(i)
}

/// `components.{i}`.
pub fn components_name(i: usize) -> String {
    Kind::Components.name(i)
}

/// `singular_values.{i}`.
pub fn singular_values_name(i: usize) -> String {
    Kind::SingularValues.name(i)
}

/// `mean_shift.{i}`.
pub fn mean_shift_name(i: usize) -> String {
    Kind::MeanShift.name(i)
}

/// Inverse of [`Kind::name`]. Only canonical names parse (`resid.5`, not `resid.05` or
/// `resid.+5`), so parse and build round-trip exactly.
pub fn parse_name(s: &str) -> Option<(Kind, usize)> {
    let (prefix, index) = s.split_once('.')?;
    let kind = Kind::ALL.into_iter().find(|k| k.prefix() == prefix)?;
    let canonical = !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
        && (index == "0" || !index.starts_with('0'));
    if !canonical {
        return None;
    }
    Some((kind, index.parse().ok()?))
}

// ---------------------------------------------------------------------------------------
// Tensors.

/// Element type of a [`Tensor`] in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 64-bit signed integer.
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::I64 => "I64",
        })
    }
}

/// Flat, row-major element storage.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 32-bit floats (also what f16/bf16 are widened to).
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// Integers of any width.
    I64(Vec<i64>),
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F64(_) => DType::F64,
            TensorData::I64(_) => DType::I64,
        }
    }
}

/// A dense, row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first; `[]` is a scalar.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` elements.
    pub data: TensorData,
}

impl Tensor {
    /// A tensor after checking that `data` has as many elements as `shape` needs.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self, Error> {
        let needed: usize = shape.iter().product();
        if needed != data.len() {
            return Err(Error::ShapeLen {
                shape: fmt_shape(&shape),
                len: data.len(),
                needed,
            });
        }
        Ok(Tensor { shape, data })
    }

    /// An f32 tensor (checked).
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, Error> {
        Self::new(shape, TensorData::F32(data))
    }

    /// An f64 tensor (checked).
    pub fn f64(shape: Vec<usize>, data: Vec<f64>) -> Result<Self, Error> {
        Self::new(shape, TensorData::F64(data))
    }

    /// An i64 tensor (checked).
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Self, Error> {
        Self::new(shape, TensorData::I64(data))
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The data when it is f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The data when it is f64.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match &self.data {
            TensorData::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The data when it is i64.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The data converted to f64 (exact for f32; i64 beyond 2^53 rounds).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The data converted to f32 (f64 and i64 round to nearest).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Formats.

/// On-disk tensor file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.safetensors` / `.st`.
    Safetensors,
    /// `.npz`.
    Npz,
    /// `.npy` (and `-`).
    Npy,
}

impl Format {
    /// The format a path's extension names (case-insensitive); `-` (stdin/stdout), and a
    /// non-regular file (a FIFO, `/dev/stdout`) without a known extension, are
    /// [`Format::Safetensors`], the pipe default (a piped input's format is sniffed instead,
    /// see the module docs).
    pub fn from_path(path: &Path) -> Result<Format, Error> {
        if is_dash(path) {
            return Ok(Format::Safetensors);
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "safetensors" | "st" => Ok(Format::Safetensors),
            "npz" => Ok(Format::Npz),
            "npy" => Ok(Format::Npy),
            _ if is_stream(path) => Ok(Format::Safetensors),
            _ => Err(Error::UnknownFormat {
                path: path.display().to_string(),
                found: ext,
            }),
        }
    }

    /// The canonical name (also accepted by `FromStr`, for a `--format` override).
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Npz => "npz",
            Format::Npy => "npy",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;
    /// `safetensors` (or `st`), `npz`, `npy`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "safetensors" | "st" => Ok(Format::Safetensors),
            "npz" => Ok(Format::Npz),
            "npy" => Ok(Format::Npy),
            _ => Err(Error::UnknownFormatName {
                found: s.to_string(),
            }),
        }
    }
}

/// The format of a tensor file's bytes, from its magic: `\x93NUMPY` (npy), a zip local
/// header or empty-archive record (npz), or an 8-byte little-endian header length that fits
/// the bytes followed by `{` (safetensors). None when it is none of them.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(b"\x93NUMPY") {
        return Some(Format::Npy);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Some(Format::Npz);
    }
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let fits = n >= 2 && n <= bytes.len() as u64 - 8;
    (fits && bytes.get(8) == Some(&b'{')).then_some(Format::Safetensors)
}

/// `-`, or an existing file that is not a regular file (a FIFO, a character device, a
/// process substitution): read whole and sniffed, written without a temporary file.
fn is_stream(path: &Path) -> bool {
    is_dash(path) || std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

fn read_stream(label: &str, path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if is_dash(path) {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(label, "cannot read", e))?;
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| Error::io(label, "cannot read", e))?;
    }
    Ok(bytes)
}

fn not_a_tensor_file(label: &str, bytes: &[u8]) -> Error {
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Error::corrupt(
        label,
        format!(
            "not a tensor file: expected safetensors, .npz or .npy magic bytes, found {} \
             ({} bytes in all)",
            if head.is_empty() {
                "nothing".to_string()
            } else {
                head.join(" ")
            },
            bytes.len()
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Files.

/// A set of named tensors plus string metadata, as stored in one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorFile {
    /// Where it was read from, as used in messages (empty for a file built in memory).
    pub path: String,
    /// Tensors by name (sorted, which is also the on-disk order we write).
    pub tensors: BTreeMap<String, Tensor>,
    /// String metadata (`__metadata__`).
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// An empty file with the given metadata.
    pub fn new(metadata: BTreeMap<String, String>) -> Self {
        TensorFile {
            path: String::new(),
            tensors: BTreeMap::new(),
            metadata,
        }
    }

    /// Adds (or replaces) a tensor.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        self.tensors.insert(name.into(), tensor)
    }

    /// Reads a tensor file, its format chosen by extension; from `-` (stdin) or another
    /// pipe, by its magic bytes ([`sniff`]).
    pub fn read(path: &Path) -> Result<Self, Error> {
        check_not_folder(path)?;
        if is_stream(path) {
            let label = in_label(path);
            let bytes = read_stream(&label, path)?;
            let format = sniff(&bytes).ok_or_else(|| not_a_tensor_file(&label, &bytes))?;
            return Self::parse(label, format, &bytes);
        }
        Self::read_as(path, Format::from_path(path)?)
    }

    /// Reads a tensor file in the given format, whatever its extension (or, from a pipe,
    /// its magic bytes).
    pub fn read_as(path: &Path, format: Format) -> Result<Self, Error> {
        let label = in_label(path);
        check_not_folder(path)?;
        if is_stream(path) {
            let bytes = read_stream(&label, path)?;
            return Self::parse(label, format, &bytes);
        }
        let (tensors, metadata) = match format {
            Format::Safetensors => st::read(&label, path)?,
            Format::Npz => npz::read(&label, path)?,
            Format::Npy => (npy::read_file(&label, path)?, BTreeMap::new()),
        };
        Ok(TensorFile {
            path: label,
            tensors,
            metadata,
        })
    }

    /// A file from bytes already in memory.
    fn parse(label: String, format: Format, bytes: &[u8]) -> Result<Self, Error> {
        let (tensors, metadata) = match format {
            Format::Safetensors => {
                if bytes.len() < 8 {
                    return Err(Error::corrupt(
                        &label,
                        format!(
                            "{} bytes, too short for a safetensors header (8-byte length prefix)",
                            bytes.len()
                        ),
                    ));
                }
                st::parse(&label, bytes)?
            }
            Format::Npz => npz::read_bytes(&label, bytes)?,
            Format::Npy => (npy::read_bytes(&label, bytes)?, BTreeMap::new()),
        };
        Ok(TensorFile {
            path: label,
            tensors,
            metadata,
        })
    }

    /// Writes atomically in the format the extension names (`-` = safetensors to stdout);
    /// the bytes depend only on the contents (see the module docs).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        self.write_as(path, Format::from_path(path)?)
    }

    /// Writes atomically in the given format, whatever the extension.
    pub fn write_as(&self, path: &Path, format: Format) -> Result<(), Error> {
        let mut outs = Outputs::new();
        self.stage_as(&mut outs, path, format)?;
        outs.commit()
    }

    /// Stages the file into a run's output set (format by extension); it appears when the
    /// set is committed.
    pub fn stage(&self, outs: &mut Outputs, path: &Path) -> Result<(), Error> {
        self.stage_as(outs, path, Format::from_path(path)?)
    }

    /// [`TensorFile::stage`] in the given format, whatever the extension.
    pub fn stage_as(&self, outs: &mut Outputs, path: &Path, format: Format) -> Result<(), Error> {
        let label = out_label(path);
        match format {
            Format::Safetensors => {
                let header = st::header(&label, self)?;
                outs.stage(path, |w| st::write(w, &header, self))
            }
            Format::Npz => {
                let plan = npz::plan(&label, self)?;
                outs.stage(path, |w| npz::write(w, &plan))
            }
            Format::Npy => {
                let tensor = match self.tensors.values().collect::<Vec<_>>().as_slice() {
                    [t] => *t,
                    _ => {
                        return Err(Error::invalid(
                            &label,
                            format!(
                                ".npy holds exactly one tensor, this file has {} ({}); use .npz or .safetensors",
                                self.tensors.len(),
                                abbreviate(self.tensors.keys().map(String::as_str))
                            ),
                        ))
                    }
                };
                outs.stage(path, |w| npy::write(w, tensor))
            }
        }
    }

    /// The tensor called `name`; the error lists (abbreviated) what the file has.
    pub fn get(&self, name: &str) -> Result<&Tensor, Error> {
        self.tensors.get(name).ok_or_else(|| Error::NoSuchTensor {
            path: self.path.clone(),
            name: name.to_string(),
            available: abbreviate(self.tensors.keys().map(String::as_str)),
        })
    }

    /// A 2-D f32 tensor as `(rows, cols, data)`.
    pub fn get_2d_f32(&self, name: &str) -> Result<(usize, usize, &[f32]), Error> {
        let t = self.get(name)?;
        let [rows, cols] = t.shape[..] else {
            return Err(self.shape_error(name, t, "2-D [rows, cols]".to_string()));
        };
        let data = t.as_f32().ok_or_else(|| Error::TensorDtype {
            path: self.path.clone(),
            tensor: name.to_string(),
            found: t.dtype().to_string(),
            expected: "F32".to_string(),
        })?;
        Ok((rows, cols, data))
    }

    /// The tensor `name` after checking its shape: `None` in `expected` matches any size.
    /// The error reads `tensor 'resid.5' has shape [128, 2048], expected [_, 4096]`.
    pub fn expect_shape(&self, name: &str, expected: &[Option<usize>]) -> Result<&Tensor, Error> {
        let t = self.get(name)?;
        let ok = t.shape.len() == expected.len()
            && t.shape
                .iter()
                .zip(expected)
                .all(|(&d, e)| e.is_none_or(|e| e == d));
        if ok {
            return Ok(t);
        }
        let parts: Vec<String> = expected
            .iter()
            .map(|e| e.map_or_else(|| "_".to_string(), |d| d.to_string()))
            .collect();
        Err(self.shape_error(name, t, format!("[{}]", parts.join(", "))))
    }

    fn shape_error(&self, name: &str, t: &Tensor, expected: String) -> Error {
        Error::TensorShape {
            path: self.path.clone(),
            tensor: name.to_string(),
            found: fmt_shape(&t.shape),
            expected,
        }
    }

    /// Layer indices of all `resid.{i}` tensors, sorted.
    pub fn resid_layers(&self) -> Vec<usize> {
        self.layers_of(Kind::Resid)
    }

    /// Layer indices of all tensors of one kind, sorted.
    pub fn layers_of(&self, kind: Kind) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .tensors
            .keys()
            .filter_map(|n| parse_name(n))
            .filter(|&(k, _)| k == kind)
            .map(|(_, i)| i)
            .collect();
        v.sort_unstable();
        v
    }
}

/// Little-endian bytes of the data, in chunks, to a writer (shared by all three writers).
pub(crate) fn write_le(w: &mut dyn std::io::Write, data: &TensorData) -> std::io::Result<()> {
    fn chunks<T: Copy, const N: usize>(
        w: &mut dyn std::io::Write,
        v: &[T],
        to: impl Fn(T) -> [u8; N],
    ) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(8192 * N);
        for chunk in v.chunks(8192) {
            buf.clear();
            for &x in chunk {
                buf.extend_from_slice(&to(x));
            }
            w.write_all(&buf)?;
        }
        Ok(())
    }
    match data {
        TensorData::F32(v) => chunks(w, v, f32::to_le_bytes),
        TensorData::F64(v) => chunks(w, v, f64::to_le_bytes),
        TensorData::I64(v) => chunks(w, v, i64::to_le_bytes),
    }
}

/// A stored element type, as found in any of the three formats, before widening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawType {
    F16,
    BF16,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
}

impl RawType {
    pub(crate) fn size(self) -> usize {
        match self {
            RawType::I8 | RawType::U8 => 1,
            RawType::F16 | RawType::BF16 | RawType::I16 | RawType::U16 => 2,
            RawType::F32 | RawType::I32 | RawType::U32 => 4,
            RawType::F64 | RawType::I64 => 8,
        }
    }

    /// Decodes `bytes` (exactly `n * size` of them) into our in-memory types.
    pub(crate) fn decode(self, bytes: &[u8], big_endian: bool) -> TensorData {
        fn conv<const N: usize, T>(bytes: &[u8], big: bool, f: impl Fn([u8; N]) -> T) -> Vec<T> {
            bytes
                .chunks_exact(N)
                .map(|c| {
                    let mut a: [u8; N] = c.try_into().expect("chunk size");
                    if big {
                        a.reverse();
                    }
                    f(a)
                })
                .collect()
        }
        let b = big_endian;
        match self {
            RawType::F16 => {
                TensorData::F32(conv(bytes, b, |a| half::f16::from_le_bytes(a).to_f32()))
            }
            RawType::BF16 => {
                TensorData::F32(conv(bytes, b, |a| half::bf16::from_le_bytes(a).to_f32()))
            }
            RawType::F32 => TensorData::F32(conv(bytes, b, f32::from_le_bytes)),
            RawType::F64 => TensorData::F64(conv(bytes, b, f64::from_le_bytes)),
            RawType::I8 => TensorData::I64(conv(bytes, b, |a| i64::from(i8::from_le_bytes(a)))),
            RawType::I16 => TensorData::I64(conv(bytes, b, |a| i64::from(i16::from_le_bytes(a)))),
            RawType::I32 => TensorData::I64(conv(bytes, b, |a| i64::from(i32::from_le_bytes(a)))),
            RawType::I64 => TensorData::I64(conv(bytes, b, i64::from_le_bytes)),
            RawType::U8 => TensorData::I64(conv(bytes, b, |a: [u8; 1]| i64::from(a[0]))),
            RawType::U16 => TensorData::I64(conv(bytes, b, |a| i64::from(u16::from_le_bytes(a)))),
            RawType::U32 => TensorData::I64(conv(bytes, b, |a| i64::from(u32::from_le_bytes(a)))),
        }
    }
}

/// Otherwise a folder fails later as "unknown extension" or, from mmap, "No such device".
fn check_not_folder(path: &Path) -> Result<(), Error> {
    if !is_dash(path) && path.is_dir() {
        return Err(Error::invalid(
            &in_label(path),
            "is a folder, expected a tensor file (.safetensors, .npz or .npy)",
        ));
    }
    Ok(())
}
