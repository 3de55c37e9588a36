//! The sweep plot: throughput against child concurrency, one line per process count, as SVG.
//!
//! Hand-written SVG keeps xtask free of a plotting crate; the plot is simple enough: a log2 x axis,
//! a linear y axis from zero, gridlines, one polyline per series and the in-process reference as a
//! dashed line.

use std::fmt::Write as _;

use polyloop_bench_report::Sweep;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 290.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

/// A sweep point: x is the child concurrency, y tasks per second.
#[derive(Debug, Clone, Copy)]
struct Point {
    x: f64,
    y: f64,
}

pub(crate) fn sweep_svg(sweep: &Sweep) -> String {
    let mut series: Vec<(&str, Vec<Point>)> = Vec::new();
    for point in &sweep.points {
        let (x, y) = (f64::from(point.child_concurrency), point.tasks_per_s);
        // The x axis is logarithmic.
        if x <= 0.0 || !y.is_finite() {
            continue;
        }
        match series.iter_mut().find(|(label, _)| *label == point.series) {
            Some((_, points)) => points.push(Point { x, y }),
            None => series.push((&point.series, vec![Point { x, y }])),
        }
    }
    for (_, points) in &mut series {
        points.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    render(&series, sweep.reference_tasks_per_s, sweep.n as f64)
}

fn render(series: &[(&str, Vec<Point>)], reference: Option<f64>, n: f64) -> String {
    let all = || series.iter().flat_map(|(_, points)| points.iter());
    let x_min = all().map(|p| p.x).fold(f64::INFINITY, f64::min);
    let x_max = all().map(|p| p.x).fold(0.0, f64::max);
    let (x_lo, x_hi) = if x_min.is_finite() && x_max > x_min {
        (x_min.log2().floor(), x_max.log2().ceil())
    } else {
        (0.0, 10.0)
    };
    let y_data_max = all().map(|p| p.y).chain(reference).fold(0.0, f64::max);
    let (y_step, y_hi) = nice_axis(y_data_max);

    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x.log2() - x_lo) / (x_hi - x_lo).max(1.0) * plot_w;
    let sy = |y: f64| TOP + plot_h - y / y_hi * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" font-size="15" text-anchor="middle">polyloop no-op map throughput ({} inputs) by child concurrency</text>"#,
        LEFT + plot_w / 2.0,
        fmt_count(n)
    );

    // Gridlines and tick labels.
    let mut y = 0.0;
    while y <= y_hi + y_step / 2.0 {
        let py = sy(y);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            py + 4.0,
            fmt_rate(y)
        );
        y += y_step;
    }
    let mut e = x_lo;
    while e <= x_hi {
        let px = sx(e.exp2());
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            fmt_count(e.exp2())
        );
        e += 1.0;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">child concurrency (tasks in flight per worker, log scale)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 16.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">tasks per second</text>"#,
        TOP + plot_h / 2.0
    );

    // Series, with a legend entry each.
    let legend_x = LEFT + plot_w + 16.0;
    let mut legend_y = TOP + 10.0;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let coords: Vec<String> =
            points.iter().map(|p| format!("{:.1},{:.1}", sx(p.x), sy(p.y))).collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            coords.join(" ")
        );
        for p in points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{}, concurrency {}: {}</title></circle>"#,
                sx(p.x),
                sy(p.y),
                escape(label),
                p.x,
                fmt_rate(p.y)
            );
        }
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            legend_x + 24.0,
            legend_x + 30.0,
            legend_y + 4.0,
            escape(label)
        );
        legend_y += 20.0;
    }
    if let Some(reference) = reference {
        let py = sy(reference);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#555" stroke-dasharray="6 4"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="#555" stroke-dasharray="6 4"/><text x="{}" y="{}">in-process tokio</text>"##,
            legend_x + 24.0,
            legend_x + 30.0,
            legend_y + 4.0
        );
    }
    if series.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">no sweep figures in this run</text>"#,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A step of 1, 2 or 5 times a power of ten giving about five gridlines, and the axis top.
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 5.0);
    }
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| *s >= rough);
    let step = step.unwrap_or(10.0 * power);
    (step, (max / step).ceil() * step)
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn fmt_count(v: f64) -> String {
    if v >= 1e6 && v % 1e6 == 0.0 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 && v % 1e3 == 0.0 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use polyloop_bench_report::SweepPoint;

    use super::*;

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_axis(4.3e6), (1e6, 5e6));
        assert_eq!(nice_axis(9.0), (2.0, 10.0));
        assert_eq!(nice_axis(0.0), (1.0, 5.0));
    }

    #[test]
    fn draws_each_series_and_survives_an_empty_sweep() {
        let point = |series: &str, processes, child_concurrency, tasks_per_s| SweepPoint {
            series: series.to_owned(),
            processes,
            full_prefetch: false,
            child_concurrency,
            tasks_per_s,
        };
        let mut sweep = Sweep {
            n: 100_000,
            points: vec![
                point("2 processes", 2, 16, 4e6),
                point("2 processes", 2, 1, 1e5),
                point("1 process", 1, 16, 2e6),
            ],
            reference_tasks_per_s: Some(9e6),
        };
        let svg = sweep_svg(&sweep);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("in-process tokio"));
        assert!(svg.ends_with("</svg>\n"));
        sweep.points.clear();
        assert!(sweep_svg(&sweep).contains("no sweep figures"));
    }
}
