//! `.npy` files: reading with clear errors, and writing whole or not at all.
//!
//! The header (a Python dict literal) is parsed by `npyz`; the data block is decoded here from
//! the bytes after it, so that every failure gets its own message: no magic, a malformed header,
//! Fortran order, an unsupported dtype, or fewer data bytes than the shape promises.
//!
//! Writing uses format version 1.0 with the header padded so that the data starts on a 64-byte
//! boundary (as numpy does). [`AtomicFile`] writes into a temporary file in the destination's
//! directory and renames it into place only when everything was written, so a reader never sees
//! a partial output and a failed run leaves no file behind.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use half::f16;
use npyz::{Endianness, TypeChar};

use crate::fail::{usage, Failure};

/// The element data of an array, in the file's type (widened only for byte order).
#[derive(Debug)]
pub enum Data {
    /// `f2`.
    F16(Vec<f16>),
    /// `f4`.
    F32(Vec<f32>),
    /// `f8`.
    F64(Vec<f64>),
    /// `b1`.
    Bool(Vec<bool>),
    /// `u1`.
    U8(Vec<u8>),
    /// Any other signed integer type (`i1`, `i2`, `i4`, `i8`), widened.
    Int(Vec<i64>),
    /// Any other unsigned integer type (`u2`, `u4`, `u8`), widened.
    Uint(Vec<u64>),
}

impl Data {
    /// A short dtype name for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Data::F16(_) => "float16",
            Data::F32(_) => "float32",
            Data::F64(_) => "float64",
            Data::Bool(_) => "bool",
            Data::U8(_) => "uint8",
            Data::Int(_) => "a signed integer type",
            Data::Uint(_) => "an unsigned integer type",
        }
    }
}

/// One array read from a file.
#[derive(Debug)]
pub struct Array {
    /// Where it came from (for messages).
    pub path: PathBuf,
    /// Its shape (`[]` for a 0-d array).
    pub shape: Vec<usize>,
    /// The numpy type string of the file (`<f4`, `|u1`, ...).
    pub descr: String,
    /// The elements, row-major.
    pub data: Data,
}

impl Array {
    /// The shape written as numpy prints it: `(512, 256)`.
    pub fn shape_str(&self) -> String {
        shape_str(&self.shape)
    }

    /// An error about this array, prefixed with its path.
    pub fn err(&self, msg: impl std::fmt::Display) -> Failure {
        usage(format!("{}: {msg}", self.path.display()))
    }
}

/// `(a, b)`, `(a,)` or `()`.
pub fn shape_str(shape: &[usize]) -> String {
    match shape {
        [] => "()".into(),
        [a] => format!("({a},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a whole `.npy` file.
pub fn read(path: &Path) -> Result<Array, Failure> {
    let bytes =
        std::fs::read(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    parse(path, &bytes)
}

/// Parses the bytes of a `.npy` file (`path` only names it in messages).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Array, Failure> {
    let at = |msg: String| usage(format!("{}: {msg}", path.display()));

    // 1. Magic string: everything else is meaningless without it.
    if !bytes.starts_with(MAGIC) {
        return Err(at(
            "not a .npy file (it does not start with the \\x93NUMPY magic string)".into(),
        ));
    }

    // 2. Header, by npyz. Whatever follows it is the data block.
    let file = npyz::NpyFile::new(bytes)
        .map_err(|e| at(format!("malformed or truncated .npy header: {e}")))?;
    let header = file.header().clone();
    let rest: &[u8] = file.into_inner();
    if header.order() == npyz::Order::Fortran {
        return Err(at(
            "Fortran-order (column-major) arrays are not supported; save a C-order \
                       array, e.g. with numpy.ascontiguousarray"
                .into(),
        ));
    }
    let ts = match header.dtype() {
        npyz::DType::Plain(ts) => ts,
        other => {
            return Err(at(format!(
                "structured dtype {} is not supported",
                other.descr()
            )));
        }
    };
    let descr = ts.to_string();
    let size = ts.size_field() as usize;
    let big = ts.endianness() == Endianness::Big;
    let supported = matches!(
        (ts.type_char(), size),
        (TypeChar::Float, 2 | 4 | 8)
            | (TypeChar::Bool, 1)
            | (TypeChar::Int | TypeChar::Uint, 1 | 2 | 4 | 8)
    );
    if !supported {
        return Err(at(format!(
            "unsupported dtype {descr}; expected a float (f2, f4, f8), bool or integer array"
        )));
    }

    // 3. The data block must hold every element the shape promises.
    let mut shape = Vec::with_capacity(header.shape().len());
    let mut count: usize = 1;
    for &d in header.shape() {
        let d = usize::try_from(d).map_err(|_| at(format!("dimension {d} is too large")))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| at("the shape's size overflows".into()))?;
        shape.push(d);
    }
    let need = count
        .checked_mul(size)
        .ok_or_else(|| at("the shape's size overflows".into()))?;
    if rest.len() < need {
        return Err(at(format!(
            "truncated: shape {} of {descr} needs {need} data bytes, the file holds {}",
            shape_str(&shape),
            rest.len()
        )));
    }
    if rest.len() > need {
        log::warn!(
            "{}: {} bytes after the array's data are ignored",
            path.display(),
            rest.len() - need
        );
    }
    let raw = &rest[..need];

    // 4. Decode in the file's byte order.
    macro_rules! decode {
        ($t:ty, $n:literal) => {
            raw.chunks_exact($n)
                .map(|c| {
                    let a: [u8; $n] = c.try_into().expect("chunk of exact size");
                    if big {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    }
                })
                .collect::<Vec<$t>>()
        };
    }
    let data = match (ts.type_char(), size) {
        (TypeChar::Float, 2) => {
            Data::F16(decode!(u16, 2).into_iter().map(f16::from_bits).collect())
        }
        (TypeChar::Float, 4) => Data::F32(decode!(f32, 4)),
        (TypeChar::Float, 8) => Data::F64(decode!(f64, 8)),
        (TypeChar::Bool, _) => {
            if let Some(i) = raw.iter().position(|&b| b > 1) {
                return Err(at(format!(
                    "bool element {i} holds byte {}, not 0 or 1",
                    raw[i]
                )));
            }
            Data::Bool(raw.iter().map(|&b| b == 1).collect())
        }
        (TypeChar::Uint, 1) => Data::U8(raw.to_vec()),
        (TypeChar::Int, 1) => Data::Int(raw.iter().map(|&b| b as i8 as i64).collect()),
        (TypeChar::Int, 2) => Data::Int(decode!(i16, 2).into_iter().map(i64::from).collect()),
        (TypeChar::Int, 4) => Data::Int(decode!(i32, 4).into_iter().map(i64::from).collect()),
        (TypeChar::Int, 8) => Data::Int(decode!(i64, 8)),
        (TypeChar::Uint, 2) => Data::Uint(decode!(u16, 2).into_iter().map(u64::from).collect()),
        (TypeChar::Uint, 4) => Data::Uint(decode!(u32, 4).into_iter().map(u64::from).collect()),
        (TypeChar::Uint, 8) => Data::Uint(decode!(u64, 8)),
        _ => unreachable!("checked above"),
    };
    log::debug!("read {}: {descr} {}", path.display(), shape_str(&shape));
    Ok(Array {
        path: path.to_path_buf(),
        shape,
        descr,
        data,
    })
}

/// Element types this module writes.
pub trait Elem: Copy {
    /// The numpy type string.
    const DESCR: &'static str;
    /// Appends the little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
}

impl Elem for f32 {
    const DESCR: &'static str = "<f4";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Elem for f64 {
    const DESCR: &'static str = "<f8";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Elem for f16 {
    const DESCR: &'static str = "<f2";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bits().to_le_bytes());
    }
}

impl Elem for u8 {
    const DESCR: &'static str = "|u1";
    fn put(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}

/// The bytes of a `.npy` file (version 1.0) holding `data` with `shape`.
pub fn encode<T: Elem>(shape: &[usize], data: &[T]) -> Vec<u8> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        shape_str(shape)
    );
    // magic (6) + version (2) + header length (2) + dict + padding + '\n' = a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let hlen = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + hlen + data.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(hlen as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    for &v in data {
        v.put(&mut out);
    }
    out
}

/// An output file that appears whole or not at all.
///
/// [`AtomicFile::create`] opens a temporary file next to the destination at once (so that an
/// unwritable directory is reported before any work is done); [`AtomicFile::commit`] writes,
/// flushes to disk and renames it over the destination. Dropped without a commit, it removes
/// the temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Opens the temporary file for `dest`.
    pub fn create(dest: &Path) -> Result<Self, Failure> {
        let name = dest
            .file_name()
            .ok_or_else(|| usage(format!("output path {} names no file", dest.display())))?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dest.is_dir() {
            return Err(usage(format!(
                "output path {} is a directory",
                dest.display()
            )));
        }
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&tmp)
            .map_err(|e| usage(format!("cannot write {}: {e}", dest.display())))?;
        Ok(AtomicFile {
            dest: dest.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// The destination path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Writes `bytes` to the temporary file and flushes it to disk (not yet visible).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let file = self.file.as_mut().expect("open until commit");
        file.write_all(bytes)
            .and_then(|_| file.sync_all())
            .map_err(|e| usage(format!("cannot write {}: {e}", self.dest.display())))
    }

    /// Renames the temporary file over the destination.
    pub fn commit(mut self) -> Result<(), Failure> {
        drop(self.file.take());
        std::fs::rename(&self.tmp, &self.dest)
            .map_err(|e| usage(format!("cannot write {}: {e}", self.dest.display())))?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes several files whole or not at all: every temporary file is written and flushed
/// before the first rename. (A crash between two renames can still leave the first one in
/// place; each file on its own is always complete.)
pub fn commit_all(files: Vec<(AtomicFile, Vec<u8>)>) -> Result<(), Failure> {
    let mut staged = Vec::with_capacity(files.len());
    for (mut f, bytes) in files {
        f.write_all(&bytes)?;
        staged.push(f);
    }
    for f in staged {
        f.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_f32_2d() {
        let v: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let bytes = encode(&[2, 3], &v);
        assert_eq!((bytes.len() - v.len() * 4) % 64, 0);
        let a = parse(Path::new("x.npy"), &bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        match a.data {
            Data::F32(w) => assert_eq!(w, v),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trip_scalar_f16() {
        let bytes = encode(&[], &[f16::from_f32(1.5)]);
        let a = parse(Path::new("x.npy"), &bytes).unwrap();
        assert!(a.shape.is_empty());
        assert!(matches!(a.data, Data::F16(ref w) if w[0].to_f32() == 1.5));
    }
}
