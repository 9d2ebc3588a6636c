//! The timeline as a picture: bitrate, latency and loss over time, as SVG or PNG (by the file
//! name's extension).
//!
//! plotters measures and draws text with a TrueType font that must be registered first; one is
//! looked for in the usual system places unless a path is given.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::report::TimelinePoint;

/// Fonts tried when none is given, in order.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// Why a plot was not written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No usable font.
    #[error(
        "no TrueType font found (tried {0}); install fonts-dejavu-core or pass --plot-font FILE.ttf"
    )]
    NoFont(String),
    /// The extension is neither svg nor png.
    #[error("plot file must end in .svg or .png: {0}")]
    Extension(String),
    /// Drawing or writing failed.
    #[error("drawing {0}")]
    Draw(String),
}

static FONT: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers `font` (or the first system font found) as plotters' `sans-serif`, once per process.
fn ensure_font(font: Option<&Path>) -> Result<(), PlotError> {
    let r = FONT.get_or_init(|| {
        let paths: Vec<PathBuf> = match font {
            Some(p) => vec![p.to_path_buf()],
            None => FONT_CANDIDATES.iter().map(PathBuf::from).collect(),
        };
        for p in &paths {
            if let Ok(bytes) = std::fs::read(p) {
                // plotters keeps fonts for the life of the process; this runs once.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "))
    });
    r.clone().map_err(PlotError::NoFont)
}

fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

/// Writes the timeline to `path` (`.svg` or `.png`).
pub fn write(
    path: &Path,
    title: &str,
    timeline: &[TimelinePoint],
    font: Option<&Path>,
) -> Result<(), PlotError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    ensure_font(font)?;
    let size = (1000, 900);
    match ext.as_str() {
        "svg" => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw(&root, title, timeline)?;
            root.present().map_err(draw_err)
        }
        "png" => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw(&root, title, timeline)?;
            root.present().map_err(draw_err)
        }
        _ => Err(PlotError::Extension(path.display().to_string())),
    }
}

/// A named line: (legend, colour, points).
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// One panel: named series over time.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    y_label: &str,
    t_max: f64,
    series: &[Series<'_>],
) -> Result<(), PlotError> {
    let y_max = series
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max.max(1.0), 0.0..y_max)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(y_label)
        .draw()
        .map_err(draw_err)?;
    for (name, color, pts) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(draw_err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    timeline: &[TimelinePoint],
) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let root = root.titled(title, ("sans-serif", 24)).map_err(draw_err)?;
    let areas = root.split_evenly((3, 1));
    let t_max = timeline.last().map_or(1.0, |p| p.t_s);
    let pick = |f: &dyn Fn(&TimelinePoint) -> f64| -> Vec<(f64, f64)> {
        timeline.iter().map(|p| (p.t_s, f(p))).collect()
    };
    // Seconds without a packet have no latency: leave them out rather than draw a zero.
    let pick_latency = |f: &dyn Fn(&TimelinePoint) -> f64| -> Vec<(f64, f64)> {
        timeline
            .iter()
            .filter(|p| p.latency.count > 0)
            .map(|p| (p.t_s, f(p)))
            .collect()
    };
    panel(
        &areas[0],
        "bitrate",
        "Mbit/s",
        t_max,
        &[
            ("received", BLUE, pick(&|p| p.rx_kbps / 1000.0)),
            ("sent", GREEN, pick(&|p| p.tx_kbps / 1000.0)),
        ],
    )?;
    panel(
        &areas[1],
        "latency",
        "ms",
        t_max,
        &[
            ("p95", RED, pick_latency(&|p| p.latency.p95_ms)),
            ("p50", MAGENTA, pick_latency(&|p| p.latency.p50_ms)),
        ],
    )?;
    let mut cpu = vec![("loss %", BLACK, pick(&|p| p.loss_pct))];
    if timeline.iter().any(|p| p.server_cores.is_some()) {
        cpu.push((
            "server cores x10",
            CYAN,
            pick(&|p| p.server_cores.unwrap_or(0.0) * 10.0),
        ));
    }
    panel(
        &areas[2],
        "loss and server CPU",
        "%  /  cores x10",
        t_max,
        &cpu,
    )?;
    Ok(())
}
