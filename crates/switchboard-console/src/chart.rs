//! Charts drawn on the server as inline SVG: no script, no outside request.
//!
//! A chart is a few series of counts over equal time buckets, drawn as lines over a grid with
//! the scale's top value and the first and last bucket's labels. Every number in the markup is
//! computed here; text goes through maud's escaping.

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

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

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

/// A line chart of `series` over `buckets` buckets, labelled `first` and `last` at the ends of
/// the time axis, described by `title` for assistive technology.
pub fn line_chart(title: &str, series: &[Series], first: &str, last: &str) -> Markup {
    let buckets = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let top = nice_top(series.iter().flat_map(|s| s.values.iter().copied()).max().unwrap_or(0));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| {
        if buckets <= 1 { LEFT } else { LEFT + plot_w * i as f64 / (buckets - 1) as f64 }
    };
    let y = |v: i64| TOP + plot_h - plot_h * (v.max(0) as f64 / top as f64);
    let points = |values: &[i64]| {
        values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect::<Vec<_>>().join(" ")
    };
    let total: i64 = series.first().map_or(0, |s| s.values.iter().sum());
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(format!("{title}: {total} in all"))
                preserveAspectRatio="none" {
                title { (title) }
                @for step in 0..=4 {
                    @let v = top * step / 4;
                    line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", y(v))) y2=(format!("{:.1}", y(v))) {}
                    text.axis x=(LEFT - 4.0) y=(format!("{:.1}", y(v) + 4.0)) text-anchor="end" { (v) }
                }
                text.axis x=(LEFT) y=(HEIGHT - 6.0) { (first) }
                text.axis x=(WIDTH - RIGHT) y=(HEIGHT - 6.0) text-anchor="end" { (last) }
                @for s in series {
                    polyline class=(format!("series {}", s.class)) points=(points(&s.values)) {}
                }
            }
            figcaption {
                @for s in series {
                    span.legend class=(s.class) { (s.name) " " strong { (s.values.iter().sum::<i64>()) } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_tops_at_a_round_number() {
        assert_eq!([0, 1, 2, 3, 7, 10, 11, 99, 101, 4999].map(nice_top), [1, 1, 2, 5, 10, 10, 20, 100, 200, 5000]);
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
        // The peak (4) is at the top of a scale of 5: y = 10 + 186 - 186 * 0.8.
        assert!(svg.contains("44.0,196.0 378.0,47.2 712.0,121.6"), "{svg}");
        assert!(svg.contains("accepted <strong>6</strong>"), "{svg}");
    }
}
