//! `--layers`: which hidden-state indices a tool works on.
//!
//! Grammar: comma-separated items, each `all`, `last`, an index `N`, an index from the end
//! `-N` (`-1` is the last layer, like Python), or a range `A-B` whose ends are any of those
//! (`0-3`, `10-last`, `-3--1`, `5--1`). Spaces around items are ignored. A spec is parsed
//! once (so a typo is a usage error before any work) and resolved later against the
//! model's (or file's) largest index.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// One end of an item: counted from the start (`N`) or from the end (`-N`, `last` = `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Index {
    FromStart(usize),
    /// 1-based distance from the end: `-1` is stored as 1.
    FromEnd(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    All,
    Range(Index, Index),
}

/// A parsed `--layers` value; see the module docs for the grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    text: String,
    items: Vec<Item>,
}

impl LayerSpec {
    /// Every layer.
    pub fn all() -> Self {
        LayerSpec {
            text: "all".to_string(),
            items: vec![Item::All],
        }
    }

    /// `Some(N)` when the spec is exactly one index counted from the start (`N`): what names
    /// the layer of a file that does not record its own (a lone `.npy` tensor).
    pub fn single_index(&self) -> Option<usize> {
        match self.items[..] {
            [Item::Range(Index::FromStart(a), Index::FromStart(b))] if a == b => Some(a),
            _ => None,
        }
    }

    /// The layer indices in `0..=max_index`, sorted and deduplicated.
    pub fn resolve(&self, max_index: usize) -> Result<Vec<usize>, Error> {
        let mut out = Vec::new();
        for item in &self.items {
            match *item {
                Item::All => out.extend(0..=max_index),
                Item::Range(a, b) => {
                    let (a, b) = (abs(a, max_index)?, abs(b, max_index)?);
                    if a > b {
                        return Err(Error::LayerSpec {
                            spec: self.text.clone(),
                            token: format!("{a}-{b}"),
                            why: format!(
                                "range runs backwards once resolved against 0..={max_index}"
                            ),
                        });
                    }
                    out.extend(a..=b);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Resolves against the layers a file actually holds: `all` means exactly those, the
    /// largest of them is the end that negative indices count from, and asking for one
    /// that is missing is an error listing what there is.
    pub fn resolve_available(&self, available: &[usize]) -> Result<Vec<usize>, Error> {
        let Some(&max) = available.iter().max() else {
            return Err(Error::LayerNotAvailable {
                layer: 0,
                available: "none".to_string(),
            });
        };
        if self.items.iter().all(|i| *i == Item::All) {
            let mut v = available.to_vec();
            v.sort_unstable();
            v.dedup();
            return Ok(v);
        }
        let mut out = Vec::new();
        for item in &self.items {
            match item {
                Item::All => out.extend_from_slice(available),
                Item::Range(..) => {
                    let one = LayerSpec {
                        text: self.text.clone(),
                        items: vec![*item],
                    };
                    for l in one.resolve(max)? {
                        if !available.contains(&l) {
                            let list: Vec<String> =
                                available.iter().map(|l| l.to_string()).collect();
                            return Err(Error::LayerNotAvailable {
                                layer: l,
                                available: list.join(", "),
                            });
                        }
                        out.push(l);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

fn abs(i: Index, max: usize) -> Result<usize, Error> {
    match i {
        Index::FromStart(n) if n <= max => Ok(n),
        Index::FromStart(n) => Err(Error::LayerOutOfRange {
            layer: n as i64,
            max,
            hint: String::new(),
        }),
        Index::FromEnd(k) if k <= max + 1 => Ok(max + 1 - k),
        Index::FromEnd(k) => Err(Error::LayerOutOfRange {
            layer: -(k as i64),
            max,
            hint: format!(
                " (counting from the end, -1 is {max} and -{} is 0)",
                max + 1
            ),
        }),
    }
}

impl Default for LayerSpec {
    fn default() -> Self {
        LayerSpec::all()
    }
}

impl fmt::Display for LayerSpec {
    /// The spec as the user wrote it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for LayerSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |token: &str, why: &str| Error::LayerSpec {
            spec: s.to_string(),
            token: token.to_string(),
            why: why.to_string(),
        };
        let mut items = Vec::new();
        for raw in s.split(',') {
            let tok = raw.trim();
            if tok.is_empty() {
                return Err(bad(tok, "empty item"));
            }
            if tok.eq_ignore_ascii_case("all") {
                items.push(Item::All);
                continue;
            }
            let (a, rest) = index_prefix(tok).ok_or_else(|| bad(tok, "not a layer index"))?;
            let b = if rest.is_empty() {
                a
            } else {
                let rest = rest
                    .strip_prefix('-')
                    .ok_or_else(|| bad(tok, "unexpected text after the index"))?;
                match index_prefix(rest) {
                    Some((b, "")) => b,
                    _ => return Err(bad(tok, "range end is not a layer index")),
                }
            };
            if let (Index::FromStart(x), Index::FromStart(y)) = (a, b) {
                if x > y {
                    return Err(bad(tok, "range runs backwards"));
                }
            }
            items.push(Item::Range(a, b));
        }
        Ok(LayerSpec {
            text: s.to_string(),
            items,
        })
    }
}

/// Parses an index at the start of `s` (`N`, `-N` with N >= 1, `last`), returning the rest.
fn index_prefix(s: &str) -> Option<(Index, &str)> {
    if s.len() >= 4 && s[..4].eq_ignore_ascii_case("last") {
        return Some((Index::FromEnd(1), &s[4..]));
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: usize = body[..digits].parse().ok()?;
    let rest = &body[digits..];
    if neg {
        (n >= 1).then_some((Index::FromEnd(n), rest))
    } else {
        Some((Index::FromStart(n), rest))
    }
}
