//! What building a reqwest client costs, with the platform verifier (the bundle and then every
//! file of `/etc/ssl/certs`, for each client) beside [`orchestrator_clients::http::builder`] (the
//! bundle, read once per process), in one run. Run without `SSL_CERT_FILE` / `SSL_CERT_DIR`
//! (`scripts/bench.sh` does), or both ways are the platform's.
//!
//! Usage: cargo run --release -p orchestrator-clients --features http --example client_build [N]

use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

fn timed(f: impl Fn()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

#[allow(clippy::disallowed_methods)] // the platform verifier, for comparison
fn platform() {
    reqwest::Client::builder().build().expect("a client");
}

fn bundle() {
    orchestrator_clients::http::builder()
        .build()
        .expect("a client");
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(21);
    // Installs ring as the provider; the bundle is read on this first call.
    let first = timed(bundle);
    let later: Vec<_> = (0..n).map(|_| timed(bundle)).collect();
    let each: Vec<_> = (0..n).map(|_| timed(platform)).collect();
    let (first, later, each) = (first.as_secs_f64() * 1000.0, median(later), median(each));
    println!(
        "FIGURE HTTPS client|reqwest client build, platform verifier (each client) / one bundle file (first client; later ones), median of {n}|{each:.2} ms / {first:.2} ms; {later:.3} ms|SSL_CERT_FILE and SSL_CERT_DIR unset, as on Lambda and in the task image"
    );
}
