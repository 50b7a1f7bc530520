//! Charts drawn on the server as inline SVG: no script, no outside request.
//!
//! A chart is a few series of counts over equal time buckets, drawn as lines over a grid. The
//! SVG holds only the lines and the grid and stretches to any width; the scale's values and
//! the time axis are HTML beside it, so their text stays readable on a phone. Every number in
//! the markup is computed here; text goes through maud's escaping.

use maud::{Markup, html};

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its name, in the legend.
    pub name: &'static str,
    /// Its CSS class (the stylesheet gives each its colour).
    pub class: &'static str,
    /// One count per bucket, oldest first.
    pub values: Vec<i64>,
}

/// The drawing's own units: the SVG stretches them to the page.
const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 200.0;
/// Room above and below the plot, so that lines at 0 and at the top are drawn whole.
const PAD: f64 = 3.0;

/// The smallest "round" number (1, 2 or 5 times a power of ten) at or above `n`, at least 1.
pub fn nice_top(n: i64) -> i64 {
    let n = n.max(1);
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            if step.saturating_mul(m) >= n {
                return step.saturating_mul(m);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The scale's marks for a [`nice_top`] value, from 0 up, all whole numbers: 0–1, 0–2 by 1,
/// 0–5 by 1, 0–10 by 2, 0–20 by 5, 0–50 by 10, and so on.
pub fn ticks(top: i64) -> Vec<i64> {
    let divisions = match top {
        1 => 1,
        2 => 2,
        t if t.to_string().starts_with('2') => 4,
        _ => 5,
    };
    (0..=divisions).map(|i| top * i / divisions).collect()
}

/// A line chart of `series`, labelled `first` and `last` at the ends of the time axis and
/// described by `title` for assistive technology.
pub fn line_chart(title: &str, series: &[Series], first: &str, last: &str) -> Markup {
    let buckets = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let top = nice_top(series.iter().flat_map(|s| s.values.iter().copied()).max().unwrap_or(0));
    let marks = ticks(top);
    let x = |i: usize| if buckets <= 1 { 0.0 } else { WIDTH * i as f64 / (buckets - 1) as f64 };
    let y = |v: i64| PAD + (HEIGHT - 2.0 * PAD) * (1.0 - v.max(0) as f64 / top as f64);
    let points = |values: &[i64]| {
        values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect::<Vec<_>>().join(" ")
    };
    let total: i64 = series.first().map_or(0, |s| s.values.iter().sum());
    html! {
        figure.chart {
            div.plot {
                div.yaxis aria-hidden="true" { @for m in marks.iter().rev() { span { (m) } } }
                svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) preserveAspectRatio="none" role="img"
                    aria-label=(format!("{title}: {total} in all")) {
                    title { (title) }
                    @for m in &marks {
                        line.grid x1="0" x2=(WIDTH) y1=(format!("{:.1}", y(*m))) y2=(format!("{:.1}", y(*m))) {}
                    }
                    @for s in series {
                        polyline class=(format!("series {}", s.class)) points=(points(&s.values)) {}
                    }
                }
                div {}
                div.xaxis { span { (first) } span { (last) } }
            }
            figcaption {
                @for s in series {
                    span class=(format!("legend {}", s.class)) { (s.name) " " strong { (s.values.iter().sum::<i64>()) } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_tops_at_a_round_number_with_whole_marks() {
        assert_eq!([0, 1, 2, 3, 7, 10, 11, 99, 101, 4999].map(nice_top), [1, 1, 2, 5, 10, 10, 20, 100, 200, 5000]);
        assert_eq!(ticks(1), [0, 1]);
        assert_eq!(ticks(2), [0, 1, 2]);
        assert_eq!(ticks(5), [0, 1, 2, 3, 4, 5]);
        assert_eq!(ticks(10), [0, 2, 4, 6, 8, 10]);
        assert_eq!(ticks(20), [0, 5, 10, 15, 20]);
        assert_eq!(ticks(200), [0, 50, 100, 150, 200]);
        assert_eq!(ticks(5000), [0, 1000, 2000, 3000, 4000, 5000]);
    }

    #[test]
    fn a_chart_escapes_its_text_and_draws_each_series() {
        let s = vec![
            Series { name: "accepted", class: "accepted", values: vec![0, 4, 2] },
            Series { name: "failed", class: "failed", values: vec![0, 1, 0] },
        ];
        let svg = line_chart("<title>", &s, "10:00", "11:00").into_string();
        assert!(svg.contains("&lt;title&gt;") && !svg.contains("<title><title>"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
        // The peak (4) on a scale of 5: y = 3 + 194 × (1 − 0.8).
        assert!(svg.contains("points=\"0.0,197.0 500.0,41.8 1000.0,119.4\""), "{svg}");
        assert!(svg.contains("accepted <strong>6</strong>"), "{svg}");
        assert!(!svg.contains("style="), "inline styles break the Content-Security-Policy");
    }
}
