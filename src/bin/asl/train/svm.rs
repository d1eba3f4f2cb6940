//! The extreme-classification text format (sparse multi-label data), as in
//! `../shared/data/debtags/`:
//!
//! ```text
//! label,label,... index:value index:value ...
//! ```
//!
//! - One sample a line; labels and feature indices are 0-based integers.
//! - A sample with no labels starts with whitespace (` 3:0.5 9:1`), or is features alone
//!   (`3:0.5 9:1`); a line of whitespace alone is a sample with no labels and no features.
//! - An optional first line `points features labels` (three integers, the Extreme Classification
//!   Repository's header) bounds the indices and is checked against the number of lines.
//! - Feature indices need not be sorted; a repeated index adds its values (the linear model sums
//!   them). A repeated label counts once. Values must be finite.
//! - Refused, with the 1-based line number: an empty line, a bad label list (`1,,2`, `1,`,
//!   `-1`, `x`), a bad feature (`3`, `3:`, `:1`, `-3:1`, `3:nan`), an index beyond the header's
//!   bounds, a line that is not UTF-8.
//!
//! This file depends on nothing else in the binary so that the tests can include it.

use std::fmt;

/// The optional header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Number of samples the file declares.
    pub points: usize,
    /// Feature indices are below this.
    pub features: usize,
    /// Label indices are below this.
    pub labels: usize,
}

/// A parsed file: labels and features in compressed sparse row form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// The header line, if the file has one.
    pub header: Option<Header>,
    /// Row `r`'s labels are `labels[label_ptr[r]..label_ptr[r + 1]]` (sorted, distinct).
    pub label_ptr: Vec<usize>,
    /// Label indices.
    pub labels: Vec<u32>,
    /// Row `r`'s features are `feat_idx/feat_val[feat_ptr[r]..feat_ptr[r + 1]]` (file order).
    pub feat_ptr: Vec<usize>,
    /// Feature indices.
    pub feat_idx: Vec<u32>,
    /// Feature values.
    pub feat_val: Vec<f32>,
}

/// A refused line: its 1-based number and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number (0 for a whole-file problem such as a wrong point count).
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.msg)
        } else {
            write!(f, "line {}: {}", self.line, self.msg)
        }
    }
}

impl Dataset {
    /// Number of samples.
    pub fn rows(&self) -> usize {
        self.label_ptr.len().saturating_sub(1)
    }

    /// Row `r`'s labels.
    pub fn labels_of(&self, r: usize) -> &[u32] {
        &self.labels[self.label_ptr[r]..self.label_ptr[r + 1]]
    }

    /// Row `r`'s feature indices and values.
    pub fn features_of(&self, r: usize) -> (&[u32], &[f32]) {
        let span = self.feat_ptr[r]..self.feat_ptr[r + 1];
        (&self.feat_idx[span.clone()], &self.feat_val[span])
    }

    /// The 1-based line of row `r` in the file.
    pub fn line_of(&self, r: usize) -> usize {
        r + 1 + usize::from(self.header.is_some())
    }

    /// The largest label index, if any row has a label.
    pub fn max_label(&self) -> Option<u32> {
        self.labels.iter().copied().max()
    }
}

fn bad(line: usize, msg: impl Into<String>) -> ParseError {
    ParseError {
        line,
        msg: msg.into(),
    }
}

/// Shortens a token for a message.
fn show(tok: &str) -> String {
    if tok.chars().count() > 40 {
        format!("{:?}...", tok.chars().take(40).collect::<String>())
    } else {
        format!("{tok:?}")
    }
}

/// A 0-based index: plain decimal digits (no sign, no spaces) that fit a u32.
fn index(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The header, when `line` is one: exactly three whitespace-separated decimal integers.
fn header(line: &str) -> Option<Header> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let toks: Vec<&str> = line.split_whitespace().collect();
    if toks.len() != 3 || !toks.iter().all(|t| t.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let n: Vec<usize> = toks.iter().map(|t| t.parse().ok()).collect::<Option<_>>()?;
    Some(Header {
        points: n[0],
        features: n[1],
        labels: n[2],
    })
}

/// Parses the whole text of a file.
pub fn parse(text: &[u8]) -> Result<Dataset, ParseError> {
    let mut ds = Dataset {
        label_ptr: vec![0],
        feat_ptr: vec![0],
        ..Default::default()
    };
    // A final newline ends the last line; it does not start an empty one.
    if text.is_empty() {
        return Ok(ds);
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut row_labels: Vec<u32> = Vec::new();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| bad(n, "not UTF-8 text"))?;

        // 1. The header, only as the first line.
        if n == 1 {
            if let Some(h) = header(line) {
                ds.header = Some(h);
                continue;
            }
        }
        if line.is_empty() {
            return Err(bad(
                n,
                "empty line (a sample with no labels and no features is a single space)",
            ));
        }

        // 2. The label list: the first token, unless the line starts with whitespace or the
        //    first token is already a feature.
        let mut toks = line.split_whitespace().peekable();
        row_labels.clear();
        let has_labels =
            !line.starts_with(char::is_whitespace) && toks.peek().is_some_and(|t| !t.contains(':'));
        if has_labels {
            let list = toks.next().unwrap_or_default();
            for lab in list.split(',') {
                let v = index(lab).ok_or_else(|| {
                    bad(
                        n,
                        format!(
                            "bad label {} in label list {} (expected 0-based integers \
                             separated by commas)",
                            show(lab),
                            show(list)
                        ),
                    )
                })?;
                if let Some(h) = ds.header {
                    if v as usize >= h.labels {
                        return Err(bad(
                            n,
                            format!("label {v} is not below the header's {} labels", h.labels),
                        ));
                    }
                }
                row_labels.push(v);
            }
            row_labels.sort_unstable();
            row_labels.dedup();
        }
        ds.labels.extend_from_slice(&row_labels);
        ds.label_ptr.push(ds.labels.len());

        // 3. Features `index:value`.
        for tok in toks {
            let (i_s, v_s) = tok.split_once(':').ok_or_else(|| {
                bad(
                    n,
                    format!("bad feature {} (expected index:value)", show(tok)),
                )
            })?;
            let idx = index(i_s).ok_or_else(|| {
                bad(
                    n,
                    format!(
                        "bad feature {}: the index must be a 0-based integer",
                        show(tok)
                    ),
                )
            })?;
            let val: f32 = v_s
                .parse()
                .ok()
                .filter(|v: &f32| v.is_finite())
                .ok_or_else(|| {
                    bad(
                        n,
                        format!(
                            "bad feature {}: the value must be a finite number",
                            show(tok)
                        ),
                    )
                })?;
            if let Some(h) = ds.header {
                if idx as usize >= h.features {
                    return Err(bad(
                        n,
                        format!(
                            "feature index {idx} is not below the header's {} features",
                            h.features
                        ),
                    ));
                }
            }
            ds.feat_idx.push(idx);
            ds.feat_val.push(val);
        }
        ds.feat_ptr.push(ds.feat_idx.len());
    }
    if let Some(h) = ds.header {
        if h.points != ds.rows() {
            return Err(bad(
                0,
                format!(
                    "the header declares {} samples but the file has {}",
                    h.points,
                    ds.rows()
                ),
            ));
        }
    }
    Ok(ds)
}
