//! `.npy` files: reading with clear errors, and writing whole or not at all.
//!
//! Reading: the preamble (magic string, version, header length) and the header (a Python dict
//! literal with `descr`, `fortran_order` and `shape`) are parsed here, by a small parser with
//! bounds on the header's length and nesting, so that no file can make it allocate without
//! limit, recurse deeply or panic. Every failure gets its own message: no magic, a malformed
//! header, Fortran order, an unsupported dtype, or fewer data bytes than the shape promises
//! (checked against the file's length before anything is allocated). The data block is then
//! read straight into the typed vector's memory (`read_exact` into its bytes), byte order fixed
//! in place for big-endian files and narrow integers widened in place, so that reading an array
//! costs the array and nothing more.
//!
//! Writing uses format version 1.0 with the header padded so that the data starts on a 64-byte
//! boundary (as numpy does), straight from the typed slice. [`AtomicFile`] writes into a
//! temporary file in the destination's directory and renames it into place only when
//! everything was written, so a reader never sees a partial output and a failed run leaves no
//! file behind.

use std::fs::File;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};

use bytemuck::Pod;
use half::f16;

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
/// The start of every header error (the tests look for "header").
const BAD_HEADER: &str = "malformed or truncated .npy header";
/// The longest header accepted. numpy writes a few dozen bytes (and `numpy.load` refuses more
/// than 10 000 by default); the bound keeps a corrupt length from costing memory.
const MAX_HEADER: u64 = 1 << 16;
/// The deepest nesting of brackets accepted in a header (numpy's has two levels).
const MAX_DEPTH: usize = 16;

/// Reads a whole `.npy` file.
pub fn read(path: &Path) -> Result<Array, Failure> {
    let cant = |e: std::io::Error| usage(format!("cannot read {}: {e}", path.display()));
    let mut file = File::open(path).map_err(cant)?;
    let meta = file.metadata().map_err(cant)?;
    if meta.is_dir() {
        return Err(usage(format!(
            "cannot read {}: it is a directory",
            path.display()
        )));
    }
    if !meta.is_file() {
        // A pipe or a device: its length is not known in advance, so read it whole.
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(cant)?;
        return parse(path, &bytes);
    }
    decode(path, &mut file, meta.len())
}

/// Parses the bytes of a `.npy` file (`path` only names it in messages).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Array, Failure> {
    let mut reader = bytes;
    decode(path, &mut reader, bytes.len() as u64)
}

/// Reads into `buf` until it is full or the input ends; returns the bytes read.
fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// What the header says about the data block.
struct Head {
    shape: Vec<usize>,
    descr: String,
    ty: ElemType,
    count: usize,
    need: u64,
}

/// A supported element type: its kind, bytes per element, and byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ElemType {
    kind: u8,
    size: usize,
    big: bool,
}

/// Decodes a `.npy` stream of `total` bytes.
fn decode(path: &Path, r: &mut dyn Read, total: u64) -> Result<Array, Failure> {
    let at = |msg: String| usage(format!("{}: {msg}", path.display()));
    let io = |e: std::io::Error| usage(format!("cannot read {}: {e}", path.display()));

    // 1. Magic string: everything else is meaningless without it.
    let mut pre = [0u8; 8];
    let got = read_up_to(r, &mut pre).map_err(io)?;
    if got < MAGIC.len() || !pre.starts_with(MAGIC) {
        return Err(at(
            "not a .npy file (it does not start with the \\x93NUMPY magic string)".into(),
        ));
    }
    if got < pre.len() {
        return Err(at(format!(
            "{BAD_HEADER}: the file ends after {got} bytes, inside the preamble"
        )));
    }

    // 2. Version and header length (u16 in version 1, u32 in versions 2 and 3).
    let len_bytes = match (pre[6], pre[7]) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        (a, b) => {
            return Err(at(format!(
                "{BAD_HEADER}: unsupported format version {a}.{b}"
            )))
        }
    };
    let mut lb = [0u8; 4];
    if read_up_to(r, &mut lb[..len_bytes]).map_err(io)? < len_bytes {
        return Err(at(format!(
            "{BAD_HEADER}: the file ends inside the header length"
        )));
    }
    let hlen = u64::from(u32::from_le_bytes(lb));
    let text_at = 8 + len_bytes as u64;
    if hlen > MAX_HEADER {
        return Err(at(format!(
            "{BAD_HEADER}: a header of {hlen} bytes is implausible (at most {MAX_HEADER} \
             accepted)"
        )));
    }
    if text_at + hlen > total {
        return Err(at(format!(
            "{BAD_HEADER}: the header should take {hlen} bytes, the file ends after {}",
            total.saturating_sub(text_at)
        )));
    }
    let mut text = vec![0u8; hlen as usize];
    let got = read_up_to(r, &mut text).map_err(io)?;
    if got < text.len() {
        return Err(at(format!(
            "{BAD_HEADER}: the header should take {hlen} bytes, the file ends after {got}"
        )));
    }

    // 3. The header dict.
    let head = interpret(&text).map_err(|e| at(e.message()))?;

    // 4. The data block must hold every element the shape promises: checked against the
    //    file's length before anything is allocated.
    let have = total - text_at - hlen;
    if have < head.need {
        return Err(at(format!(
            "truncated: shape {} of {} needs {} data bytes, the file holds {have}",
            shape_str(&head.shape),
            head.descr,
            head.need
        )));
    }
    if have > head.need {
        log::warn!(
            "{}: {} bytes after the array's data are ignored",
            path.display(),
            have - head.need
        );
    }

    // 5. Straight into the typed vector.
    let data = read_data(r, &head).map_err(|e| match e {
        ReadErr::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => at(format!(
            "truncated: shape {} of {} needs {} data bytes, the file ended early",
            shape_str(&head.shape),
            head.descr,
            head.need
        )),
        ReadErr::Io(e) => io(e),
        ReadErr::Alloc(bytes) => at(format!("cannot allocate {bytes} bytes for the array")),
        ReadErr::Bool(i, b) => at(format!("bool element {i} holds byte {b}, not 0 or 1")),
    })?;
    log::debug!(
        "read {}: {} {}",
        path.display(),
        head.descr,
        shape_str(&head.shape)
    );
    Ok(Array {
        path: path.to_path_buf(),
        shape: head.shape,
        descr: head.descr,
        data,
    })
}

/// Why the data block could not be read.
enum ReadErr {
    Io(std::io::Error),
    /// The allocation of this many bytes failed.
    Alloc(u64),
    /// A bool element (index, byte) that is neither 0 nor 1.
    Bool(usize, u8),
}

impl From<std::io::Error> for ReadErr {
    fn from(e: std::io::Error) -> Self {
        ReadErr::Io(e)
    }
}

/// `count` zeroed elements, or an error instead of an abort when memory runs out.
fn zeroed<T: Pod>(count: usize) -> Result<Vec<T>, ReadErr> {
    let mut v = Vec::new();
    v.try_reserve_exact(count)
        .map_err(|_| ReadErr::Alloc((count as u64).saturating_mul(size_of::<T>() as u64)))?;
    v.resize(count, T::zeroed());
    Ok(v)
}

/// Reads `count` elements of `T` straight into a vector's bytes (in the file's byte order).
fn read_raw<T: Pod>(r: &mut dyn Read, count: usize) -> Result<Vec<T>, ReadErr> {
    let mut v = zeroed::<T>(count)?;
    r.read_exact(bytemuck::cast_slice_mut(&mut v))?;
    Ok(v)
}

/// Converts every element from the file's byte order to the machine's, in place.
fn fix_order<T: Pod>(v: &mut [T], big: bool, swap: impl Fn(T) -> T) {
    if big != cfg!(target_endian = "big") {
        for x in v.iter_mut() {
            *x = swap(*x);
        }
    }
}

/// Reads `count` integers of `S` bytes into the front of a vector of 8-byte integers and
/// widens them in place with `widen` (file bytes to the 8-byte integer's native bytes).
///
/// Back to front: element `i` moves from bytes `S*i..` to `8*i..`, which only overlaps
/// elements `>= i` of the source, all of them already moved.
fn read_widened<T: Pod, const S: usize>(
    r: &mut dyn Read,
    count: usize,
    widen: impl Fn([u8; S]) -> [u8; 8],
) -> Result<Vec<T>, ReadErr> {
    debug_assert_eq!(size_of::<T>(), 8);
    let mut v = zeroed::<T>(count)?;
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut v);
    r.read_exact(&mut bytes[..count * S])?;
    for i in (0..count).rev() {
        let mut src = [0u8; S];
        src.copy_from_slice(&bytes[S * i..S * i + S]);
        bytes[8 * i..8 * i + 8].copy_from_slice(&widen(src));
    }
    Ok(v)
}

fn read_data(r: &mut dyn Read, h: &Head) -> Result<Data, ReadErr> {
    let n = h.count;
    let big = h.ty.big;
    macro_rules! signed {
        ($t:ty, $s:literal) => {
            read_widened::<i64, $s>(r, n, |b| {
                let v = if big {
                    <$t>::from_be_bytes(b)
                } else {
                    <$t>::from_le_bytes(b)
                };
                i64::from(v).to_ne_bytes()
            })?
        };
    }
    macro_rules! unsigned {
        ($t:ty, $s:literal) => {
            read_widened::<u64, $s>(r, n, |b| {
                let v = if big {
                    <$t>::from_be_bytes(b)
                } else {
                    <$t>::from_le_bytes(b)
                };
                u64::from(v).to_ne_bytes()
            })?
        };
    }
    Ok(match (h.ty.kind, h.ty.size) {
        (b'f', 2) => {
            let mut v = read_raw::<f16>(r, n)?;
            fix_order(&mut v, big, |x| f16::from_bits(x.to_bits().swap_bytes()));
            Data::F16(v)
        }
        (b'f', 4) => {
            let mut v = read_raw::<f32>(r, n)?;
            fix_order(&mut v, big, |x| f32::from_bits(x.to_bits().swap_bytes()));
            Data::F32(v)
        }
        (b'f', 8) => {
            let mut v = read_raw::<f64>(r, n)?;
            fix_order(&mut v, big, |x| f64::from_bits(x.to_bits().swap_bytes()));
            Data::F64(v)
        }
        (b'b', _) => {
            let v = read_raw::<u8>(r, n)?;
            if let Some(i) = v.iter().position(|&b| b > 1) {
                return Err(ReadErr::Bool(i, v[i]));
            }
            // Reinterpret the checked bytes as bools, without a second copy.
            let mut v = ManuallyDrop::new(v);
            let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
            // SAFETY: `ptr`, `len` and `cap` come from a live Vec<u8> that is never used or
            // dropped again (ManuallyDrop); bool has the size and alignment of u8, so the
            // allocation's layout is unchanged; every byte was checked to be 0 or 1 above,
            // the only valid bit patterns of a bool.
            Data::Bool(unsafe { Vec::from_raw_parts(ptr.cast::<bool>(), len, cap) })
        }
        (b'u', 1) => Data::U8(read_raw::<u8>(r, n)?),
        (b'i', 1) => Data::Int(signed!(i8, 1)),
        (b'i', 2) => Data::Int(signed!(i16, 2)),
        (b'i', 4) => Data::Int(signed!(i32, 4)),
        (b'i', 8) => {
            let mut v = read_raw::<i64>(r, n)?;
            fix_order(&mut v, big, i64::swap_bytes);
            Data::Int(v)
        }
        (b'u', 2) => Data::Uint(unsigned!(u16, 2)),
        (b'u', 4) => Data::Uint(unsigned!(u32, 4)),
        (b'u', 8) => {
            let mut v = read_raw::<u64>(r, n)?;
            fix_order(&mut v, big, u64::swap_bytes);
            Data::Uint(v)
        }
        _ => unreachable!("type_of admits only the types above"),
    })
}

// ---------------------------------------------------------------------------------------------
// The header: a Python literal (numpy writes it with `repr` of a dict).

/// A header problem, turned into a message by [`HeadErr::message`].
#[derive(Debug)]
enum HeadErr {
    /// Not a well-formed dict with the three keys (the text says what).
    Malformed(String),
    Fortran,
    Structured(String),
    Unsupported(String),
    TooLarge(String),
    Overflow,
}

impl HeadErr {
    fn message(&self) -> String {
        match self {
            HeadErr::Malformed(m) => format!("{BAD_HEADER}: {m}"),
            HeadErr::Fortran => "Fortran-order (column-major) arrays are not supported; save a \
                                 C-order array, e.g. with numpy.ascontiguousarray"
                .into(),
            HeadErr::Structured(d) => format!("structured dtype {d} is not supported"),
            HeadErr::Unsupported(d) => format!(
                "unsupported dtype {d}; expected a float (f2, f4, f8), bool or integer array"
            ),
            HeadErr::TooLarge(d) => format!("dimension {d} is too large"),
            HeadErr::Overflow => "the shape's size overflows".into(),
        }
    }
}

/// A Python literal value.
#[derive(Debug)]
enum Lit {
    Str(String),
    /// An integer: its sign, and its magnitude when it fits in u64.
    Int {
        neg: bool,
        mag: Option<u64>,
    },
    Bool(bool),
    None,
    /// A tuple or a list.
    Seq(Vec<Lit>),
    /// A dict: (key, value, the value's source text).
    Dict(Vec<(Lit, Lit, String)>),
}

/// A recursive-descent parser over the header text, nesting bounded by [`MAX_DEPTH`].
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, HeadErr> {
        Err(HeadErr::Malformed(format!("{what} at byte {}", self.i)))
    }

    fn ws(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn value(&mut self) -> Result<Lit, HeadErr> {
        self.ws();
        match self.peek() {
            None => self.err("unexpected end of the header"),
            Some(b'{') => self.nested(|p| p.dict()),
            Some(b'(') => self.nested(|p| p.seq(b')', true)),
            Some(b'[') => self.nested(|p| p.seq(b']', false)),
            Some(b'\'' | b'"') => self.string(),
            Some(b'u' | b'b') if matches!(self.s.get(self.i + 1), Some(b'\'' | b'"')) => {
                self.i += 1;
                self.string()
            }
            Some(b'-' | b'+' | b'0'..=b'9') => self.int(),
            Some(b'A'..=b'Z') => self.keyword(),
            Some(c) => self.err(&format!("unexpected character {:?}", c as char)),
        }
    }

    fn nested(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Lit, HeadErr>,
    ) -> Result<Lit, HeadErr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(&format!("brackets nested more than {MAX_DEPTH} deep"));
        }
        self.i += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    /// After the opening bracket: items separated by commas, an optional trailing comma.
    /// `(x)` is `x`, as in Python.
    fn seq(&mut self, close: u8, paren: bool) -> Result<Lit, HeadErr> {
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                break;
            }
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    comma = true;
                }
                Some(c) if c == close => {
                    self.i += 1;
                    break;
                }
                _ => return self.err("expected ',' or a closing bracket"),
            }
        }
        if paren && !comma && items.len() == 1 {
            return Ok(items.pop().expect("one item"));
        }
        Ok(Lit::Seq(items))
    }

    /// After the `{`: `key: value` pairs separated by commas, an optional trailing comma.
    fn dict(&mut self) -> Result<Lit, HeadErr> {
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                break;
            }
            let k = self.value()?;
            self.ws();
            if self.peek() != Some(b':') {
                return self.err("expected ':' after a dict key");
            }
            self.i += 1;
            self.ws();
            let start = self.i;
            let v = self.value()?;
            let src = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
            items.push((k, v, src));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return self.err("expected ',' or '}' in the dict"),
            }
        }
        Ok(Lit::Dict(items))
    }

    fn string(&mut self) -> Result<Lit, HeadErr> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return self.err("unterminated string"),
                Some(c) if c == quote => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    let known = match self.s.get(self.i + 1) {
                        Some(b'n') => Some(b'\n'),
                        Some(b't') => Some(b'\t'),
                        Some(b'r') => Some(b'\r'),
                        Some(&c @ (b'\\' | b'\'' | b'"')) => Some(c),
                        Some(_) => None,
                        None => return self.err("unterminated string"),
                    };
                    // An unknown escape keeps its backslash; the next character follows.
                    out.push(known.unwrap_or(b'\\'));
                    self.i += if known.is_some() { 2 } else { 1 };
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        Ok(Lit::Str(String::from_utf8_lossy(&out).into_owned()))
    }

    /// A decimal integer with an optional sign and Python 2's `L` suffix.
    fn int(&mut self) -> Result<Lit, HeadErr> {
        let neg = self.peek() == Some(b'-');
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.i += 1;
        }
        let start = self.i;
        let mut mag = Some(0u64);
        while let Some(d @ b'0'..=b'9') = self.peek() {
            mag = mag
                .and_then(|m| m.checked_mul(10))
                .and_then(|m| m.checked_add(u64::from(d - b'0')));
            self.i += 1;
        }
        if self.i == start {
            return self.err("expected digits");
        }
        if matches!(self.peek(), Some(b'L' | b'l')) {
            self.i += 1;
        }
        Ok(Lit::Int { neg, mag })
    }

    fn keyword(&mut self) -> Result<Lit, HeadErr> {
        for (word, lit) in [
            ("True", Lit::Bool(true)),
            ("False", Lit::Bool(false)),
            ("None", Lit::None),
        ] {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(lit);
            }
        }
        self.err("unknown name")
    }
}

/// At most 40 characters of `s`, control characters escaped (for messages).
fn shown(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(40) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if s.chars().count() > 40 {
        out.push_str("...");
    }
    out
}

/// The element type of a numpy type string, if supported: `<f4`, `>i8`, `|u1`, `|b1`, ...
fn type_of(descr: &str) -> Option<ElemType> {
    let b = descr.as_bytes();
    let (order, rest) = match b.first()? {
        c @ (b'<' | b'>' | b'|' | b'=') => (*c, &b[1..]),
        _ => (b'=', b),
    };
    let (&kind, digits) = rest.split_first()?;
    if digits.is_empty() || digits.len() > 2 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let ok = matches!(
        (kind, size),
        (b'f', 2 | 4 | 8) | (b'b', 1) | (b'i' | b'u', 1 | 2 | 4 | 8)
    );
    let big = match order {
        b'>' => true,
        b'<' => false,
        b'=' => cfg!(target_endian = "big"),
        // `|` (byte order not applicable) only fits one-byte types.
        _ if size == 1 => false,
        _ => return None,
    };
    ok.then_some(ElemType { kind, size, big })
}

/// Interprets the header text: the dict, its three keys, the dtype and the shape.
fn interpret(text: &[u8]) -> Result<Head, HeadErr> {
    let bad = |m: &str| HeadErr::Malformed(m.to_string());
    if std::str::from_utf8(text).is_err() {
        return Err(bad("the header is not ASCII or UTF-8 text"));
    }
    let mut p = Parser {
        s: text,
        i: 0,
        depth: 0,
    };
    let top = p.value()?;
    p.ws();
    if p.i != text.len() {
        return p.err("unexpected text after the header dict");
    }
    let Lit::Dict(items) = top else {
        return Err(bad("the header is not a Python dict literal"));
    };
    // The last occurrence of a key wins, as in Python.
    let get = |key: &str| {
        items
            .iter()
            .rev()
            .find(|(k, _, _)| matches!(k, Lit::Str(s) if s == key))
            .map(|(_, v, src)| (v, src))
            .ok_or_else(|| HeadErr::Malformed(format!("the header dict has no '{key}' key")))
    };
    let (descr, descr_src) = get("descr")?;
    let (fortran, _) = get("fortran_order")?;
    let (shape, _) = get("shape")?;
    let Lit::Seq(dims) = shape else {
        return Err(bad("'shape' must be a tuple of integers"));
    };
    let mut raw = Vec::with_capacity(dims.len());
    for d in dims {
        match d {
            Lit::Int { neg: false, mag } => raw.push(*mag),
            Lit::Int { neg: true, mag } if *mag == Some(0) => raw.push(Some(0)),
            Lit::Int { neg: true, .. } => return Err(bad("a dimension of 'shape' is negative")),
            _ => return Err(bad("'shape' must be a tuple of integers")),
        }
    }
    match fortran {
        Lit::Bool(false) => {}
        Lit::Bool(true) => return Err(HeadErr::Fortran),
        _ => return Err(bad("'fortran_order' must be True or False")),
    }
    let descr = match descr {
        Lit::Str(s) => s,
        Lit::Seq(_) | Lit::Dict(_) => return Err(HeadErr::Structured(shown(descr_src))),
        _ => return Err(bad("'descr' must be a type string")),
    };
    let ty = type_of(descr).ok_or_else(|| HeadErr::Unsupported(shown(descr)))?;
    let mut shape = Vec::with_capacity(raw.len());
    let mut count: usize = 1;
    for (d, dim) in raw.into_iter().zip(dims) {
        let d = d
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| HeadErr::TooLarge(int_text(dim)))?;
        count = count.checked_mul(d).ok_or(HeadErr::Overflow)?;
        shape.push(d);
    }
    let need = (count as u64)
        .checked_mul(ty.size as u64)
        .ok_or(HeadErr::Overflow)?;
    Ok(Head {
        shape,
        descr: descr.clone(),
        ty,
        count,
        need,
    })
}

/// An integer literal for a message (`> 18446744073709551615` when it does not fit in u64).
fn int_text(l: &Lit) -> String {
    match l {
        Lit::Int { mag: Some(m), .. } => m.to_string(),
        _ => format!("> {}", u64::MAX),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// Element types this module writes.
pub trait Elem: Pod {
    /// The numpy type string.
    const DESCR: &'static str;
    /// The value with its bytes in little-endian order (a no-op on little-endian machines).
    fn to_le(self) -> Self;
}

impl Elem for f32 {
    const DESCR: &'static str = "<f4";
    fn to_le(self) -> Self {
        f32::from_bits(self.to_bits().to_le())
    }
}

impl Elem for f64 {
    const DESCR: &'static str = "<f8";
    fn to_le(self) -> Self {
        f64::from_bits(self.to_bits().to_le())
    }
}

impl Elem for f16 {
    const DESCR: &'static str = "<f2";
    fn to_le(self) -> Self {
        f16::from_bits(self.to_bits().to_le())
    }
}

impl Elem for u8 {
    const DESCR: &'static str = "|u1";
    fn to_le(self) -> Self {
        self
    }
}

/// The preamble and header of a version 1.0 file holding `shape` of `T`.
fn header<T: Elem>(shape: &[usize]) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        shape_str(shape)
    );
    // magic (6) + version (2) + header length (2) + dict + padding + '\n' = a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let hlen = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + hlen);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(hlen as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Writes a `.npy` file holding `data` with `shape` to `w`: the header, then the elements
/// straight from the slice (through a small buffer only on big-endian machines).
fn write_npy_to<T: Elem>(w: &mut impl Write, shape: &[usize], data: &[T]) -> std::io::Result<()> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    w.write_all(&header::<T>(shape))?;
    if cfg!(target_endian = "little") {
        w.write_all(bytemuck::cast_slice(data))
    } else {
        for part in data.chunks(8192) {
            let le: Vec<T> = part.iter().map(|v| v.to_le()).collect();
            w.write_all(bytemuck::cast_slice(&le))?;
        }
        Ok(())
    }
}

/// The bytes of a `.npy` file (version 1.0) holding `data` with `shape`.
#[cfg(test)]
pub fn encode<T: Elem>(shape: &[usize], data: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + std::mem::size_of_val(data));
    write_npy_to(&mut out, shape, data).expect("writing to a Vec cannot fail");
    out
}

/// An output file that appears whole or not at all.
///
/// [`AtomicFile::create`] opens a temporary file next to the destination at once (so that an
/// unwritable directory is reported before any work is done); [`AtomicFile::write_all`] or
/// [`AtomicFile::write_npy`] write it and flush it to disk; [`AtomicFile::commit`] renames it
/// over the destination. Dropped without a commit, it removes the temporary file.
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

    fn write_with(
        &mut self,
        f: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<(), Failure> {
        let dest = &self.dest;
        let file = self.file.as_mut().ok_or_else(|| {
            usage(format!(
                "cannot write {}: already committed",
                dest.display()
            ))
        })?;
        f(file)
            .and_then(|_| file.sync_all())
            .map_err(|e| usage(format!("cannot write {}: {e}", dest.display())))
    }

    /// Writes `bytes` to the temporary file and flushes it to disk (not yet visible).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.write_with(|f| f.write_all(bytes))
    }

    /// Writes a `.npy` file of `data` with `shape` straight from the slice, and flushes it to
    /// disk (not yet visible).
    pub fn write_npy<T: Elem>(&mut self, shape: &[usize], data: &[T]) -> Result<(), Failure> {
        self.write_with(|f| write_npy_to(f, shape, data))
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

/// Renames several written files into place, once every one of them was written and flushed.
/// (A crash between two renames can still leave the first one in place; each file on its own
/// is always complete.)
pub fn commit_all(files: Vec<AtomicFile>) -> Result<(), Failure> {
    for f in files {
        f.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The reader on hostile input: random bytes, every truncation of valid files, corrupted
    //! headers, random dtypes and shapes (huge ones included). Each must give an error or the
    //! right array, never a panic; a few thousand cases in all, well under a second.
    use super::*;
    use proptest::prelude::*;

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

    /// A file written without this module's writer: preamble (any version), `dict`, data.
    fn file(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
        let mut h = dict.to_string();
        let pre = if version == 1 { 10 } else { 12 };
        while !(pre + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn dict(descr: &str, shape: &str) -> String {
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
    }

    fn err_of(bytes: &[u8]) -> String {
        match parse(Path::new("t.npy"), bytes) {
            Ok(a) => panic!("expected an error, got {:?} {:?}", a.shape, a.descr),
            Err(f) => {
                assert_eq!(f.code, 2, "{}", f.msg);
                assert!(!f.msg.contains('\n'), "one line: {}", f.msg);
                f.msg
            }
        }
    }

    /// The elements as f64 (integers up to 2^53 exactly), whatever the variant.
    fn values(d: &Data) -> Vec<f64> {
        match d {
            Data::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
            Data::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Int(v) => v.iter().map(|&x| x as f64).collect(),
            Data::Uint(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Decodes one element of a supported type string by hand (the test's own decoder).
    fn decode_one(kind: char, size: usize, big: bool, b: &[u8]) -> f64 {
        let mut a = [0u8; 8];
        a[..size].copy_from_slice(b);
        if big {
            a[..size].reverse();
        }
        let u = u64::from_le_bytes(a);
        let sign_extend = |bits: u32| ((u << (64 - bits)) as i64 >> (64 - bits)) as f64;
        match (kind, size) {
            ('f', 2) => f16::from_bits(u as u16).to_f64(),
            ('f', 4) => f32::from_bits(u as u32) as f64,
            ('f', 8) => f64::from_bits(u),
            ('i', s) => sign_extend(8 * s as u32),
            _ => u as f64,
        }
    }

    fn same(a: f64, b: f64) -> bool {
        a == b || (a.is_nan() && b.is_nan())
    }

    /// Every supported dtype in both byte orders, through `read` (a real file) and `parse`.
    #[test]
    fn every_dtype_both_byte_orders() {
        let dir = tempfile::tempdir().unwrap();
        for (i, t) in [
            "f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
        ]
        .iter()
        .enumerate()
        {
            let (kind, size) = (t.as_bytes()[0] as char, (t.as_bytes()[1] - b'0') as usize);
            let orders: &[char] = if size == 1 { &['|'] } else { &['<', '>'] };
            for &o in orders {
                let raw: Vec<u8> = (0..6 * size).map(|k| (k * 37 + i * 11 + 3) as u8).collect();
                let bytes = file(1, &dict(&format!("{o}{t}"), "(2, 3)"), &raw);
                let p = dir
                    .path()
                    .join(format!("{o}{t}.npy").replace(['<', '>', '|'], "_"));
                std::fs::write(&p, &bytes).unwrap();
                for a in [read(&p).unwrap(), parse(&p, &bytes).unwrap()] {
                    assert_eq!(a.shape, [2, 3]);
                    let got = values(&a.data);
                    for (k, g) in got.iter().enumerate() {
                        let want = decode_one(kind, size, o == '>', &raw[k * size..][..size]);
                        assert!(same(*g, want), "{o}{t}[{k}]: {g} vs {want}");
                    }
                }
            }
        }
        // bool: 0/1 only.
        let ok = parse(Path::new("b"), &file(1, &dict("|b1", "(3,)"), &[1, 0, 1])).unwrap();
        assert!(matches!(ok.data, Data::Bool(ref v) if v == &[true, false, true]));
        let msg = err_of(&file(1, &dict("|b1", "(3,)"), &[1, 0, 2]));
        assert!(msg.contains("bool element 2 holds byte 2"), "{msg}");
        // Versions 2 and 3 (u32 header length), a Python 2 long, extra keys, double quotes.
        for v in [2, 3] {
            let d = "{\"descr\": \"<f4\", \"shape\": (2L,), \"fortran_order\": False, \"x\": None}";
            let a = parse(Path::new("v"), &file(v, d, &[0, 0, 128, 63, 0, 0, 0, 64])).unwrap();
            assert_eq!(values(&a.data), [1.0, 2.0]);
        }
        // A directory is not a file.
        let msg = read(dir.path()).unwrap_err().msg;
        assert!(msg.contains("directory"), "{msg}");
    }

    /// The messages of the README's table: each names its problem.
    #[test]
    fn each_fault_is_named() {
        let good = file(1, &dict("<f4", "(2, 3)"), &[0; 24]);
        let hdr = good.len() - 24;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"PK\x03\x04 a zip".to_vec(), "not a .npy file"),
            (b"".to_vec(), "not a .npy file"),
            (good[..7].to_vec(), "inside the preamble"),
            (good[..9].to_vec(), "header length"),
            (good[..40].to_vec(), "the file ends after"),
            (
                good[..hdr + 20].to_vec(),
                "truncated: shape (2, 3) of <f4 needs 24 data bytes",
            ),
            (
                file(
                    1,
                    "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }",
                    &[0; 8],
                ),
                "Fortran",
            ),
            (
                file(1, &dict("<c8", "(2,)"), &[0; 16]),
                "unsupported dtype <c8",
            ),
            (
                file(1, &dict("|f4", "(2,)"), &[0; 8]),
                "unsupported dtype |f4",
            ),
            (
                file(1, &dict("<U3", "(2,)"), &[0; 24]),
                "unsupported dtype <U3",
            ),
            (
                file(
                    1,
                    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
                    &[0; 8],
                ),
                "structured dtype [('a', '<f4')]",
            ),
            (file(1, &dict("<f4", "(-1, 3)"), &[]), "negative"),
            (
                file(1, &dict("<f4", "(99999999999999999999,)"), &[]),
                "too large",
            ),
            (
                file(1, &dict("<f4", "(4294967296, 4294967296)"), &[]),
                "overflows",
            ),
            (
                file(1, &dict("<f4", "(3037000499, 3037000499)"), &[]),
                "overflows",
            ),
            (
                file(1, "{'descr': '<f4', 'shape': (2,), }", &[0; 8]),
                "no 'fortran_order' key",
            ),
            (
                file(
                    1,
                    "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }",
                    &[0; 8],
                ),
                "True or False",
            ),
            (
                file(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': 2, }",
                    &[0; 8],
                ),
                "tuple",
            ),
            (file(1, "['descr', '<f4']", &[0; 8]), "not a Python dict"),
            (file(1, "{'descr': '<f4' 'x'}", &[]), "expected ','"),
            (file(1, "{'descr': '<f4", &[]), "unterminated string"),
            (
                file(1, "{'descr': '<f4', } junk", &[]),
                "after the header dict",
            ),
            (
                file(4, &dict("<f4", "(2,)"), &[0; 8]),
                "unsupported format version 4.0",
            ),
            (
                file(1, &format!("{}{}", "(".repeat(5000), ")".repeat(5000)), &[]),
                "nested",
            ),
        ];
        for (bytes, want) in cases {
            let msg = err_of(&bytes);
            assert!(msg.contains(want), "{want:?} not in {msg:?}");
            assert!(msg.starts_with("t.npy: "), "{msg}");
        }
        // A header length no file could back: refused before anything is allocated.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&[2, 0, 0xff, 0xff, 0xff, 0xff]);
        assert!(err_of(&huge).contains("implausible"));
        // Extra bytes after the data are ignored (with a warning), not an error.
        let mut extra = good.clone();
        extra.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse(Path::new("e"), &extra).unwrap().shape, [2, 3]);
    }

    /// Every prefix of a valid file is an error (never a panic, never a short array).
    #[test]
    fn truncated_at_every_length() {
        for (descr, elem) in [("<f4", 4), (">f2", 2), ("|u1", 1), ("<i2", 2), ("|b1", 1)] {
            let data: Vec<u8> = (0..5 * 3 * elem).map(|k| (k % 2) as u8).collect();
            let bytes = file(1, &dict(descr, "(5, 3)"), &data);
            for k in 0..bytes.len() {
                err_of(&bytes[..k]);
            }
            assert_eq!(parse(Path::new("f"), &bytes).unwrap().shape, [5, 3]);
        }
    }

    /// What a successful parse must satisfy whatever the input.
    fn consistent(a: &Array) -> Result<(), TestCaseError> {
        let n: usize = a.shape.iter().product();
        prop_assert_eq!(values(&a.data).len(), n);
        Ok(())
    }

    /// A type string's parts: byte order, kind, size (valid and invalid ones).
    fn descr_strategy() -> impl Strategy<Value = (&'static str, &'static str, &'static str)> {
        let order = prop::sample::select(vec!["<", ">", "|", "=", ""]);
        let kind = prop::sample::select(vec!["f", "i", "u", "b", "c", "U", "S", "O", "M", "?"]);
        let size = prop::sample::select(vec!["1", "2", "4", "8", "16", "3", "", "0"]);
        (order, kind, size)
    }

    /// The test's own list of what is supported: (kind, size, big-endian).
    fn expected_type(order: &str, kind: &str, size: &str) -> Option<(char, usize, bool)> {
        let ok = matches!(
            (kind, size),
            ("f", "2" | "4" | "8") | ("i" | "u", "1" | "2" | "4" | "8") | ("b", "1")
        );
        let size: usize = size.parse().ok()?;
        (ok && (order != "|" || size == 1)).then(|| {
            let big = order == ">" || (order == "=" && cfg!(target_endian = "big"));
            (kind.chars().next().unwrap_or('?'), size, big)
        })
    }

    fn shape_text(shape: &[u64]) -> String {
        match shape {
            [] => "()".to_string(),
            [a] => format!("({a},)"),
            _ => {
                let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
                format!("({})", dims.join(", "))
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes at all.
        #[test]
        fn random_bytes(
            magic in any::<bool>(),
            tail in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            // Half the time behind the magic string, so that the preamble is exercised too.
            let mut bytes = if magic { MAGIC.to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&tail);
            if let Ok(a) = parse(Path::new("r"), &bytes) {
                consistent(&a)?;
            }
        }

        /// A valid preamble followed by random header text and data: exercises the parser.
        #[test]
        fn random_header_text(
            text in "[{}()\\[\\]'\",: 0-9a-zA-Z<>|\\\\-]{0,80}",
            data in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            if let Ok(a) = parse(Path::new("h"), &file(1, &text, &data)) {
                consistent(&a)?;
            }
        }

        /// A valid file with one header byte (preamble included) replaced.
        #[test]
        fn corrupted_header_byte(
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            shape in prop::collection::vec(0usize..4, 0..3),
        ) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 + 0.5).collect();
            let mut bytes = encode(&shape, &data);
            let header_len = bytes.len() - 4 * n;
            let i = pos.index(header_len);
            bytes[i] = byte;
            if let Ok(a) = parse(Path::new("c"), &bytes) {
                consistent(&a)?;
                // If it still says <f4 with the same shape and the header length is intact,
                // the values are the ones written.
                if i >= 10 && a.shape == shape && a.descr == "<f4" {
                    let want: Vec<f64> = data.iter().map(|&v| v as f64).collect();
                    prop_assert_eq!(values(&a.data), want);
                }
            }
        }

        /// Random type strings and shapes (huge dimensions included), with exactly the data
        /// the header asks for when that is small: the right array or a named error.
        #[test]
        fn random_dtypes_and_shapes(
            (order, kind, size) in descr_strategy(),
            shape in prop::collection::vec(
                prop_oneof![4 => 0u64..5, 1 => any::<u64>(), 1 => Just(1u64 << 32)], 0..4),
            fill in any::<u8>(),
        ) {
            let descr = format!("{order}{kind}{size}");
            let shape_s = shape_text(&shape);
            let ty = expected_type(order, kind, size);
            let count = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
            let elem = ty.map_or(1, |t| t.1 as u64);
            let need = count.and_then(|c| c.checked_mul(elem)).filter(|&b| b <= 4096);
            let data: Vec<u8> =
                (0..need.unwrap_or(16)).map(|k| fill.wrapping_add(k as u8)).collect();
            let r = parse(Path::new("d"), &file(1, &dict(&descr, &shape_s), &data));
            match (ty, need) {
                (Some((k, sz, big)), Some(_)) if k != 'b' || data.iter().all(|&b| b <= 1) => {
                    let a = r.map_err(|f| TestCaseError::fail(f.msg))?;
                    consistent(&a)?;
                    let shape_usize: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                    prop_assert_eq!(&a.shape, &shape_usize);
                    for (i, g) in values(&a.data).iter().enumerate() {
                        let want = decode_one(k, sz, big, &data[i * sz..][..sz]);
                        prop_assert!(same(*g, want), "{}[{}]: {} vs {}", descr, i, g, want);
                    }
                }
                _ => prop_assert!(r.is_err(), "{} {} should fail", descr, shape_s),
            }
        }
    }

    /// Written files read back bit for bit (NaN payloads and signed zeros included), and the
    /// writer's output is what numpy expects: version 1.0, data on a 64-byte boundary.
    #[test]
    fn writer_round_trips_every_bit_pattern() {
        let v: Vec<f32> = [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ]
        .into_iter()
        .chain([
            f32::from_bits(0x7fc0_0001),
            f32::from_bits(0xffff_ffff),
            1e-45,
        ])
        .collect();
        let a = parse(Path::new("w"), &encode(&[2, 4], &v)).unwrap();
        let Data::F32(w) = a.data else { panic!() };
        assert_eq!(
            w.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.npy");
        let mut f = AtomicFile::create(&p).unwrap();
        f.write_npy(&[2, 4], &v).unwrap();
        assert!(!p.exists(), "not visible before the commit");
        commit_all(vec![f]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), encode(&[2, 4], &v));
        // Dropped without a commit: no destination, no temporary file.
        let q = dir.path().join("h.npy");
        let mut f = AtomicFile::create(&q).unwrap();
        f.write_npy(&[8], &v).unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
