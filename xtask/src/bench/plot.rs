//! The plot of `cargo xtask bench`: IPC round-trip cost against message size (0..63
//! untyped words each way), same space and between spaces, with Linux's round trips as
//! horizontal lines when they were measured. Written as SVG and PNG with `plotters`.
//!
//! The y axis is logarithmic: the fast path (up to 8 words), the full path and Linux's
//! round trips differ by orders of magnitude. Text is drawn with a TrueType font read from
//! the system (Debian's `fonts-dejavu-core`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Where the TrueType font is looked for, in order.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// The Debian package providing the first font.
pub const FONT_PACKAGE: &str = "fonts-dejavu-core";

/// Family name the font is registered under.
const FAMILY: &str = "sans-serif";

/// Size of the picture in pixels.
const SIZE: (u32, u32) = (960, 600);

/// What the plot shows.
#[derive(Debug, Clone, Default)]
pub struct PlotData {
    /// `(words, value)` of the same-space round trip.
    pub intra: Vec<(u32, f64)>,
    /// `(words, value)` of the inter-space round trip.
    pub inter: Vec<(u32, f64)>,
    /// Horizontal reference lines: `(label, value)`.
    pub lines: Vec<(String, f64)>,
    /// Unit of the values ("instructions" or "cycles").
    pub unit: String,
    /// Subtitle: how the numbers were made.
    pub subtitle: String,
}

impl PlotData {
    /// The y range: every value with some room, at least 1.
    fn y_range(&self) -> Option<(f64, f64)> {
        let values = self.intra.iter().chain(&self.inter).map(|p| p.1).chain(self.lines.iter().map(|l| l.1));
        let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        (lo.is_finite() && hi > 0.0).then(|| ((lo * 0.7).max(1.0), hi * 1.5))
    }
}

/// The y axis labels: 1, 2, 5 times the powers of ten inside `lo..=hi`.
fn key_points(lo: f64, hi: f64) -> Vec<f64> {
    let mut points = Vec::new();
    let mut decade = 10f64.powf(lo.max(1.0).log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * decade;
            if (lo..=hi).contains(&v) {
                points.push(v);
            }
        }
        decade *= 10.0;
    }
    points
}

/// Registers the first font found; fails naming the package to install.
fn register_font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    let result = REGISTERED.get_or_init(|| {
        let Some(path) = FONT_PATHS.iter().map(Path::new).find(|p| p.is_file()) else {
            return Err(format!(
                "no TrueType font found (looked for {}); install it with: apt-get install {FONT_PACKAGE}",
                FONT_PATHS.join(", ")
            ));
        };
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // The font must live as long as the process: plotters keeps it in a global table.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
    });
    result.clone().map_err(|e| anyhow!(e))
}

/// Draws the plot onto `root`.
fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, data: &PlotData) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the plot: {e:?}");
    let Some((lo, hi)) = data.y_range() else { bail!("nothing to plot") };
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled("IPC round trip by message size", (FAMILY, 26)).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&data.subtitle, (FAMILY, 15))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0u32..63u32, (lo..hi).log_scale().with_key_points(key_points(lo, hi)))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("untyped words in the message and in the reply")
        .y_desc(format!("{} per round trip", data.unit))
        .x_labels(17)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    let series = [
        ("Tern, two threads of one space", &data.intra, BLUE),
        ("Tern, two address spaces", &data.inter, RED),
    ];
    for (label, points, color) in series {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&(x, y)| Circle::new((x, y), 2, color.filled())))
            .map_err(err)?;
    }
    let palette = [RGBColor(0, 128, 0), RGBColor(128, 0, 160), RGBColor(200, 120, 0), RGBColor(0, 128, 160)];
    for (i, (label, value)) in data.lines.iter().enumerate() {
        let color = palette[i % palette.len()];
        let value = *value;
        chart
            .draw_series(DashedLineSeries::new([(0u32, value), (63u32, value)], 8, 5, color.stroke_width(2)))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `<stem>.svg` and `<stem>.png`; returns their paths.
pub fn write(stem: &Path, data: &PlotData) -> Result<(PathBuf, PathBuf)> {
    register_font()?;
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    draw(SVGBackend::new(&svg, SIZE).into_drawing_area(), data)
        .with_context(|| format!("writing {}", svg.display()))?;
    draw(BitMapBackend::new(&png, SIZE).into_drawing_area(), data)
        .with_context(|| format!("writing {}", png.display()))?;
    Ok((svg, png))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> PlotData {
        PlotData {
            intra: (0..=63).map(|n| (n, 175.0 + f64::from(n) * 20.0)).collect(),
            inter: (0..=63).map(|n| (n, 174.0 + f64::from(n) * 21.0)).collect(),
            lines: vec![("Linux futex, two processes".into(), 12579.0)],
            unit: "instructions".into(),
            subtitle: "QEMU TCG -icount shift=0".into(),
        }
    }

    #[test]
    fn key_points_are_1_2_5_per_decade() {
        assert_eq!(key_points(120.0, 12000.0), [200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0]);
        assert_eq!(key_points(1.0, 3.0), [1.0, 2.0]);
    }

    #[test]
    fn y_range_covers_every_value() {
        let (lo, hi) = data().y_range().unwrap();
        assert!((1.0..=174.0).contains(&lo));
        assert!(hi >= 12579.0);
        assert!(PlotData::default().y_range().is_none());
    }

    #[test]
    fn writes_svg_and_png() {
        // Needs the font package (installed by `cargo xtask bench` when missing).
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (svg, png) = write(&dir.join("ipc"), &data()).unwrap();
        let svg_text = std::fs::read_to_string(&svg).unwrap();
        assert!(svg_text.starts_with("<svg"));
        assert!(svg_text.contains("IPC round trip by message size"));
        assert!(svg_text.contains("Linux futex, two processes"));
        let png_bytes = std::fs::read(&png).unwrap();
        assert!(png_bytes.starts_with(b"\x89PNG"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
