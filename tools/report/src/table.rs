//! The CSVs a report reads: a header row and string cells, read whole (they are small), with
//! errors that name the file, the row and the column.

use std::path::{Path, PathBuf};

use hd_formats::components::ComponentId;

use crate::Error;

/// One CSV file, read whole.
#[derive(Debug, Clone)]
pub struct Table {
    /// Where it was read from (named in errors).
    pub path: PathBuf,
    /// The header row.
    pub headers: Vec<String>,
    /// The data rows, each as long as the header.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Reads `path`; `Ok(None)` when it does not exist (the stage that writes it has not
    /// run), an error when it exists but cannot be read as CSV.
    pub fn read(path: &Path) -> Result<Option<Table>, Error> {
        if !path.exists() {
            return Ok(None);
        }
        let bad = |msg: String| Error::Read {
            path: path.to_path_buf(),
            msg,
        };
        let mut r = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(path)
            .map_err(|e| bad(e.to_string()))?;
        let headers = r
            .headers()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for rec in r.records() {
            let rec = rec.map_err(|e| bad(e.to_string()))?;
            rows.push(rec.iter().map(str::to_string).collect());
        }
        Ok(Some(Table {
            path: path.to_path_buf(),
            headers,
            rows,
        }))
    }

    /// A table from memory (tests, fixtures).
    pub fn from_str(name: &str, text: &str) -> Result<Table, Error> {
        let path = PathBuf::from(name);
        let bad = |msg: String| Error::Read {
            path: path.clone(),
            msg,
        };
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let headers = r
            .headers()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for rec in r.records() {
            rows.push(
                rec.map_err(|e| bad(e.to_string()))?
                    .iter()
                    .map(str::to_string)
                    .collect(),
            );
        }
        Ok(Table {
            path,
            headers,
            rows,
        })
    }

    /// The index of column `name`.
    pub fn col(&self, name: &str) -> Result<usize, Error> {
        self.headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::Column {
                path: self.path.clone(),
                column: name.to_string(),
                found: self.headers.join(","),
            })
    }

    /// The cell at data row `row` (0-based), column `col`.
    pub fn cell(&self, row: usize, col: usize) -> &str {
        &self.rows[row][col]
    }

    /// The cell as a finite number.
    pub fn num(&self, row: usize, col: usize) -> Result<f64, Error> {
        self.opt_num(row, col)?
            .ok_or_else(|| self.value_error(row, col, "a number"))
    }

    /// The cell as a finite number, `None` when empty.
    pub fn opt_num(&self, row: usize, col: usize) -> Result<Option<f64>, Error> {
        let s = self.cell(row, col).trim();
        if s.is_empty() {
            return Ok(None);
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(self.value_error(row, col, "a finite number")),
        }
    }

    /// The cell as a non-negative integer.
    pub fn int(&self, row: usize, col: usize) -> Result<usize, Error> {
        self.cell(row, col)
            .trim()
            .parse::<usize>()
            .map_err(|_| self.value_error(row, col, "a non-negative integer"))
    }

    /// The cell as a 1-based component of layer `layer`: its name `L{layer}-C{k}` (what
    /// dir-interact writes) or the bare `k`.
    pub fn component(&self, row: usize, col: usize, layer: usize) -> Result<usize, Error> {
        let s = self.cell(row, col).trim();
        let k = match s.parse::<ComponentId>() {
            Ok(c) if c.layer == layer => Some(c.k),
            Ok(_) => None,
            Err(_) => s.parse::<usize>().ok().filter(|&k| k >= 1),
        };
        k.ok_or_else(|| {
            self.value_error(
                row,
                col,
                &format!("a component of layer {layer} (L{layer}-C{{k}} or k, k >= 1)"),
            )
        })
    }

    /// The cell as a component name `L{l}-C{k}` (k 1-based).
    pub fn component_id(&self, row: usize, col: usize) -> Result<ComponentId, Error> {
        self.cell(row, col)
            .trim()
            .parse()
            .map_err(|_| self.value_error(row, col, "a component name L{l}-C{k}, k >= 1"))
    }

    /// The cell as a rate or a fraction: a number in [0, 1].
    pub fn rate(&self, row: usize, col: usize) -> Result<f64, Error> {
        self.opt_rate(row, col)?
            .ok_or_else(|| self.value_error(row, col, "a number in [0, 1]"))
    }

    /// [`Table::rate`], `None` when empty.
    pub fn opt_rate(&self, row: usize, col: usize) -> Result<Option<f64>, Error> {
        match self.opt_num(row, col) {
            Ok(Some(v)) if !(0.0..=1.0).contains(&v) => {
                Err(self.value_error(row, col, "a number in [0, 1]"))
            }
            Ok(v) => Ok(v),
            Err(_) => Err(self.value_error(row, col, "a number in [0, 1]")),
        }
    }

    /// The cell as a count of prompts: a whole number of at least 1.
    pub fn count(&self, row: usize, col: usize) -> Result<usize, Error> {
        match self.cell(row, col).trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(self.value_error(row, col, "a whole number of at least 1")),
        }
    }

    /// The cell as a finite number of at least 0.
    pub fn nonneg(&self, row: usize, col: usize) -> Result<f64, Error> {
        match self.opt_num(row, col) {
            Ok(Some(v)) if v >= 0.0 => Ok(v),
            _ => Err(self.value_error(row, col, "a number of at least 0")),
        }
    }

    /// The cell as a 0/1 flag (also `true`/`false`).
    pub fn flag(&self, row: usize, col: usize) -> Result<bool, Error> {
        match self.cell(row, col).trim() {
            "1" | "true" => Ok(true),
            "0" | "false" => Ok(false),
            _ => Err(self.value_error(row, col, "0 or 1")),
        }
    }

    /// The cell as exactly `true` or `false` (what the tools write; `True` or `yes` is not
    /// silently read as false); an empty cell (undefined, e.g. no perplexity measured) is
    /// false.
    pub fn boolean(&self, row: usize, col: usize) -> Result<bool, Error> {
        match self.cell(row, col) {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            _ => Err(self.value_error(row, col, "true, false or empty")),
        }
    }

    /// An error about one cell; rows are counted as a person sees the file (header = line 1).
    pub fn value_error(&self, row: usize, col: usize, expected: &str) -> Error {
        Error::Value {
            path: self.path.clone(),
            line: row + 2,
            column: self.headers[col].clone(),
            expected: expected.to_string(),
            found: self.rows[row][col].clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_and_column() {
        let t = Table::from_str("x.csv", "a,b\n1,2\n3,oops\n").unwrap();
        let b = t.col("b").unwrap();
        assert_eq!(t.num(0, b).unwrap(), 2.0);
        let e = t.num(1, b).unwrap_err().to_string();
        assert_eq!(
            e,
            "x.csv: line 3, column 'b': expected a finite number, found 'oops'"
        );
        let e = t.col("c").unwrap_err().to_string();
        assert_eq!(e, "x.csv: no column 'c' (header: a,b)");
    }

    /// Values outside a column's contract are errors naming file, line and column, never
    /// printed (150.0%) or read as something else (`True` as false).
    #[test]
    fn values_outside_the_contract_are_refused() {
        let t = Table::from_str(
            "sweep.csv",
            "rate,n,rank,degenerate,comp\n1.5,0,-7,True,L3-C0\n0.5,2.5,3,false,L3-C2\n1,10,0,true,2\n",
        )
        .unwrap();
        let err = |r: Result<f64, Error>| r.unwrap_err().to_string();
        assert_eq!(
            err(t.rate(0, 0)),
            "sweep.csv: line 2, column 'rate': expected a number in [0, 1], found '1.5'"
        );
        assert_eq!(t.rate(2, 0).unwrap(), 1.0);
        assert!(t
            .count(0, 1)
            .unwrap_err()
            .to_string()
            .contains("a whole number of at least 1, found '0'"));
        assert!(t
            .count(1, 1)
            .unwrap_err()
            .to_string()
            .contains("found '2.5'"));
        assert_eq!(t.count(2, 1).unwrap(), 10);
        assert!(err(t.nonneg(0, 2)).contains("a number of at least 0, found '-7'"));
        assert!(t
            .boolean(0, 3)
            .unwrap_err()
            .to_string()
            .contains("expected true, false or empty, found 'True'"));
        assert!(!t.boolean(1, 3).unwrap() && t.boolean(2, 3).unwrap());
        assert!(t.component(0, 4, 3).is_err());
        assert_eq!(t.component(1, 4, 3).unwrap(), 2);
        assert_eq!(t.component(2, 4, 3).unwrap(), 2);
        assert!(t.component(1, 4, 4).is_err(), "another layer's component");
    }

    #[test]
    fn missing_file_is_none() {
        assert!(Table::read(Path::new("/nonexistent/x.csv"))
            .unwrap()
            .is_none());
    }
}
