//! The plots in BENCHMARKS.md, drawn by the bench from its own figures as
//! SVG (plotters' SVG backend: no fonts or bitmaps to install).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// One line: its name and its points.
pub type Series = (String, Vec<(f64, f64)>);

const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 0, 0),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

/// Labels for a chart.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// Draws `series` as lines with points into the SVG file `path`.
pub fn lines(path: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
    let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut ctx = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| err(&e))?;
    ctx.configure_mesh()
        .x_desc(chart.x)
        .y_desc(chart.y)
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        ctx.draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        ctx.draw_series(pts.iter().map(|p| Circle::new(*p, 3, colour.filled())))
            .map_err(|e| err(&e))?;
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// A row's series name and point, or `None` to leave the row out.
type Point = Option<(String, f64, f64)>;

/// Groups `rows` into series by `key`, each point `(x, y)`, sorted by x.
fn group(rows: &[serde_json::Value], key: &dyn Fn(&serde_json::Value) -> Point) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for (name, x, y) in rows.iter().filter_map(key) {
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push((x, y)),
            None => series.push((name, vec![(x, y)])),
        }
    }
    for (_, pts) in &mut series {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

/// ADD median against pool size, one line per plugin, from the `ops` rows.
pub fn add_latency(ops: &serde_json::Value, path: &Path) -> Result<()> {
    let rows = ops.as_array().cloned().unwrap_or_default();
    let series = group(&rows, &|r| {
        Some((
            r["plugin"].as_str()?.to_string(),
            r["pool"].as_f64()?,
            r["add"]["median_ms"].as_f64()?,
        ))
    });
    let chart = Chart {
        title: "Warm ADD, one process per call (median)",
        x: "addresses allocated in the pool",
        y: "milliseconds",
    };
    lines(path, &chart, &series)
}

/// Time until every pod has an address against the number of nodes, one
/// line per kind of run (pods per node, warm, cold or churn).
pub fn cluster(runs: &serde_json::Value, path: &Path) -> Result<()> {
    let rows = runs.as_array().cloned().unwrap_or_default();
    let series = group(&rows, &|r| {
        let run = r["run"].as_str()?;
        let mode = run.split_once(' ').map_or("warm", |(_, m)| m);
        Some((
            format!("{} pods per node, {mode}", r["pods_per_node"].as_u64()?),
            r["nodes"].as_f64()?,
            r["seconds_until_every_pod_has_an_address"].as_f64()?,
        ))
    });
    let chart = Chart {
        title: "Every pod of a burst addressed, on one etcd (2 cores)",
        x: "nodes starting their pods at once",
        y: "seconds until every pod has an address",
    };
    lines(path, &chart, &series)
}
