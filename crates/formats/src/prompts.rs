//! The prompt CSV: UTF-8, a header row, required columns `id` (unique, non-empty) and
//! `prompt`; every other column is kept, in order, and written back untouched.
//!
//! Errors locate problems by editor line number for files (`line 7`, header = line 1, the
//! line where a multi-line quoted record starts) and by 1-based data row for tables built
//! in memory (`row 3`); see [`crate::error::Loc`]. Every row needs a non-empty prompt (white
//! space alone counts as empty), in every tool. A leading UTF-8 byte-order mark (as
//! written by Excel) is stripped. A file with a header and no data rows is a valid, empty
//! table: whether that is acceptable is the caller's decision.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::atomic::{in_label, is_dash, Outputs};
use crate::error::Loc;
use crate::Error;

/// The required id column.
pub const ID: &str = "id";
/// The required prompt column.
pub const PROMPT: &str = "prompt";

/// A validated prompt table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTable {
    /// Where it came from, as used in messages (`<stdin>` for `-`).
    pub path: String,
    /// Header cells, in file order.
    pub headers: Vec<String>,
    /// Data rows; each has exactly `headers.len()` cells.
    pub rows: Vec<Vec<String>>,
    id_col: usize,
    prompt_col: usize,
}

impl PromptTable {
    /// Reads and validates a prompt CSV; `-` reads stdin.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let label = in_label(path);
        let mut bytes = Vec::new();
        if is_dash(path) {
            io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(&label, "cannot read", e))?;
        } else {
            bytes = std::fs::read(path).map_err(|e| Error::io(&label, "cannot read", e))?;
        }
        Self::from_bytes(&label, &bytes)
    }

    /// Parses CSV bytes; `path_label` names the source in messages.
    pub fn from_bytes(path_label: &str, bytes: &[u8]) -> Result<Self, Error> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let empty = || Error::EmptyFile {
            path: path_label.to_string(),
            expected: format!("'{ID}' and '{PROMPT}'"),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(empty());
        }
        check_quotes(path_label, bytes)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true) // ragged rows get our own message below
            .from_reader(bytes);
        let mut records = reader.byte_records();
        let header = match records.next() {
            None => return Err(empty()),
            Some(r) => r.map_err(|e| csv_error(path_label, e))?,
        };
        let headers = decode_record(path_label, &header, Loc::Line(1), None)?;
        let (id_col, prompt_col) = check_headers(path_label, &headers)?;

        let mut rows = Vec::new();
        let mut seen: HashMap<String, Loc> = HashMap::new();
        for rec in records {
            let rec = rec.map_err(|e| csv_error(path_label, e))?;
            let at = Loc::Line(rec.position().map_or(0, |p| line_at(bytes, p.byte())));
            let row = decode_record(path_label, &rec, at, Some(&headers))?;
            check_row(
                path_label,
                &row,
                at,
                (headers.len(), id_col, prompt_col),
                &mut seen,
            )?;
            rows.push(row);
        }
        Ok(PromptTable {
            path: path_label.to_string(),
            headers,
            rows,
            id_col,
            prompt_col,
        })
    }

    /// Builds a table in memory, with the same validation as [`PromptTable::read`]
    /// (errors locate rows as `row N`, 1-based data rows).
    pub fn from_rows(
        path_label: &str,
        headers: Vec<String>,
        rows: Vec<Vec<String>>,
    ) -> Result<Self, Error> {
        let (id_col, prompt_col) = check_headers(path_label, &headers)?;
        let mut seen = HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            check_row(
                path_label,
                row,
                Loc::Row(i + 1),
                (headers.len(), id_col, prompt_col),
                &mut seen,
            )?;
        }
        Ok(PromptTable {
            path: path_label.to_string(),
            headers,
            rows,
            id_col,
            prompt_col,
        })
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The id of row `i` (0-based). Panics when out of range, like slice indexing.
    pub fn id(&self, i: usize) -> &str {
        &self.rows[i][self.id_col]
    }

    /// The prompt of row `i` (0-based). Panics when out of range.
    pub fn prompt(&self, i: usize) -> &str {
        &self.rows[i][self.prompt_col]
    }

    /// Index of a column by exact name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// Cell of row `i` in column `name`; `None` when the column does not exist.
    pub fn get(&self, i: usize, name: &str) -> Option<&str> {
        self.column(name).map(|c| self.rows[i][c].as_str())
    }

    /// Iterator over the ids in row order.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.rows.iter().map(|r| r[self.id_col].as_str())
    }

    /// `sha256:<hex>` of the ids joined with `\n` in row order: identifies the prompt set
    /// (and its order) in the metadata of every file derived from it.
    pub fn ids_hash(&self) -> String {
        let mut h = Sha256::new();
        for (i, id) in self.ids().enumerate() {
            if i > 0 {
                h.update(b"\n");
            }
            h.update(id.as_bytes());
        }
        format!("sha256:{}", hex(&h.finalize()))
    }

    /// Per row, a short digest of its id and prompt text (12 hex digits of the sha256 of
    /// `id`, a unit separator and `prompt`): recorded in every file derived from the table,
    /// so that two files can be checked to hold the same prompts, in the same order, and the
    /// first row that differs named.
    pub fn row_hashes(&self) -> Vec<String> {
        (0..self.len())
            .map(|i| {
                let mut h = Sha256::new();
                h.update(self.id(i).as_bytes());
                h.update(b"\x1f");
                h.update(self.prompt(i).as_bytes());
                hex(&h.finalize()[..6])
            })
            .collect()
    }

    /// `sha256:<hex>` of the ids and prompt texts in row order (of [`PromptTable::row_hashes`]
    /// joined with `,`): two tables with the same ids but any other prompt text differ.
    pub fn prompts_hash(&self) -> String {
        format!(
            "sha256:{}",
            hex(&Sha256::digest(self.row_hashes().join(",").as_bytes()))
        )
    }

    /// Row indices, in file order, whose `category` is one of `categories` (every row when
    /// `None`), keeping at most the first `per_category` of each category (all when `None`).
    /// Naming a category no row has, or selecting by category in a table without that
    /// column, is an error naming the file (and the category).
    pub fn rows_by_category(
        &self,
        categories: Option<&[String]>,
        per_category: Option<usize>,
    ) -> Result<Vec<usize>, Error> {
        const COLUMN: &str = "category";
        if categories.is_none() && per_category.is_none() {
            return Ok((0..self.len()).collect());
        }
        let Some(col) = self.column(COLUMN) else {
            return Err(Error::MissingColumn {
                path: self.path.clone(),
                column: COLUMN.into(),
                found: self.headers.join(","),
            });
        };
        let cat = |i: usize| self.rows[i][col].as_str();
        for c in categories.unwrap_or(&[]) {
            if !(0..self.len()).any(|i| cat(i) == c) {
                return Err(Error::NoRowWith {
                    path: self.path.clone(),
                    column: COLUMN.into(),
                    value: c.clone(),
                });
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        Ok((0..self.len())
            .filter(|&i| categories.is_none_or(|cs| cs.iter().any(|c| c == cat(i))))
            .filter(|&i| {
                let n = seen.entry(cat(i)).or_insert(0);
                *n += 1;
                per_category.is_none_or(|k| *n <= k)
            })
            .collect())
    }

    /// The request each row asks, what an answer is judged against: the prompt of the `raw`
    /// row of the same `behaviour_id` when the table has one (the request without its
    /// jailbreak wrapper, and not reversed as `flip` writes it), else the row's own prompt.
    pub fn requests(&self) -> Vec<String> {
        let get = |i: usize, c: &str| self.get(i, c).unwrap_or("");
        let raw: HashMap<&str, &str> = (0..self.len())
            .filter(|&i| !get(i, "behaviour_id").is_empty() && get(i, "category") == "raw")
            .map(|i| (get(i, "behaviour_id"), self.prompt(i)))
            .collect();
        (0..self.len())
            .map(|i| {
                let b = get(i, "behaviour_id");
                raw.get(b).copied().unwrap_or(self.prompt(i)).to_string()
            })
            .collect()
    }

    /// A new table with the given rows (0-based, in the given order). Panics on an index out
    /// of range; repeating an index would repeat an id, so it panics too.
    pub fn select(&self, idx: &[usize]) -> PromptTable {
        let mut seen = std::collections::HashSet::new();
        let rows = idx
            .iter()
            .map(|&i| {
                assert!(
                    seen.insert(i),
                    "PromptTable::select: row {i} selected twice"
                );
                self.rows[i].clone()
            })
            .collect();
        PromptTable {
            rows,
            ..self.clone_empty()
        }
    }

    fn clone_empty(&self) -> PromptTable {
        PromptTable {
            path: self.path.clone(),
            headers: self.headers.clone(),
            rows: Vec::new(),
            id_col: self.id_col,
            prompt_col: self.prompt_col,
        }
    }

    /// Writes the table as CSV, atomically (`-` = stdout).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        self.write_with(path, &[], &[])
    }

    /// Writes headers + extra column names, each row + its extra values
    /// (`extra[i].len() == extra_headers.len()`), atomically (`-` = stdout). If an extra
    /// header already exists in the table, its values are replaced (column kept in place)
    /// instead of duplicated.
    pub fn write_with(
        &self,
        path: &Path,
        extra_headers: &[&str],
        extra: &[Vec<String>],
    ) -> Result<(), Error> {
        let mut outs = Outputs::new();
        self.stage_with(&mut outs, path, extra_headers, extra)?;
        outs.commit()
    }

    /// [`PromptTable::write_with`] into a run's output set: the file appears when the set
    /// is committed.
    pub fn stage_with(
        &self,
        outs: &mut Outputs,
        path: &Path,
        extra_headers: &[&str],
        extra: &[Vec<String>],
    ) -> Result<(), Error> {
        let bytes = self.to_csv_with(&crate::atomic::out_label(path), extra_headers, extra)?;
        outs.stage(path, |w: &mut dyn Write| w.write_all(&bytes))
    }

    /// The CSV bytes [`PromptTable::write_with`] writes; `label` names the output in
    /// messages.
    pub fn to_csv_with(
        &self,
        label: &str,
        extra_headers: &[&str],
        extra: &[Vec<String>],
    ) -> Result<Vec<u8>, Error> {
        let label = label.to_string();
        if !extra_headers.is_empty() && extra.len() != self.rows.len() {
            return Err(Error::invalid(
                &label,
                format!(
                    "{} rows of extra values for a table of {} rows",
                    extra.len(),
                    self.rows.len()
                ),
            ));
        }
        // Where each extra column lands: an existing column, or appended.
        let mut headers = self.headers.clone();
        let mut target = Vec::with_capacity(extra_headers.len());
        for (k, h) in extra_headers.iter().enumerate() {
            if extra_headers[..k].contains(h) {
                return Err(Error::invalid(
                    &label,
                    format!("extra column '{h}' given twice"),
                ));
            }
            if *h == ID {
                return Err(Error::invalid(&label, "the 'id' column cannot be replaced"));
            }
            match headers.iter().position(|x| x == h) {
                Some(c) => target.push(c),
                None => {
                    target.push(headers.len());
                    headers.push(h.to_string());
                }
            }
        }
        for (i, values) in extra.iter().enumerate() {
            if values.len() != extra_headers.len() {
                return Err(Error::invalid(
                    &label,
                    format!(
                        "row {}: {} extra values for {} extra columns",
                        i + 1,
                        values.len(),
                        extra_headers.len()
                    ),
                ));
            }
        }

        let mut buf = Vec::new();
        {
            let mut out = csv::Writer::from_writer(&mut buf);
            out.write_record(&headers)
                .map_err(|e| csv_error(&label, e))?;
            let mut cells: Vec<&str> = Vec::with_capacity(headers.len());
            for (i, row) in self.rows.iter().enumerate() {
                cells.clear();
                cells.extend(row.iter().map(String::as_str));
                cells.resize(headers.len(), "");
                if let Some(values) = extra.get(i) {
                    for (&c, v) in target.iter().zip(values) {
                        cells[c] = v;
                    }
                }
                out.write_record(&cells).map_err(|e| csv_error(&label, e))?;
            }
            out.flush()
                .map_err(|e| Error::io(&label, "cannot write", e))?;
        }
        Ok(buf)
    }
}

fn check_headers(path: &str, headers: &[String]) -> Result<(usize, usize), Error> {
    for (j, h) in headers.iter().enumerate() {
        if let Some(k) = headers[..j].iter().position(|x| x == h) {
            return Err(Error::DuplicateColumn {
                path: path.to_string(),
                column: h.clone(),
                first: k + 1,
                second: j + 1,
            });
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::MissingColumn {
                path: path.to_string(),
                column: name.to_string(),
                found: headers.join(", "),
            })
    };
    Ok((find(ID)?, find(PROMPT)?))
}

/// `cols` is (number of columns, id column, prompt column).
fn check_row(
    path: &str,
    row: &[String],
    at: Loc,
    (n_cols, id_col, prompt_col): (usize, usize, usize),
    seen: &mut HashMap<String, Loc>,
) -> Result<(), Error> {
    if row.len() != n_cols {
        return Err(Error::Ragged {
            path: path.to_string(),
            at,
            expected: n_cols,
            found: row.len(),
        });
    }
    let id = &row[id_col];
    if id.is_empty() {
        return Err(Error::EmptyId {
            path: path.to_string(),
            at,
        });
    }
    if row[prompt_col].trim().is_empty() {
        return Err(Error::EmptyPrompt {
            path: path.to_string(),
            at,
            id: id.clone(),
        });
    }
    if let Some(&first) = seen.get(id) {
        return Err(Error::DuplicateId {
            path: path.to_string(),
            at,
            id: id.clone(),
            first,
        });
    }
    seen.insert(id.clone(), at);
    Ok(())
}

fn decode_record(
    path: &str,
    rec: &csv::ByteRecord,
    at: Loc,
    headers: Option<&[String]>,
) -> Result<Vec<String>, Error> {
    rec.iter()
        .enumerate()
        .map(|(j, cell)| {
            String::from_utf8(cell.to_vec()).map_err(|e| Error::InvalidUtf8 {
                path: path.to_string(),
                at,
                column: headers
                    .and_then(|h| h.get(j).cloned())
                    .unwrap_or_else(|| format!("#{}", j + 1)),
                valid_up_to: e.utf8_error().valid_up_to(),
            })
        })
        .collect()
}

/// The csv crate reads an unterminated quoted field to the end of the file without a word,
/// so one stray `"` would silently merge every later row into one prompt. This follows the
/// same quoting rules (a quote opens a field only at its start, `""` escapes) and reports
/// the line where a quote that never closes was opened.
fn check_quotes(path: &str, bytes: &[u8]) -> Result<(), Error> {
    let mut line = 1u64;
    let mut field_start = true;
    let mut open: Option<u64> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if open.is_some() {
            match b {
                b'"' if bytes.get(i + 1) == Some(&b'"') => i += 1,
                b'"' => open = None,
                b'\n' => line += 1,
                _ => {}
            }
        } else {
            match b {
                b'"' if field_start => open = Some(line),
                b'\n' => line += 1,
                _ => {}
            }
            field_start = matches!(b, b',' | b'\n' | b'\r');
        }
        i += 1;
    }
    match open {
        None => Ok(()),
        Some(l) => Err(Error::Csv {
            path: path.to_string(),
            at: Loc::Line(l),
            message: "unterminated quoted field: the '\"' opened here is never closed, so the \
                      rest of the file would be read as one cell"
                .to_string(),
        }),
    }
}

/// The editor line (1-based) of the record that starts at byte `offset` of a CSV. The csv
/// reader's own line count is one short in a CRLF file (it counts a record's `\r\n` when the
/// next record begins), so lines are counted here: the record starts at the first byte after
/// `offset` that is not a line end.
pub fn line_at(bytes: &[u8], offset: u64) -> u64 {
    let mut b = (offset as usize).min(bytes.len());
    while b < bytes.len() && matches!(bytes[b], b'\r' | b'\n') {
        b += 1;
    }
    1 + bytes[..b].iter().filter(|&&c| c == b'\n').count() as u64
}

fn csv_error(path: &str, e: csv::Error) -> Error {
    let at = Loc::Line(e.position().map_or(0, |p| p.line()));
    match e.into_kind() {
        csv::ErrorKind::Io(error) => Error::io(path, "cannot read", error),
        other => Error::Csv {
            path: path.to_string(),
            at,
            message: format!("{other:?}"),
        },
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
