//! Free disk under NATS's and ClickHouse's data.

use serde_json::Value;

use super::clickhouse::clickhouse_query;
use super::{DoctorArgs, Report, Status};
use crate::ops::get;

pub(super) async fn disks(report: &mut Report, http: &reqwest::Client, args: &DoctorArgs) {
    let nats_dir = match &args.nats_data_dir {
        Some(dir) => Some(dir.clone()),
        None => match get(http, &format!("{}/varz", args.endpoints.nats_monitor)).await {
            Ok((200, body)) => serde_json::from_str::<Value>(&body).ok().and_then(|v| {
                v["jetstream"]["config"]["store_dir"]
                    .as_str()
                    .map(std::path::PathBuf::from)
            }),
            _ => None,
        },
    };
    let clickhouse_dir = match &args.clickhouse_data_dir {
        Some(dir) => Some(dir.clone()),
        None => clickhouse_query(
            http,
            &args.endpoints.clickhouse,
            "SELECT path FROM system.disks WHERE name = 'default'",
        )
        .await
        .ok()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from),
    };
    for (what, dir, flag) in [
        ("nats", nats_dir, "--nats-data-dir"),
        ("clickhouse", clickhouse_dir, "--clickhouse-data-dir"),
    ] {
        let name = format!("free disk for {what}");
        let Some(dir) = dir else {
            report.warn(name, "data folder unknown", format!("pass {flag}"));
            continue;
        };
        match nix::sys::statvfs::statvfs(&dir) {
            Ok(fs) => {
                let free = fs.blocks_available().saturating_mul(fs.fragment_size());
                let total = fs.blocks().saturating_mul(fs.fragment_size());
                let detail = format!(
                    "{}: {:.1} GiB free ({:.0} %)",
                    dir.display(),
                    free as f64 / GIB as f64,
                    free_percent(free, total)
                );
                match disk_status(free, total, args.disk_warn_below, args.disk_fail_below) {
                    Status::Pass => report.pass(name, detail),
                    Status::Warn => report.warn(
                        name,
                        format!("{detail}, under the {} % warning line", args.disk_warn_below),
                        "free space or grow the volume soon (or set --disk-warn-below)",
                    ),
                    Status::Fail => report.fail(
                        name,
                        detail,
                        "free space or grow the volume: the server stops writing when it is full",
                    ),
                }
            }
            Err(error) => report.warn(
                name,
                format!("{}: {error} (the folder may be on another host)", dir.display()),
                format!("run doctor on the server's host, or pass {flag}"),
            ),
        }
    }
}

const GIB: u64 = 1 << 30;

pub(super) fn free_percent(free: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        free as f64 * 100.0 / total as f64
    }
}

/// A data folder's verdict: under 1 GiB or `fail_below` percent free
/// fails, under `warn_below` percent warns.
pub(super) fn disk_status(free: u64, total: u64, warn_below: f64, fail_below: f64) -> Status {
    let percent = free_percent(free, total);
    if free < GIB || percent < fail_below {
        Status::Fail
    } else if percent < warn_below {
        Status::Warn
    } else {
        Status::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_verdicts_follow_the_thresholds() {
        let tb = 1024 * GIB;
        assert_eq!(disk_status(500 * GIB, tb, 10.0, 5.0), Status::Pass);
        assert_eq!(disk_status(92 * GIB, tb, 10.0, 5.0), Status::Warn);
        assert_eq!(disk_status(40 * GIB, tb, 10.0, 5.0), Status::Fail);
        // A lower warning line passes the same disk.
        assert_eq!(disk_status(92 * GIB, tb, 5.0, 2.0), Status::Pass);
        // Under 1 GiB fails whatever the share.
        assert_eq!(disk_status(GIB / 2, GIB, 0.0, 0.0), Status::Fail);
        assert_eq!(disk_status(0, 0, 0.0, 0.0), Status::Fail);
    }
}
