//! Load generator for the intake: `BENCH_CONNECTIONS` clients (default 32) each post distinct
//! deliveries of the orb fixture as fast as the server answers, for `BENCH_SECONDS` (default 10), and
//! prints one line: requests, throughput and latency percentiles, and the answers by status.
//! `scripts/bench.sh` runs it against a local server; it measures, it asserts nothing.
//!
//! Usage: `cargo run --release --example intake_load -- <base URL> [status]`, where `status`
//! (default `failed`) is the build status sent: a failed build is recorded as `ignored` and
//! launches nothing, so the figure is the intake and the store, not the tasks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[k.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: intake_load <base URL> [build status]"))?;
    let status = args.next().unwrap_or_else(|| "failed".into());
    let connections: usize = env_or("BENCH_CONNECTIONS", 32);
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/circleci-orb/success.json"
    );
    let template: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture)?)?;
    let url = format!("{}/pullrequests", base.trim_end_matches('/'));
    let next_build = Arc::new(AtomicU64::new(1_000_000));
    let deadline = Instant::now() + Duration::from_secs(seconds);

    let mut workers = Vec::new();
    for _ in 0..connections {
        // One client per worker: one keep-alive connection each, as `wrk -c N` does.
        let client = orchestrator_clients::http::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let (url, template, status, next_build) = (
            url.clone(),
            template.clone(),
            status.clone(),
            next_build.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
            while Instant::now() < deadline {
                let mut body = template.clone();
                body["build_num"] = next_build
                    .fetch_add(1, Ordering::Relaxed)
                    .to_string()
                    .into();
                body["status"] = status.clone().into();
                let t = Instant::now();
                let code = match client.post(&url).json(&body).send().await {
                    Ok(resp) => {
                        let code = resp.status().as_u16();
                        let _ = resp.bytes().await;
                        code
                    }
                    Err(_) => 0,
                };
                latencies.push(t.elapsed());
                *answers.entry(code).or_default() += 1;
            }
            (latencies, answers)
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
    for w in workers {
        let (l, a) = w.await?;
        latencies.extend(l);
        for (k, v) in a {
            *answers.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let answers: Vec<String> = answers
        .iter()
        .map(|(k, v)| {
            format!(
                "{}x{v}",
                if *k == 0 {
                    "error".into()
                } else {
                    k.to_string()
                }
            )
        })
        .collect();
    println!(
        "BENCH intake_load connections={connections} requests={} req_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} answers={}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
        answers.join(",")
    );
    println!(
        "FIGURE local server|intake throughput, {connections} connections, {seconds} s ({status} builds)|{:.0} req/s, p99 {:.2} ms|{}",
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 99.0),
        answers.join(", ")
    );
    Ok(())
}
