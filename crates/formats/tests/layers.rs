//! `--layers` parsing and resolution.

use hd_formats::layers::LayerSpec;

fn resolve(spec: &str, max: usize) -> Vec<usize> {
    spec.parse::<LayerSpec>()
        .unwrap()
        .resolve(max)
        .unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn parse_err(spec: &str) -> String {
    spec.parse::<LayerSpec>().unwrap_err().to_string()
}

fn resolve_err(spec: &str, max: usize) -> String {
    spec.parse::<LayerSpec>()
        .unwrap()
        .resolve(max)
        .unwrap_err()
        .to_string()
}

#[test]
fn forms() {
    assert_eq!(resolve("all", 3), vec![0, 1, 2, 3]);
    assert_eq!(resolve("ALL", 0), vec![0]);
    assert_eq!(resolve("last", 30), vec![30]);
    assert_eq!(resolve("0-3,7", 30), vec![0, 1, 2, 3, 7]);
    assert_eq!(resolve("7, 0-3 ,2", 30), vec![0, 1, 2, 3, 7]);
    assert_eq!(resolve("-1", 30), vec![30]);
    assert_eq!(resolve("-31", 30), vec![0]);
    assert_eq!(resolve("-3--1", 30), vec![28, 29, 30]);
    assert_eq!(resolve("28-last", 30), vec![28, 29, 30]);
    assert_eq!(resolve("5--25", 30), vec![5, 6]);
    assert_eq!(resolve("3-3", 30), vec![3]);
    assert_eq!(resolve("all,2", 2), vec![0, 1, 2]);
    assert_eq!(resolve_err("all,5", 2), "layer 5 out of range 0..=2");
    assert_eq!(LayerSpec::default().resolve(1).unwrap(), vec![0, 1]);
    assert_eq!("0-3,7".parse::<LayerSpec>().unwrap().to_string(), "0-3,7");
}

#[test]
fn parse_errors_quote_the_bad_item() {
    let tail = "; use 'all', 'last', N, -N (from the end) or A-B, comma-separated)";
    assert_eq!(
        parse_err("0-x"),
        format!("invalid layer spec '0-x': bad item '0-x' (range end is not a layer index{tail}")
    );
    assert_eq!(
        parse_err("1,,2"),
        format!("invalid layer spec '1,,2': bad item '' (empty item{tail}")
    );
    assert_eq!(
        parse_err(""),
        format!("invalid layer spec '': bad item '' (empty item{tail}")
    );
    assert_eq!(
        parse_err("five"),
        format!("invalid layer spec 'five': bad item 'five' (not a layer index{tail}")
    );
    assert_eq!(
        parse_err("7-3"),
        format!("invalid layer spec '7-3': bad item '7-3' (range runs backwards{tail}")
    );
    assert_eq!(
        parse_err("-0"),
        format!("invalid layer spec '-0': bad item '-0' (not a layer index{tail}")
    );
    assert_eq!(
        parse_err("3x"),
        format!("invalid layer spec '3x': bad item '3x' (unexpected text after the index{tail}")
    );
    assert_eq!(
        parse_err("1-2-3"),
        format!(
            "invalid layer spec '1-2-3': bad item '1-2-3' (range end is not a layer index{tail}"
        )
    );
}

#[test]
fn resolve_errors() {
    assert_eq!(resolve_err("40", 30), "layer 40 out of range 0..=30");
    assert_eq!(resolve_err("0-40", 30), "layer 40 out of range 0..=30");
    assert_eq!(
        resolve_err("-32", 30),
        "layer -32 out of range 0..=30 (counting from the end, -1 is 30 and -31 is 0)"
    );
    assert_eq!(
        resolve_err("-1-3", 30),
        "invalid layer spec '-1-3': bad item '30-3' (range runs backwards once resolved against 0..=30; use 'all', 'last', N, -N (from the end) or A-B, comma-separated)"
    );
}

#[test]
fn resolve_against_available_layers() {
    let have = [5, 10, 15];
    let r = |s: &str| s.parse::<LayerSpec>().unwrap().resolve_available(&have);
    assert_eq!(r("all").unwrap(), vec![5, 10, 15]);
    assert_eq!(r("last").unwrap(), vec![15]);
    assert_eq!(r("10,5").unwrap(), vec![5, 10]);
    assert_eq!(
        r("7").unwrap_err().to_string(),
        "layer 7 is not available (have: 5, 10, 15)"
    );
    assert_eq!(
        r("5-10").unwrap_err().to_string(),
        "layer 6 is not available (have: 5, 10, 15)"
    );
}
