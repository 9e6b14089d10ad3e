//! Local mode under concurrency: the real `orchestrator serve` binary takes 500 orb deliveries
//! while 20 other processes write task outcomes to the same SQLite file, and no delivery gets a
//! 5xx (before write transactions began `IMMEDIATE`, some answered 500 `database is locked`).
//!
//! The writers do what the task does in local mode (`gitops-task` with `ORCH_STORE=sqlite`): open
//! `DATA_DIR/records.sqlite3` with `SqliteStore::open`, read the record, move it `running`, then
//! write its final status and outcome. Each writer is this test run again as a child process of
//! itself (with `SQLITE_WRITER_DB` set: [`writer_process`]), and takes the `dispatched` records
//! whose id falls in its share, as the server dispatches them. The server's task program is a
//! script that exits at once: the server still spawns a process per delivery, and the outcomes
//! come from the writers.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{ListQuery, RecordStore, Transition};
use orchestrator_core::{RecordId, Status};
use serde_json::Value;

const DELIVERIES: usize = 500;
const WRITERS: usize = 20;
/// Requests in flight at once.
const CONCURRENCY: usize = 32;

const ENV_DB: &str = "SQLITE_WRITER_DB";
const ENV_INDEX: &str = "SQLITE_WRITER_INDEX";
const ENV_STOP: &str = "SQLITE_WRITER_STOP";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(data_dir: &Path, task: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("serve")
        .env("PORT", "0")
        .env("DATA_DIR", data_dir)
        .env("TASK_BINARY", task)
        .env("RUST_LOG", "warn")
        .env_remove("INTAKE_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    Server { child, base }
}

fn noop_task(dir: &Path) -> PathBuf {
    let path = dir.join("noop-task.sh");
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).unwrap();
    path
}

/// The writer that owns `id`.
fn owner(id: RecordId) -> usize {
    let uuid: uuid::Uuid = id.to_string().parse().unwrap();
    (uuid.as_u128() % WRITERS as u128) as usize
}

/// What one writer process did, from its last stdout line.
#[derive(Debug, Default)]
struct WriterReport {
    records: usize,
    writes: usize,
    errors: usize,
}

fn parse_report(stdout: &str) -> Option<WriterReport> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRITER-REPORT "))?;
    let v: Value = serde_json::from_str(line).ok()?;
    Some(WriterReport {
        records: v["records"].as_u64()? as usize,
        writes: v["writes"].as_u64()? as usize,
        errors: v["errors"].as_u64()? as usize,
    })
}

fn orb_delivery(n: usize) -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(&common::fixture("circleci-orb/success.json")).unwrap();
    v["build_num"] = Value::from(format!("{}", 10_000 + n));
    v["vcs_revision"] = Value::from(format!("{:040x}", 0xabc0_0000_u64 + n as u64));
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_takes_500_deliveries_while_20_processes_write_outcomes() {
    if std::env::var_os(ENV_DB).is_some() {
        // Run again by itself as a child process: this run is one of the writers.
        return writer_process().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_server(&data, &noop_task(dir.path()));
    let db = SqliteStore::file_in(&data);
    let stop = dir.path().join("stop");

    let me = std::env::current_exe().unwrap();
    let writers: Vec<Child> = (0..WRITERS)
        .map(|i| {
            Command::new(&me)
                .args([
                    "--exact",
                    "the_local_server_takes_500_deliveries_while_20_processes_write_outcomes",
                    "--nocapture",
                ])
                .env(ENV_DB, &db)
                .env(ENV_INDEX, i.to_string())
                .env(ENV_STOP, &stop)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();

    let http = orchestrator_clients::http::client().unwrap();
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..DELIVERIES {
        let (http, limit, url) = (
            http.clone(),
            limit.clone(),
            format!("{}/pullrequests", server.base),
        );
        sends.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let t = Instant::now();
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .body(orb_delivery(n))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            (status, body, t.elapsed())
        });
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut failures = Vec::new();
    let mut latencies = Vec::new();
    while let Some(done) = sends.join_next().await {
        let (status, body, took) = done.unwrap();
        *statuses.entry(status).or_default() += 1;
        latencies.push(took);
        if status >= 500 && failures.len() < 5 {
            failures.push(format!("{status}: {body}"));
        }
    }
    let delivery_time = started.elapsed();

    // The writers drain what is left, then stop.
    std::fs::write(&stop, b"").unwrap();
    let mut reports = Vec::new();
    for (i, w) in writers.into_iter().enumerate() {
        let out = w.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = parse_report(&stdout).unwrap_or_else(|| {
            panic!(
                "writer {i} ({}) gave no report:\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        if report.errors > 0 {
            eprintln!(
                "writer {i} errors:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        reports.push(report);
    }
    let total_time = started.elapsed();

    let store = SqliteStore::open(&db).unwrap();
    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    let mut query = ListQuery {
        limit: 100,
        ..ListQuery::default()
    };
    loop {
        let page = store.list(&query).await.unwrap();
        for r in &page.records {
            *by_status.entry(r.status.as_str().to_owned()).or_default() += 1;
        }
        match page.next_cursor {
            Some(c) => {
                query.after = Some(orchestrator_core::store::cursor::decode(&c).unwrap());
            }
            None => break,
        }
    }

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_millis();
    let server_5xx: usize = statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    let writes: usize = reports.iter().map(|r| r.writes).sum();
    let written_records: usize = reports.iter().map(|r| r.records).sum();
    let writer_errors: usize = reports.iter().map(|r| r.errors).sum();
    eprintln!(
        "sqlite concurrency: {DELIVERIES} deliveries ({CONCURRENCY} in flight) in {:.1} s, \
         statuses {statuses:?}, 5xx {server_5xx}, latency p50 {} ms p99 {} ms max {} ms; \
         {WRITERS} writer processes: {written_records} records taken to a final status, \
         {writes} writes, {writer_errors} errors; records by status {by_status:?}; \
         all done in {:.1} s",
        delivery_time.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        total_time.as_secs_f64(),
    );
    assert_eq!(server_5xx, 0, "5xx answers, first ones: {failures:#?}");
    assert_eq!(statuses.get(&202), Some(&DELIVERIES), "{statuses:?}");
    assert_eq!(
        writer_errors, 0,
        "the writers' store errors are printed above"
    );
    assert_eq!(
        by_status.get("succeeded"),
        Some(&DELIVERIES),
        "every record ends with the outcome its writer wrote: {by_status:?}"
    );
    assert_eq!(written_records, DELIVERIES);
}

/// One writer, in a child process of the test above: its environment says which file, which
/// share of the records and when to stop. Prints its figures on its last line.
async fn writer_process() {
    let db = PathBuf::from(std::env::var(ENV_DB).unwrap());
    let index: usize = std::env::var(ENV_INDEX).unwrap().parse().unwrap();
    let stop = PathBuf::from(std::env::var(ENV_STOP).unwrap());
    // As the task opens its store: the file the server created, or is about to.
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = loop {
        match SqliteStore::open(&db) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("open: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot open {}: {e}", db.display()),
        }
    };
    let (mut records, mut writes, mut errors) = (0usize, 0usize, 0usize);
    loop {
        let stopping = stop.exists();
        let mut mine = Vec::new();
        let mut query = ListQuery {
            limit: 100,
            status: Some(Status::Dispatched),
            ..ListQuery::default()
        };
        loop {
            let page = store.list(&query).await.unwrap();
            mine.extend(
                page.records
                    .iter()
                    .filter(|r| owner(r.id) == index)
                    .map(|r| r.id),
            );
            match page.next_cursor {
                Some(c) => {
                    query.after = Some(orchestrator_core::store::cursor::decode(&c).unwrap());
                }
                None => break,
            }
        }
        if mine.is_empty() && stopping {
            break;
        }
        for id in mine {
            // The task's reporting: read, `running`, then the outcome.
            let outcome = async {
                store.get(id).await?;
                store.transition(id, &Transition::to(Status::Running)).await?;
                store
                    .transition(
                        id,
                        &Transition {
                            to: Some(Status::Succeeded),
                            pr_url: Some(format!("https://example.test/pr/{id}")),
                            outcome: Some(serde_json::json!({"record_id": id.to_string(), "outcome": "succeeded"})),
                            ..Transition::default()
                        },
                    )
                    .await
            }
            .await;
            match outcome {
                Ok(_) => {
                    records += 1;
                    writes += 2;
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("record {id}: {e}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "WRITER-REPORT {}",
        serde_json::json!({"records": records, "writes": writes, "errors": errors})
    );
}
