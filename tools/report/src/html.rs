//! The page: sections of inline SVG figures with captions and the paper's numbers, in one
//! self-contained HTML file (no network: a content security policy forbids any fetch, so a
//! stray external reference shows up as a console error in the browser test).

use std::fmt::Write as _;

use crate::model::{Item, Section};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const STYLE: &str = r#"
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #1f2d3d; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; color: #c8d3df; }
nav { padding: 8px 32px; background: #e9eef3; font-size: 14px; }
nav a { margin-right: 14px; color: #1f4e79; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 24px 48px; }
section { margin-top: 28px; }
h2 { border-bottom: 2px solid #d5dde5; padding-bottom: 4px; }
figure.figure { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 12px; margin: 18px 0; }
.plot svg { max-width: 100%; height: auto; display: block; }
figcaption, .caption { font-size: 14px; line-height: 1.45; color: #444; margin-top: 6px; }
.paper { font-size: 13px; margin-top: 8px; }
.paper th { text-align: left; color: #555; font-weight: normal; padding-right: 12px; }
.files { font-size: 12px; color: #777; }
.missing { border: 2px dashed #c9a227; background: #fff8e1; padding: 12px 16px; margin: 16px 0; border-radius: 6px; }
.missing code, .notrun code { background: #f3e5ab; padding: 1px 4px; }
.notrun { color: #8a6d00; }
table.data { border-collapse: collapse; font-size: 14px; background: #fff; }
table.data td, table.data th { border: 1px solid #dde2e7; padding: 5px 10px; text-align: left; vertical-align: top; }
.tokens { background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: 4px 14px; margin: 10px 0; }
.tokens h4 { margin: 8px 0; }
.tokens p { font-family: "DejaVu Sans Mono", monospace; font-size: 13px; line-height: 1.9; }
.tok { white-space: pre-wrap; border-radius: 2px; }
.pid { color: #888; margin-right: 8px; }
"#;

// Records script errors and each figure's rendered size in the DOM, so a headless browser's
// `--dump-dom` shows whether the page worked as a person would see it.
const CHECK_SCRIPT: &str = r#"
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
document.addEventListener('DOMContentLoaded', function () {
  var figs = document.querySelectorAll('figure.figure');
  var bad = [];
  figs.forEach(function (f) {
    var s = f.querySelector('svg');
    var r = s ? s.getBoundingClientRect() : { width: 0, height: 0 };
    f.setAttribute('data-rendered', Math.round(r.width) + 'x' + Math.round(r.height));
    if (!(r.width > 0 && r.height > 0)) { bad.push(f.id); }
  });
  document.body.setAttribute('data-check', JSON.stringify({ figures: figs.length, bad: bad, errors: window.__errors }));
});
"#;

/// The page. `svgs[i]` is the SVG of the i-th figure in section order.
pub fn page(run: &str, numbers_html: &str, sections: &[Section], svgs: &[String]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>hidden-dims report: {run}</title><style>{STYLE}</style>\
         <script>{CHECK_SCRIPT}</script></head><body>\n\
         <header><h1>The hidden dimensions of alignment, reproduced</h1>\
         <p>Run <code>{run}</code>. Our numbers beside Pan et al. (2025)'s, read off the \
         reference artifacts (Llama-Guard-3-8B before and after safety fine-tuning).</p></header>\n<nav>",
        run = escape(run)
    );
    h.push_str("<a href=\"#numbers\">numbers</a>");
    for s in sections {
        let _ = write!(h, "<a href=\"#{}\">{}</a>", s.id, escape(&s.title));
    }
    h.push_str("</nav>\n<main>\n<section id=\"numbers\"><h2>The numbers</h2>");
    h.push_str(numbers_html);
    h.push_str(
        "<p class=\"caption\">Generated from the run's files (numbers.csv, numbers.md beside \
         this page); the README quotes this table.</p></section>\n",
    );
    let mut svg = svgs.iter();
    for s in sections {
        let _ = writeln!(h, "<section id=\"{}\"><h2>{}</h2>", s.id, escape(&s.title));
        for item in &s.items {
            item_html(&mut h, item, &mut svg);
        }
        h.push_str("</section>\n");
    }
    h.push_str("</main></body></html>\n");
    h
}

fn item_html<'a>(h: &mut String, item: &Item, svg: &mut impl Iterator<Item = &'a String>) {
    match item {
        Item::Figure(f) => {
            let _ = write!(
                h,
                "<figure class=\"figure\" id=\"fig-{id}\"><div class=\"plot\">{svg}</div>\
                 <figcaption>{cap}</figcaption>",
                id = escape(&f.id),
                svg = svg.next().map(String::as_str).unwrap_or(""),
                cap = escape(&f.caption)
            );
            if !f.paper.is_empty() {
                h.push_str("<table class=\"paper\"><tr><th colspan=\"2\"><b>paper</b></th></tr>");
                for (k, v) in &f.paper {
                    let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
                }
                h.push_str("</table>");
            }
            let _ = writeln!(
                h,
                "<p class=\"files\"><a href=\"{id}.svg\">{id}.svg</a> · <a href=\"{id}.png\">{id}.png</a></p></figure>",
                id = escape(&f.id)
            );
        }
        Item::Html(s) => {
            h.push_str(s);
            h.push('\n');
        }
        Item::Missing { what, make, path } => {
            let _ = writeln!(
                h,
                "<div class=\"missing\"><b>stage not run: <code>{}</code></b> — {} \
                 (looked for <code>{}</code>)</div>",
                escape(make),
                escape(what),
                escape(path)
            );
        }
    }
}
