//! Drawing a figure with plotters, once for any backend: the same code writes the SVG
//! (inline in the page and its own file) and the PNG.

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::model::{Bars, Figure, Heatmap, LineSeries as Line, Lines, Network, Plot, Stroke};

/// Figure size in pixels.
pub const SIZE: (u32, u32) = (880, 440);
/// Width of the legend column on the right.
const LEGEND_W: u32 = 230;
const FONT: &str = "sans-serif";

/// Series colours (colour-blind-friendly, after Okabe–Ito).
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(240, 228, 66),
];
/// The paper's series.
const PAPER: RGBColor = RGBColor(60, 60, 60);

/// Registers the bundled font (DejaVu Sans) once; the bitmap backend has no other source of
/// glyphs, and the SVG backend measures text with it.
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .unwrap_or_else(|_| panic!("the bundled font is a valid TrueType file"));
    });
}

/// Chart coordinates come back in backend pixels; text drawn on an area is placed relative to
/// the area's corner.
fn local<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, (x, y): (i32, i32)) -> (i32, i32) {
    let (ox, oy) = area.get_base_pixel();
    (x - ox, y - oy)
}

/// Axis numbers without a spurious ".0" on whole values.
fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() < 1e-3 {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn text(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK)
}

/// Draws `fig` on `root` (the whole figure area).
pub fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure,
) -> Result<(), String> {
    register_font();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(&fig.title, text(17).pos(Pos::new(HPos::Center, VPos::Top)))
        .map_err(err)?;
    match &fig.plot {
        Plot::Bars(b) => bars(&root, b),
        Plot::Lines(l) => lines(&root, l),
        Plot::Heatmap(h) => heatmap(&root, h),
        Plot::Network(n) => network(&root, n),
    }
}

/// Legend entries: name, colour, and whether the swatch is a dashed line.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor, Stroke)],
) -> Result<(), String> {
    for (i, (name, c, stroke)) in entries.iter().enumerate() {
        let y = 20 + 22 * i as i32;
        match stroke {
            Stroke::Dashed => {
                for x in [8, 16] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 5, y)],
                        c.stroke_width(2),
                    ))
                    .map_err(err)?;
                }
            }
            Stroke::Points => area
                .draw(&Circle::new((15, y), 4, c.filled()))
                .map_err(err)?,
            Stroke::Solid => area
                .draw(&Rectangle::new([(8, y - 5), (22, y + 5)], c.filled()))
                .map_err(err)?,
        }
        let mut label = name.clone();
        if label.chars().count() > 30 {
            label = label.chars().take(29).collect::<String>() + "…";
        }
        area.draw(&Text::new(label, (28, y - 7), text(12)))
            .map_err(err)?;
    }
    Ok(())
}

/// The plot and, on its right, a legend column as wide as its longest entry needs (at most
/// LEGEND_W), so short legends leave the plot more room.
fn split<'a, DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    names: impl Iterator<Item = &'a str>,
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let longest = names.map(|n| n.chars().count().min(30)).max().unwrap_or(0) as u32;
    let legend = (40 + 7 * longest).min(LEGEND_W);
    let w = root.dim_in_pixel().0;
    root.split_horizontally(w.saturating_sub(legend))
}

/// A label broken into lines of at most `width` characters, at underscores and spaces where
/// it can be, at most three lines (the last one cut with an ellipsis).
fn wrap(s: &str, width: usize) -> Vec<String> {
    let width = width.max(3);
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in s.split_inclusive(['_', ' ']) {
        let word = word.trim_end_matches(' ');
        if !cur.is_empty() && cur.chars().count() + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        let mut w = word.to_string();
        // A word a little too long still fits (the width is a conservative estimate);
        // breaking "hypothetical" into "hypothetica" + "l" helps nobody.
        while w.chars().count() > width + 2 {
            let head: String = w.chars().take(width).collect();
            lines.push(head);
            w = w.chars().skip(width).collect();
        }
        cur.push_str(&w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    for l in &mut lines {
        if l.len() > 1 && l.ends_with('_') {
            l.pop();
        }
    }
    if lines.len() > 3 {
        lines.truncate(3);
        let last: String = lines[2].chars().take(width.saturating_sub(1)).collect();
        lines[2] = last + "…";
    }
    lines
}

fn bars<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, b: &Bars) -> Result<(), String> {
    let (left, right) = split(root, b.series.iter().map(|s| s.name.as_str()));
    let n = b.groups.len().max(1);
    let mut chart = ChartBuilder::on(&left)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..n as f64, 0f64..b.y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&tick)
        .light_line_style(TRANSPARENT)
        .y_desc(b.y_label.as_str())
        .label_style(text(12))
        .axis_desc_style(text(13))
        .draw()
        .map_err(err)?;
    let k = b.series.len().max(1);
    let w = 0.8 / k as f64;
    let mut entries = Vec::new();
    for (si, s) in b.series.iter().enumerate() {
        let c = PALETTE[si % PALETTE.len()];
        entries.push((s.name.clone(), c, Stroke::Solid));
        chart
            .draw_series(s.values.iter().enumerate().filter_map(|(g, v)| {
                v.map(|v| {
                    let x0 = g as f64 + 0.1 + si as f64 * w;
                    Rectangle::new([(x0, 0.0), (x0 + w * 0.92, v.min(b.y_max))], c.filled())
                })
            }))
            .map_err(err)?;
        // Error bars: a vertical line over the interval with short caps.
        let whiskers = s.ci.iter().enumerate().filter_map(|(g, ci)| {
            ci.filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
                .map(|(lo, hi)| {
                    let x = g as f64 + 0.1 + si as f64 * w + w * 0.46;
                    let (lo, hi) = (lo.clamp(0.0, b.y_max), hi.clamp(0.0, b.y_max));
                    let cap = w * 0.2;
                    PathElement::new(
                        vec![
                            (x - cap, lo),
                            (x + cap, lo),
                            (x, lo),
                            (x, hi),
                            (x - cap, hi),
                            (x + cap, hi),
                        ],
                        BLACK.stroke_width(1),
                    )
                })
        });
        chart.draw_series(whiskers).map_err(err)?;
    }
    // About 6 px per character at 11 px: as many as fit under one group.
    let group_px = (chart.backend_coord(&(1.0, 0.0)).0 - chart.backend_coord(&(0.0, 0.0)).0).max(1);
    let width = (group_px as f64 / 6.0) as usize;
    for (g, name) in b.groups.iter().enumerate() {
        let (px, py) = local(&left, chart.backend_coord(&(g as f64 + 0.5, 0.0)));
        for (i, line) in wrap(name, width).into_iter().enumerate() {
            let style = text(11).pos(Pos::new(HPos::Center, VPos::Top));
            left.draw(&Text::new(line, (px, py + 6 + 13 * i as i32), style))
                .map_err(err)?;
        }
    }
    legend(&right, &entries)
}

fn lines<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, l: &Lines) -> Result<(), String> {
    let (left, right) = split(root, l.series.iter().map(|s| s.name.as_str()));
    let pts = || l.series.iter().flat_map(|s| s.points.iter().copied());
    let x0 = pts().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x1 = pts().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        (x0, x1)
    } else {
        (0.0, 1.0)
    };
    let ymax = pts().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let mut b = ChartBuilder::on(&left);
    b.margin(12).x_label_area_size(40).y_label_area_size(60);
    let entries = entries(&l.series);
    if l.log_y {
        let ymin = pts()
            .map(|p| p.1)
            .filter(|&y| y > 0.0)
            .fold(f64::INFINITY, f64::min);
        let (lo, hi) = if ymin.is_finite() {
            (ymin * 0.7, ymax * 1.4)
        } else {
            (1e-3, 1.0)
        };
        let mut chart = b
            .build_cartesian_2d(x0..x1, (lo..hi).log_scale())
            .map_err(err)?;
        mesh(&mut chart, l)?;
        series(&mut chart, &l.series)?;
    } else {
        let hi = if ymax.is_finite() && ymax > 0.0 {
            ymax * 1.08
        } else {
            1.0
        };
        let mut chart = b.build_cartesian_2d(x0..x1, 0f64..hi).map_err(err)?;
        mesh(&mut chart, l)?;
        series(&mut chart, &l.series)?;
    }
    legend(&right, &entries)
}

fn entries(series: &[Line]) -> Vec<(String, RGBColor, Stroke)> {
    let mut ours = 0;
    series
        .iter()
        .map(|s| {
            let c = if s.stroke == Stroke::Solid {
                ours += 1;
                PALETTE[(ours - 1) % PALETTE.len()]
            } else {
                PAPER
            };
            (s.name.clone(), c, s.stroke)
        })
        .collect()
}

fn mesh<DB: DrawingBackend, Y: Ranged<ValueType = f64> + ValueFormatter<f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    l: &Lines,
) -> Result<(), String> {
    chart
        .configure_mesh()
        .x_desc(l.x_label.as_str())
        .y_desc(l.y_label.as_str())
        .label_style(text(12))
        .axis_desc_style(text(13))
        .light_line_style(RGBColor(240, 240, 240))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()
        .map_err(err)
}

fn series<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    series: &[Line],
) -> Result<(), String> {
    let colours = entries(series);
    // Dashed dashes of the same grey tell the paper's series apart only by pattern, so
    // alternate the dash lengths.
    let mut dashed = 0;
    for (s, (_, c, _)) in series.iter().zip(colours) {
        let pts: Vec<(f64, f64)> = s.points.clone();
        match s.stroke {
            Stroke::Solid => {
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 2, c.filled())))
                    .map_err(err)?;
            }
            Stroke::Dashed => {
                dashed += 1;
                chart
                    .draw_series(DashedLineSeries::new(
                        pts,
                        3 + 4 * dashed,
                        4,
                        c.stroke_width(2),
                    ))
                    .map_err(err)?;
            }
            Stroke::Points => {
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                    .map_err(err)?;
            }
        }
    }
    Ok(())
}

/// White at `center`, red above, blue below, full colour at `center ± span`.
pub fn diverging(v: f64, center: f64, span: f64) -> RGBColor {
    let t = ((v - center) / span).clamp(-1.0, 1.0);
    let (r, g, b) = if t >= 0.0 {
        (200.0, 40.0, 40.0)
    } else {
        (40.0, 80.0, 200.0)
    };
    let a = t.abs();
    let mix = |c: f64| (255.0 + (c - 255.0) * a).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

fn heatmap<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, h: &Heatmap) -> Result<(), String> {
    // The right column holds the colour scale and the axis names drawn under it.
    let names = [
        format!("rows: {}", h.row_label),
        format!("columns: {}", h.col_label),
    ];
    let (left, right) = split(root, names.iter().map(String::as_str));
    let (nr, nc) = (h.rows.len().max(1), h.cols.len().max(1));
    let label_w = h.rows.iter().map(|r| r.chars().count()).max().unwrap_or(4) as u32 * 7 + 16;
    let mut chart = ChartBuilder::on(&left)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(label_w)
        .build_cartesian_2d(0f64..nc as f64, 0f64..nr as f64)
        .map_err(err)?;
    let cell_w = chart.backend_coord(&(1.0, 0.0)).0 - chart.backend_coord(&(0.0, 0.0)).0;
    for (r, row) in h.values.iter().enumerate() {
        let y = (nr - 1 - r) as f64;
        for (c, v) in row.iter().enumerate() {
            let fill = match v {
                Some(v) => diverging(*v, h.center, h.span),
                None => RGBColor(225, 225, 225),
            };
            let x = c as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    fill.filled(),
                )))
                .map_err(err)?;
            if let (Some(v), true) = (v, cell_w >= 34) {
                let (px, py) = local(&left, chart.backend_coord(&(x + 0.5, y + 0.5)));
                let s = text(10).pos(Pos::new(HPos::Center, VPos::Center));
                left.draw(&Text::new(format!("{v:.2}"), (px, py), s))
                    .map_err(err)?;
            }
        }
    }
    for (c, name) in h.cols.iter().enumerate() {
        let (px, py) = local(&left, chart.backend_coord(&(c as f64 + 0.5, 0.0)));
        let s = text(11).pos(Pos::new(HPos::Center, VPos::Top));
        left.draw(&Text::new(name.clone(), (px, py + 6), s))
            .map_err(err)?;
    }
    for (r, name) in h.rows.iter().enumerate() {
        let (px, py) = local(
            &left,
            chart.backend_coord(&(0.0, (nr - 1 - r) as f64 + 0.5)),
        );
        let s = text(11).pos(Pos::new(HPos::Right, VPos::Center));
        left.draw(&Text::new(name.clone(), (px - 6, py), s))
            .map_err(err)?;
    }
    scale(&right, h)
}

/// The colour scale beside a heatmap, with the axis names.
fn scale<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, h: &Heatmap) -> Result<(), String> {
    let (x, top, height) = (20, 30, 200);
    for i in 0..height {
        let v = h.center + h.span * (1.0 - 2.0 * i as f64 / (height - 1) as f64);
        let c = diverging(v, h.center, h.span);
        area.draw(&Rectangle::new(
            [(x, top + i), (x + 18, top + i + 1)],
            c.filled(),
        ))
        .map_err(err)?;
    }
    for (dy, v) in [
        (0, h.center + h.span),
        (height / 2, h.center),
        (height, h.center - h.span),
    ] {
        area.draw(&Text::new(
            format!("{v:.2}"),
            (x + 24, top + dy - 6),
            text(11),
        ))
        .map_err(err)?;
    }
    area.draw(&Text::new(
        format!("rows: {}", h.row_label),
        (x, top + height + 20),
        text(11),
    ))
    .map_err(err)?;
    area.draw(&Text::new(
        format!("columns: {}", h.col_label),
        (x, top + height + 38),
        text(11),
    ))
    .map_err(err)?;
    Ok(())
}

fn network<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, n: &Network) -> Result<(), String> {
    let mut layers: Vec<usize> = n
        .edges
        .iter()
        .flat_map(|e| [e.source_layer, e.target_layer])
        .collect();
    layers.sort_unstable();
    layers.dedup();
    let kmax = n
        .edges
        .iter()
        .flat_map(|e| [e.source_comp, e.target_comp])
        .max()
        .unwrap_or(1);
    let (w, h) = root.dim_in_pixel();
    let (x0, x1, y0, y1) = (60i32, w as i32 - 30, 40i32, h as i32 - 50);
    let nl = layers.len().max(2) as i32 - 1;
    let pos = |l: usize, k: usize| {
        let i = layers.iter().position(|&x| x == l).unwrap_or(0) as i32;
        let x = x0 + (x1 - x0) * i / nl.max(1);
        let y = y0 + (y1 - y0) * (k as i32 - 1) / (kmax as i32 - 1).max(1);
        (x, y)
    };
    let vmax = n.edges.iter().map(|e| e.value.abs()).fold(0.0, f64::max);
    let vmax = if vmax > 0.0 { vmax } else { 1.0 };
    for e in &n.edges {
        let c = if e.value >= 0.0 {
            RGBColor(200, 40, 40)
        } else {
            RGBColor(40, 80, 200)
        };
        let width = 1 + (5.0 * e.value.abs() / vmax).round() as u32;
        let a = pos(e.source_layer, e.source_comp);
        let b = pos(e.target_layer, e.target_comp);
        root.draw(&PathElement::new(
            vec![a, b],
            c.mix(0.75).stroke_width(width),
        ))
        .map_err(err)?;
    }
    for &l in &layers {
        for k in 1..=kmax {
            root.draw(&Circle::new(pos(l, k), 4, RGBColor(90, 90, 90).filled()))
                .map_err(err)?;
        }
        let (x, _) = pos(l, 1);
        let s = text(11).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(format!("L{l}"), (x, y1 + 12), s))
            .map_err(err)?;
    }
    for k in 1..=kmax {
        let (_, y) = pos(layers.first().copied().unwrap_or(0), k);
        let s = text(11).pos(Pos::new(HPos::Right, VPos::Center));
        root.draw(&Text::new(format!("C{k}"), (x0 - 14, y), s))
            .map_err(err)?;
    }
    Ok(())
}

/// The figure as an SVG document.
pub fn svg(fig: &Figure) -> Result<String, String> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, SIZE).into_drawing_area();
        render(&root, fig)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

/// The figure as a PNG file's bytes.
pub fn png(fig: &Figure) -> Result<Vec<u8>, String> {
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        render(&root, fig)?;
        root.present().map_err(err)?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_image_data(&rgb).map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_is_white_at_the_center_and_saturates() {
        assert_eq!(diverging(0.5, 0.5, 0.5), RGBColor(255, 255, 255));
        assert_eq!(diverging(1.0, 0.5, 0.5), RGBColor(200, 40, 40));
        assert_eq!(diverging(-9.0, 0.5, 0.5), RGBColor(40, 80, 200));
    }

    #[test]
    fn long_labels_wrap_at_the_middle_separator() {
        assert_eq!(wrap("raw", 12), vec!["raw"]);
        assert_eq!(wrap("prefix_injection", 12), vec!["prefix", "injection"]);
        assert_eq!(
            wrap("privacy_public_figure", 10),
            vec!["privacy", "public", "figure"]
        );
        assert_eq!(wrap("homonyms", 5), vec!["homon", "yms"]);
        assert_eq!(wrap("a_b_c_d_e_f", 1), vec!["a", "b", "c…"]);
        assert_eq!(tick(&3.0), "3");
        assert_eq!(tick(&0.25), "0.25");
        assert_eq!(tick(&0.0001), "1e-4");
    }
}
