//! What the load bench reads from the services: their Prometheus metrics,
//! and the CPU time of their processes.

use std::collections::BTreeMap;

/// One scrape of a `/metrics` page: every sample by its full series name
/// (`name{label="value",…}` as printed).
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    pub async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<Scrape> {
        let text = http.get(url).send().await?.error_for_status()?.text().await?;
        Ok(Scrape::parse(&text))
    }

    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape { samples }
    }

    /// What grew since `earlier` (counters and histograms over an interval).
    pub fn minus(&self, earlier: &Scrape) -> Scrape {
        let samples = self
            .samples
            .iter()
            .map(|(k, v)| (k.clone(), v - earlier.samples.get(k).copied().unwrap_or(0.0)))
            .collect();
        Scrape { samples }
    }

    /// The sum of every series of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.series(name).map(|(_, v)| v).sum()
    }

    /// `(label value, sum)` of `name`'s series, summed by one label.
    pub fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for (series, value) in self.series(name) {
            if let Some(v) = label_value(series, label) {
                *sums.entry(v.to_owned()).or_default() += value;
            }
        }
        sums.into_iter().collect()
    }

    /// The `q` quantile of histogram `name` (all its series together), as
    /// the upper bound of the bucket holding it; `None` without samples.
    pub fn histogram_quantile(&self, name: &str, q: f64) -> Option<f64> {
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (series, count) in self.series(&format!("{name}_bucket")) {
            let le = label_value(series, "le")?;
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            buckets.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += count;
        }
        let mut sorted: Vec<(f64, f64)> = buckets.into_values().collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = sorted.last()?.1;
        if total <= 0.0 {
            return None;
        }
        sorted
            .iter()
            .find(|(_, count)| *count >= total * q)
            .map(|(bound, _)| *bound)
    }

    fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.samples.iter().filter_map(move |(series, value)| {
            let rest = series.strip_prefix(name)?;
            (rest.is_empty() || rest.starts_with('{')).then_some((series.as_str(), *value))
        })
    }
}

fn label_value<'a>(series: &'a str, label: &str) -> Option<&'a str> {
    let labels = series.split_once('{')?.1.strip_suffix('}')?;
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == label).then(|| v.trim_matches('"'))
    })
}

/// CPU seconds (user and system) process `pid` has used, from
/// `/proc/<pid>/stat`; 0 when it cannot be read. Linux reports them in
/// USER_HZ ticks, which is 100 on every Linux ABI.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces; the fields after it are fixed.
    let Some((_, after)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP x_total things\n\
        x_total{exchange=\"a\",kind=\"trade\"} 10\n\
        x_total{exchange=\"b\",kind=\"trade\"} 5\n\
        x_total{exchange=\"a\",kind=\"book\"} 2\n\
        x_totally 99\n\
        age_bucket{le=\"0.001\"} 0\n\
        age_bucket{le=\"0.002\"} 90\n\
        age_bucket{le=\"0.004\"} 99\n\
        age_bucket{le=\"+Inf\"} 100\n";

    #[test]
    fn series_are_summed_by_label_and_differenced() {
        let now = Scrape::parse(PAGE);
        assert_eq!(
            now.by_label("x_total", "kind"),
            vec![("book".to_owned(), 2.0), ("trade".to_owned(), 15.0)]
        );
        let earlier = Scrape::parse("x_total{exchange=\"a\",kind=\"trade\"} 4\n");
        assert_eq!(
            now.minus(&earlier).by_label("x_total", "exchange"),
            vec![("a".to_owned(), 8.0), ("b".to_owned(), 5.0)]
        );
        assert_eq!(now.sum("x_total"), 17.0, "x_totally is another metric");
    }

    #[test]
    fn a_quantile_is_the_bound_of_its_bucket() {
        let page = Scrape::parse(PAGE);
        assert_eq!(page.histogram_quantile("age", 0.5), Some(0.002));
        assert_eq!(page.histogram_quantile("age", 0.99), Some(0.004));
        assert_eq!(page.histogram_quantile("age", 1.0), Some(f64::INFINITY));
        assert_eq!(Scrape::default().histogram_quantile("age", 0.99), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin: u64 = (0..5_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(cpu_seconds(std::process::id()) > 0.0);
    }
}
