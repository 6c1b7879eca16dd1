//! Plots for the report (PNG, plotters' bitmap backend): per scenario, TPS per target as
//! bars with the min–max across rounds as whiskers, and latency percentiles (p50, p99,
//! p99.9) per target on a log scale; per idle scenario, memory per connection; and one
//! overview of every scenario's TPS relative to direct.
//!
//! Text is drawn with plotters' pure-Rust `ab_glyph` renderer and DejaVu Sans read at run
//! time (Debian's fonts-dejavu-core), so no fontconfig/freetype is needed to build or run.
//! Without the font the plots are still drawn, without any text; a failed plot is left out
//! of the report with a warning, never an error.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{thousands, Report, ScenarioReport, TargetSummary};
use crate::scenario::ScenarioKind;
use crate::targets::TargetKind;

const FONT: &str = "sans-serif";
const FONT_CANDIDATES: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers DejaVu Sans (or `$TOLLGATE_LOADTEST_FONT`) once; false when none loads.
fn font_loaded() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        let from_env = std::env::var_os("TOLLGATE_LOADTEST_FONT").map(std::path::PathBuf::from);
        let candidates: Vec<std::path::PathBuf> = match from_env {
            Some(p) => vec![p],
            None => FONT_CANDIDATES.iter().map(Into::into).collect(),
        };
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                // plotters keeps registered fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        eprintln!(
            "warning: no DejaVuSans.ttf (apt-get install fonts-dejavu-core, or set TOLLGATE_LOADTEST_FONT): plots have no text"
        );
        false
    })
}

fn target_color(t: TargetKind) -> RGBColor {
    match t {
        TargetKind::Direct => RGBColor(120, 120, 120),
        TargetKind::NullRelay => RGBColor(66, 133, 244),
        TargetKind::Pgbouncer => RGBColor(244, 160, 0),
        TargetKind::TollgateOff => RGBColor(52, 168, 83),
        TargetKind::TollgateOn => RGBColor(123, 31, 162),
    }
}

/// One bar: its height and optional whiskers.
#[derive(Debug, Clone, Copy)]
struct Bar {
    value: f64,
    low: Option<f64>,
    high: Option<f64>,
}

/// A grouped bar chart: groups along x, one bar per series within a group.
struct Bars {
    title: String,
    y_desc: String,
    groups: Vec<String>,
    series: Vec<(String, RGBColor)>,
    /// [group][series].
    values: Vec<Vec<Option<Bar>>>,
    log_y: bool,
    /// Value labels above bars.
    labels: bool,
    /// With a single series: one colour per group (each target in its own colour).
    group_colors: Vec<RGBColor>,
    format: fn(f64) -> String,
}

fn fmt_plain(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 1000.0 {
        thousands(v)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_ratio(v: f64) -> String {
    format!("{v:.2}×")
}

impl Bars {
    fn draw(&self, path: &Path) -> anyhow::Result<()> {
        let text = font_loaded();
        let (w, h) = (1000u32, 560u32);
        let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        let all: Vec<f64> = self
            .values
            .iter()
            .flatten()
            .flatten()
            .flat_map(|b| [Some(b.value), b.low, b.high])
            .flatten()
            .filter(|v| v.is_finite() && (*v > 0.0 || !self.log_y))
            .collect();
        if all.is_empty() {
            return Err(anyhow!("nothing to plot"));
        }
        let max = all.iter().copied().fold(f64::MIN, f64::max);
        let min = all.iter().copied().fold(f64::MAX, f64::min);
        let tf = |v: f64| if self.log_y { v.max(1e-9).log10() } else { v };
        // Headroom above the tallest bar for its value label, and for the legend when
        // there is one.
        let legend = text && self.series.len() > 1;
        let (y0, y1) = if self.log_y {
            let top = if legend { 0.7 } else { 0.25 };
            ((min.log10() - 0.3).floor(), max.log10() + top)
        } else {
            (0.0, max * if legend { 1.4 } else { 1.15 })
        };
        let n = self.groups.len();
        let mut builder = ChartBuilder::on(&root);
        builder.margin(14).margin_right(20);
        if text {
            builder
                .caption(&self.title, (FONT, 22))
                .margin_top(10)
                .x_label_area_size(52)
                .y_label_area_size(80);
        } else {
            builder.x_label_area_size(4).y_label_area_size(4);
        }
        let mut chart = builder
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)
            .map_err(|e| anyhow!("{e}"))?;
        {
            let log_y = self.log_y;
            let format = self.format;
            let fmt = move |v: &f64| {
                if log_y {
                    format(10f64.powf(*v))
                } else {
                    format(*v)
                }
            };
            let mut mesh = chart.configure_mesh();
            mesh.disable_x_mesh().x_labels(0);
            if text {
                mesh.y_desc(self.y_desc.as_str())
                    .y_labels(8)
                    .y_label_formatter(&fmt)
                    .label_style((FONT, 14))
                    .axis_desc_style((FONT, 15));
            } else {
                mesh.y_labels(0);
            }
            mesh.draw().map_err(|e| anyhow!("{e}"))?;
        }

        let k = self.series.len().max(1) as f64;
        let group_width = 0.8;
        let bar_width = group_width / k;
        for (gi, row) in self.values.iter().enumerate() {
            for (si, bar) in row.iter().enumerate() {
                let Some(bar) = bar else { continue };
                let color = match self.group_colors.get(gi) {
                    Some(c) => *c,
                    None => self.series.get(si).map_or(BLACK, |s| s.1),
                };
                let x0 = gi as f64 - group_width / 2.0 + si as f64 * bar_width + bar_width * 0.08;
                let x1 = x0 + bar_width * 0.84;
                let top = tf(bar.value);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, y0), (x1, top.max(y0))],
                        color.filled(),
                    )))
                    .map_err(|e| anyhow!("{e}"))?;
                let mid = (x0 + x1) / 2.0;
                if let (Some(lo), Some(hi)) = (bar.low, bar.high) {
                    let cap = (x1 - x0) * 0.25;
                    let (lo, hi) = (tf(lo), tf(hi));
                    for seg in [
                        vec![(mid, lo), (mid, hi)],
                        vec![(mid - cap, lo), (mid + cap, lo)],
                        vec![(mid - cap, hi), (mid + cap, hi)],
                    ] {
                        chart
                            .draw_series(std::iter::once(PathElement::new(
                                seg,
                                BLACK.stroke_width(2),
                            )))
                            .map_err(|e| anyhow!("{e}"))?;
                    }
                }
                if text && self.labels {
                    let y = tf(bar.high.unwrap_or(bar.value).max(bar.value));
                    let (px, py) = chart.backend_coord(&(mid, y));
                    root.draw(&Text::new(
                        (self.format)(bar.value),
                        (px, py - 4),
                        TextStyle::from((FONT, 12).into_font())
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    ))
                    .map_err(|e| anyhow!("{e}"))?;
                }
            }
        }
        if text {
            // Group names under the axis (split on '-' over two lines when long).
            for (gi, name) in self.groups.iter().enumerate() {
                let (px, py) = chart.backend_coord(&(gi as f64, y0));
                let lines = split_label(name, (w as usize / n.max(1)) / 8);
                for (li, line) in lines.iter().enumerate() {
                    root.draw(&Text::new(
                        line.clone(),
                        (px, py + 8 + 17 * li as i32),
                        TextStyle::from((FONT, 15).into_font())
                            .pos(Pos::new(HPos::Center, VPos::Top)),
                    ))
                    .map_err(|e| anyhow!("{e}"))?;
                }
            }
            // Legend, top right, when bars within a group mean different things.
            if legend {
                let (right, top) = chart.backend_coord(&(n as f64 - 0.5, y1));
                for (si, (name, color)) in self.series.iter().enumerate() {
                    let y = top + 8 + 20 * si as i32;
                    let x = right - 150;
                    root.draw(&Rectangle::new([(x, y), (x + 14, y + 14)], color.filled()))
                        .map_err(|e| anyhow!("{e}"))?;
                    root.draw(&Text::new(
                        name.clone(),
                        (x + 20, y),
                        TextStyle::from((FONT, 14).into_font())
                            .pos(Pos::new(HPos::Left, VPos::Top)),
                    ))
                    .map_err(|e| anyhow!("{e}"))?;
                }
            }
        }
        root.present().map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}

/// Splits a label at '-' into at most two lines when it is longer than `max` characters.
fn split_label(s: &str, max: usize) -> Vec<String> {
    if s.len() <= max.max(6) {
        return vec![s.to_owned()];
    }
    match s[..s.len() / 2 + 1].rfind('-').or_else(|| s.find('-')) {
        Some(i) => vec![s[..=i].to_owned(), s[i + 1..].to_owned()],
        None => vec![s.to_owned()],
    }
}

fn summaries(s: &ScenarioReport) -> Vec<(TargetKind, &TargetSummary)> {
    s.summary
        .iter()
        .filter_map(|t| t.target.map(|k| (k, t)))
        .collect()
}

fn tps_plot(s: &ScenarioReport) -> Option<Bars> {
    let rows = summaries(s);
    let groups: Vec<String> = rows.iter().map(|(k, _)| k.key().to_owned()).collect();
    let values: Vec<Vec<Option<Bar>>> = rows
        .iter()
        .map(|(_, t)| {
            vec![t.tps.map(|v| Bar {
                value: v,
                low: t.tps_min,
                high: t.tps_max,
            })]
        })
        .collect();
    if values.iter().flatten().all(Option::is_none) {
        return None;
    }
    Some(Bars {
        title: format!(
            "{} — TPS (median of rounds; whiskers: min–max)",
            s.scenario.name
        ),
        y_desc: "transactions per second".into(),
        groups,
        series: vec![("TPS".into(), RGBColor(66, 133, 244))],
        values,
        log_y: false,
        labels: true,
        format: fmt_plain,
        group_colors: rows.iter().map(|(k, _)| target_color(*k)).collect(),
    })
}

fn latency_plot(s: &ScenarioReport) -> Option<Bars> {
    let rows = summaries(s);
    let values: Vec<Vec<Option<Bar>>> = rows
        .iter()
        .map(|(_, t)| {
            [t.p50_us, t.p99_us, t.p999_us]
                .into_iter()
                .map(|v| {
                    v.map(|value| Bar {
                        value,
                        low: None,
                        high: None,
                    })
                })
                .collect()
        })
        .collect();
    if values.iter().flatten().all(Option::is_none) {
        return None;
    }
    Some(Bars {
        title: format!("{} — latency percentiles (µs, log scale)", s.scenario.name),
        y_desc: "latency, µs".into(),
        groups: rows.iter().map(|(k, _)| k.key().to_owned()).collect(),
        series: vec![
            ("p50".into(), RGBColor(161, 194, 250)),
            ("p99".into(), RGBColor(66, 133, 244)),
            ("p99.9".into(), RGBColor(20, 60, 140)),
        ],
        values,
        log_y: true,
        labels: true,
        format: fmt_plain,
        group_colors: Vec::new(),
    })
}

fn memory_plot(s: &ScenarioReport) -> Option<Bars> {
    let rows: Vec<(TargetKind, &TargetSummary)> = summaries(s)
        .into_iter()
        .filter(|(_, t)| t.rss_kib_per_conn.is_some())
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(Bars {
        title: format!(
            "{} — proxy memory per idle connection (KiB)",
            s.scenario.name
        ),
        y_desc: "KiB per connection".into(),
        groups: rows.iter().map(|(k, _)| k.key().to_owned()).collect(),
        series: vec![
            ("RSS".into(), RGBColor(66, 133, 244)),
            ("PSS".into(), RGBColor(161, 194, 250)),
        ],
        values: rows
            .iter()
            .map(|(_, t)| {
                [t.rss_kib_per_conn, t.pss_kib_per_conn]
                    .into_iter()
                    .map(|v| {
                        v.map(|value| Bar {
                            value,
                            low: None,
                            high: None,
                        })
                    })
                    .collect()
            })
            .collect(),
        log_y: false,
        labels: true,
        format: fmt_plain,
        group_colors: Vec::new(),
    })
}

fn overview_plot(r: &Report) -> Option<Bars> {
    let scenarios: Vec<&ScenarioReport> = r
        .scenarios
        .iter()
        .filter(|s| {
            s.scenario.kind == ScenarioKind::Pgbench
                && s.summary.iter().any(|t| t.ratio_direct.is_some())
        })
        .collect();
    if scenarios.is_empty() {
        return None;
    }
    let targets: Vec<TargetKind> = r.targets.iter().map(|t| t.target).collect();
    Some(Bars {
        title: "TPS relative to direct, every scenario".into(),
        y_desc: "TPS / direct TPS".into(),
        groups: scenarios.iter().map(|s| s.scenario.name.clone()).collect(),
        series: targets
            .iter()
            .map(|t| (t.key().to_owned(), target_color(*t)))
            .collect(),
        values: scenarios
            .iter()
            .map(|s| {
                targets
                    .iter()
                    .map(|t| {
                        s.summary
                            .iter()
                            .find(|x| x.target == Some(*t))
                            .and_then(|x| x.ratio_direct)
                            .map(|value| Bar {
                                value,
                                low: None,
                                high: None,
                            })
                    })
                    .collect()
            })
            .collect(),
        log_y: false,
        labels: false,
        format: fmt_ratio,
        group_colors: Vec::new(),
    })
}

/// Draws every plot into `dir`; returns the file names by scenario ("" for the overview).
pub fn draw_all(r: &Report, dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut draw = |key: &str, file: String, bars: Option<Bars>| {
        let Some(bars) = bars else { return };
        match bars.draw(&dir.join(&file)) {
            Ok(()) => out.entry(key.to_owned()).or_default().push(file),
            Err(e) => eprintln!("warning: plot {file} not drawn: {e:#}"),
        }
    };
    for s in &r.scenarios {
        let name = &s.scenario.name;
        match s.scenario.kind {
            ScenarioKind::Pgbench => {
                let tps = tps_plot(s);
                draw(name, format!("tps-{name}.png"), tps);
                draw(name, format!("latency-{name}.png"), latency_plot(s));
            }
            ScenarioKind::Idle => draw(name, format!("memory-{name}.png"), memory_plot(s)),
        }
    }
    draw("", "tps-relative.png".into(), overview_plot(r));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_labels_split_once_at_a_dash() {
        assert_eq!(split_label("direct", 10), vec!["direct"]);
        assert_eq!(
            split_label("select-prepared-8", 10),
            vec!["select-", "prepared-8"]
        );
        assert_eq!(split_label("averyveryverylongname", 10).len(), 1);
    }

    #[test]
    fn draws_a_png_with_or_without_text() {
        let dir = tempfile::tempdir().unwrap();
        let bars = Bars {
            title: "t".into(),
            y_desc: "y".into(),
            groups: vec!["a".into(), "b".into()],
            series: vec![("s".into(), BLUE), ("u".into(), RED)],
            values: vec![
                vec![
                    Some(Bar {
                        value: 10.0,
                        low: Some(9.0),
                        high: Some(11.0),
                    }),
                    None,
                ],
                vec![
                    Some(Bar {
                        value: 100.0,
                        low: None,
                        high: None,
                    }),
                    Some(Bar {
                        value: 1000.0,
                        low: None,
                        high: None,
                    }),
                ],
            ],
            log_y: true,
            labels: true,
            format: fmt_plain,
            group_colors: Vec::new(),
        };
        let path = dir.path().join("x.png");
        bars.draw(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
