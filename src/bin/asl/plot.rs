//! Line plots as PNG files, drawn with an embedded font (DejaVu Sans, `assets/`), so no system
//! font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::fail::{runtime, Failure};

/// DejaVu Sans 2.37 (license: `assets/DejaVuSans-LICENSE`).
static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() -> Result<(), Failure> {
    static ONCE: Once = Once::new();
    let mut ok = true;
    ONCE.call_once(|| {
        ok = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok();
    });
    if ok {
        Ok(())
    } else {
        Err(runtime("the embedded font could not be loaded"))
    }
}

/// One line of a plot.
pub struct Series<'a> {
    /// Its legend entry.
    pub label: String,
    /// `(x, y)` points in order of x.
    pub points: &'a [(f64, f64)],
    /// Its colour.
    pub color: RGBColor,
}

/// The axes' range: the data's, with a margin; a flat series gets a band around its value.
fn range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-3 * hi.abs().max(1.0));
    (lo - pad * span, hi + pad * span)
}

/// One panel of a figure: its y axis and its lines (panels share the x axis's label).
pub struct Panel<'a> {
    /// The y axis's label.
    pub y_desc: String,
    /// The lines.
    pub series: Vec<Series<'a>>,
}

/// Draws `panels`, stacked top to bottom under `title`, into a PNG at `path` (written to a
/// temporary file, then renamed).
pub fn line_plot(
    path: &Path,
    title: &str,
    x_desc: &str,
    panels: &[Panel<'_>],
) -> Result<(), Failure> {
    register_font()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The image encoder picks the format from the extension, so the temporary name keeps it.
    let tmp = dir.join(format!(".{name}.{}.tmp.png", std::process::id()));
    let drawn = draw(&tmp, title, x_desc, panels)
        .map_err(|e| runtime(format!("cannot draw {}: {e}", path.display())))
        .and_then(|_| {
            std::fs::rename(&tmp, path)
                .map_err(|e| runtime(format!("cannot write {}: {e}", path.display())))
        });
    if drawn.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drawn
}

fn draw(
    file: &Path,
    title: &str,
    x_desc: &str,
    panels: &[Panel<'_>],
) -> Result<(), Box<dyn std::error::Error>> {
    let height = 120 + 480 * panels.len() as u32;
    let root = BitMapBackend::new(file, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, (FAMILY, 28))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (area, panel) in areas.iter().zip(panels) {
        let all = || panel.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = range(all().map(|p| p.0), 0.02);
        let (y0, y1) = range(all().map(|p| p.1), 0.12);
        let mut chart = ChartBuilder::on(area)
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(90)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(panel.y_desc.as_str())
            .axis_desc_style((FAMILY, 20))
            .label_style((FAMILY, 15))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for s in &panel.series {
            let color = s.color;
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 17))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
