//! The audit console in a real headless Chromium (Debian's `chromium`, driven through its
//! `chromedriver` with fantoccini), against the real `orchestrator serve` binary on a temporary
//! DATA_DIR, with records made through the real intake (orb deliveries over HTTP).
//!
//! One browser session walks what a person does: the login refused with a wrong token, the login,
//! the filters, the pages, a record page with its timeline and links, an admin re-dispatch with
//! its confirmation, the sign-out; every URL the browser was at is collected, and none holds a
//! credential. Screenshots of the list and a record page go to `target/console-screenshots/`.
//!
//! The task of one record is played by the test (it writes the outcome a gitops task reports, as
//! the real task does, into the same SQLite store): the console only reads it. Requires
//! chromedriver (`REQUIRE_BROWSER=1`, scripts/test.sh's default), else the test is skipped loudly.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use orchestrator_core::store::sqlite::SqliteStore;
use orchestrator_core::store::{RecordStore, Transition};
use orchestrator_core::{RecordId, Status};
use serde_json::{Value, json};

const INTAKE: &str = "console-intake-token";
const AUDIT: &str = "console-audit-token-c16";
const ADMIN: &str = "console-admin-token-c16";

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, task: &Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("serve")
        .env("PORT", "0")
        .env("DATA_DIR", data)
        .env("TASK_BINARY", task)
        .env("INTAKE_TOKEN", INTAKE)
        .env("AUDIT_TOKEN", AUDIT)
        .env("ADMIN_TOKEN", ADMIN)
        .env("BRANCH_ENVIRONMENTS", "main=prod")
        .env("DEFAULT_ENVIRONMENT", "dev")
        .env("RECOVERY_INTERVAL_SECS", "0")
        .env("DISPATCH_MAX_ATTEMPTS", "1")
        .env_remove("TASK_LOG_GROUP")
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
    (Killed(child), base)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn chromedriver(bin: &Path) -> (Killed, String) {
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if reqwest::get(format!("{url}/status")).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Killed(child), url)
}

async fn browser(driver: &str, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a chromium session")
}

fn script(dir: &Path, executable: bool) -> PathBuf {
    let path = dir.join("task.sh");
    std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, if executable { 0o755 } else { 0o644 });
    std::fs::set_permissions(&path, perm).unwrap();
    path
}

/// An orb delivery: `reponame` is the service, `branch` picks the environment.
async fn deliver(http: &reqwest::Client, base: &str, n: u32, service: &str, branch: &str) -> Value {
    let body = json!({
        "build_num": n.to_string(), "branch": branch, "username": "acme", "job": "build",
        "vcs_revision": format!("{n:040x}"), "reponame": service, "status": "success",
        "api_link": format!("https://circleci.com/api/v1.1/project/acme/{service}/{n}"),
    });
    let resp = http
        .post(format!("{base}/pullrequests"))
        .bearer_auth(INTAKE)
        .json(&body)
        .send()
        .await
        .unwrap();
    resp.json().await.unwrap()
}

/// The texts of the cells of one column of the records table.
async fn column(c: &Client, label: &str) -> Vec<String> {
    let mut out = Vec::new();
    for td in c
        .find_all(Locator::Css(&format!(
            "table.records td[data-label=\"{label}\"]"
        )))
        .await
        .unwrap()
    {
        out.push(td.text().await.unwrap());
    }
    out
}

async fn row_ids(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for tr in c
        .find_all(Locator::Css("table.records tbody tr"))
        .await
        .unwrap()
    {
        out.push(tr.attr("data-id").await.unwrap().unwrap());
    }
    out
}

/// Submits a form (fantoccini's `submit` does not wait for the next page) and waits until the
/// browser is at a URL holding `want`; notes it.
async fn submit(c: &Client, form: fantoccini::elements::Form, want: &str, seen: &mut Vec<String>) {
    form.submit().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = c.current_url().await.unwrap().to_string();
        if url.contains(want) && c.find(Locator::Css("main")).await.is_ok() {
            seen.push(url);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never reached a URL with {want}: {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks what leads to another page and waits until that page has loaded (a WebDriver click
/// returns before the navigation it starts is done): the old document is marked, and the wait
/// ends when the browser holds a complete document without the mark.
async fn click(c: &Client, el: fantoccini::elements::Element) {
    c.execute("window.__before_click = true; return null", vec![])
        .await
        .unwrap();
    el.click().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let loaded = c
            .execute(
                "return window.__before_click !== true && document.readyState === 'complete'",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if loaded {
            return;
        }
        assert!(Instant::now() < deadline, "the click led to no new page");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Where the browser is, noted for the credential check.
async fn at(c: &Client, seen: &mut Vec<String>) -> String {
    let url = c.current_url().await.unwrap().to_string();
    no_credential(&url);
    seen.push(url.clone());
    url
}

fn no_credential(url: &str) {
    for secret in [INTAKE, AUDIT, ADMIN, "token="] {
        assert!(!url.contains(secret), "{url} holds {secret}");
    }
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser() {
    let test = "console_browser::the_console_in_a_real_browser";
    let Some(driver_bin) = common::chromedriver(test) else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The task cannot start at first: the first delivery ends `dispatch_failed`.
    let task = script(dir.path(), false);
    let (_server, base) = serve(&data, &task);
    let http = orchestrator_clients::http::client().unwrap();

    let failed = deliver(&http, &base, 1, "billing", "main").await;
    // 502 `dispatch_failed`, naming the record.
    assert_eq!(failed["error"]["code"], "dispatch_failed", "{failed}");
    let failed_id = failed["record_id"].as_str().unwrap().to_owned();
    script(dir.path(), true);
    let mut ids = vec![failed_id.clone()];
    for (n, service, branch) in [
        (2, "web", "main"),
        (3, "api", "feature-x"),
        (4, "web", "dev"),
    ] {
        let r = deliver(&http, &base, n, service, branch).await;
        assert_eq!(r["status"], "dispatched", "{r}");
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mid = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (n, service, branch) in [(5, "api", "main"), (6, "web", "main")] {
        let r = deliver(&http, &base, n, service, branch).await;
        assert_eq!(r["status"], "dispatched", "{r}");
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    // Newest first, as the console lists them.
    ids.reverse();

    // The task of record 2 (web, prod) reports its outcome, as a gitops task does.
    let store = SqliteStore::open(&SqliteStore::file_in(&data)).unwrap();
    let done_id: RecordId = ids[4].parse().unwrap();
    store
        .transition(done_id, &Transition::to(Status::Running).at_attempt(1))
        .await
        .unwrap();
    let pr = "https://github.com/acme/gitops/pull/42";
    let diff = "--- a/kustomize/web/overlays/prod/kustomization.yaml\n+++ b/kustomize/web/overlays/prod/kustomization.yaml\n@@ -4,3 +4,3 @@\n images:\n - name: acme/web\n-  newTag: 1111111\n+  newTag: 0000000000000000000000000000000000000002\n";
    store
        .transition(
            done_id,
            &Transition {
                to: Some(Status::Succeeded),
                pr_url: Some(pr.into()),
                branch: Some("gitops/web-prod".into()),
                outcome: Some(json!({
                    "outcome": "succeeded", "pr_url": pr, "branch": "gitops/web-prod",
                    "commit": "abc1234", "old_tag": "1111111",
                    "new_tag": "0000000000000000000000000000000000000002", "diff": diff,
                })),
                ..Transition::default()
            },
        )
        .await
        .unwrap();

    let (_driver, driver_url) = chromedriver(&driver_bin).await;
    let profile = dir.path().join("chromium-profile");
    let c = browser(&driver_url, &profile).await;
    let mut seen = Vec::new();

    // No session: the console sends the browser to the login form.
    c.goto(&format!("{base}/console")).await.unwrap();
    assert!(at(&c, &mut seen).await.ends_with("/console/login"));

    // A wrong token: the form again, with the error.
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(INTAKE)
        .await
        .unwrap();
    click(
        &c,
        c.find(Locator::Css("form.card button[type=submit]"))
            .await
            .unwrap(),
    )
    .await;
    at(&c, &mut seen).await;
    let error = match c.find(Locator::Id("login-error")).await {
        Ok(e) => e,
        Err(e) => panic!("{e}: {}", c.source().await.unwrap_or_default()),
    };
    assert!(
        error
            .text()
            .await
            .unwrap()
            .contains("not the audit or admin token")
    );
    assert!(at(&c, &mut seen).await.ends_with("/console/login"));
    assert!(
        c.get_all_cookies().await.unwrap().is_empty(),
        "no session for a wrong token"
    );

    // The admin token: a session cookie that never holds the token.
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(ADMIN)
        .await
        .unwrap();
    click(
        &c,
        c.find(Locator::Css("form.card button[type=submit]"))
            .await
            .unwrap(),
    )
    .await;
    assert!(at(&c, &mut seen).await.ends_with("/console"));
    let cookies = c.get_all_cookies().await.unwrap();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert_eq!(
        (
            cookie.http_only(),
            cookie.secure(),
            cookie.same_site().map(|s| s.to_string())
        ),
        (Some(true), Some(true), Some("Strict".to_owned()))
    );
    assert!(!cookie.value().contains(ADMIN) && !cookie.value().contains(AUDIT));
    let session_cookie = format!("{}={}", cookie.name(), cookie.value());

    // The list: every record, newest first, each row with its badge text.
    assert_eq!(row_ids(&c).await, ids);
    assert_eq!(
        column(&c, "Status").await,
        [
            "dispatched",
            "dispatched",
            "dispatched",
            "dispatched",
            "succeeded",
            "dispatch_failed"
        ]
    );
    assert_eq!(
        column(&c, "Env").await,
        ["prod", "prod", "dev", "dev", "prod", "prod"]
    );
    let pr_links = c
        .find_all(Locator::Css("td[data-label=PR] a"))
        .await
        .unwrap();
    assert_eq!(pr_links.len(), 1);
    assert_eq!(pr_links[0].attr("href").await.unwrap().as_deref(), Some(pr));
    std::fs::write(
        screenshots_dir().join("list.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();

    // Filters through the form: environment (applied by the application layer), then status and
    // service (by the store), then source.
    let form = c.form(Locator::Css("form.filters")).await.unwrap();
    form.set_by_name("environment", "prod").await.unwrap();
    submit(&c, form, "environment=prod", &mut seen).await;
    assert_eq!(
        row_ids(&c).await,
        [
            ids[0].clone(),
            ids[1].clone(),
            ids[4].clone(),
            ids[5].clone()
        ]
    );
    let form = c.form(Locator::Css("form.filters")).await.unwrap();
    form.set_by_name("environment", "").await.unwrap();
    form.set_by_name("status", "dispatch_failed").await.unwrap();
    submit(&c, form, "status=dispatch_failed", &mut seen).await;
    assert_eq!(row_ids(&c).await, std::slice::from_ref(&failed_id));
    let form = c.form(Locator::Css("form.filters")).await.unwrap();
    form.set_by_name("status", "").await.unwrap();
    form.set_by_name("service", "web").await.unwrap();
    submit(&c, form, "service=web", &mut seen).await;
    assert_eq!(
        row_ids(&c).await,
        [ids[0].clone(), ids[2].clone(), ids[4].clone()]
    );
    let form = c.form(Locator::Css("form.filters")).await.unwrap();
    form.set_by_name("service", "").await.unwrap();
    form.set_by_name("source", "port").await.unwrap();
    submit(&c, form, "source=port", &mut seen).await;
    assert!(c.find(Locator::Id("no-records")).await.is_ok());
    // Time: before `mid` the four first records, from `mid` the two last.
    let t =
        |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    c.goto(&format!("{base}/console?to={}", t(mid)))
        .await
        .unwrap();
    at(&c, &mut seen).await;
    assert_eq!(row_ids(&c).await, &ids[2..]);
    c.goto(&format!("{base}/console?from={}", t(mid)))
        .await
        .unwrap();
    at(&c, &mut seen).await;
    assert_eq!(row_ids(&c).await, &ids[..2]);

    // Paging: two at a time, following "Next page" to the end, with a filter kept.
    c.goto(&format!("{base}/console?limit=2")).await.unwrap();
    let mut paged = row_ids(&c).await;
    while let Ok(next) = c.find(Locator::Id("next-page")).await {
        click(&c, next).await;
        assert!(at(&c, &mut seen).await.contains("limit=2"));
        let page = row_ids(&c).await;
        assert!(page.len() <= 2);
        paged.extend(page);
    }
    assert_eq!(paged, ids);
    c.goto(&format!("{base}/console?limit=1&environment=prod"))
        .await
        .unwrap();
    let mut paged = row_ids(&c).await;
    while let Ok(next) = c.find(Locator::Id("next-page")).await {
        click(&c, next).await;
        at(&c, &mut seen).await;
        paged.extend(row_ids(&c).await);
    }
    assert_eq!(
        paged,
        [
            ids[0].clone(),
            ids[1].clone(),
            ids[4].clone(),
            ids[5].clone()
        ]
    );

    // A record page, reached from its row: timeline, PR, branch, commit, diff; no log link locally.
    c.goto(&format!("{base}/console")).await.unwrap();
    click(
        &c,
        c.find(Locator::Css(&format!("tr[data-id=\"{}\"] a", ids[4])))
            .await
            .unwrap(),
    )
    .await;
    assert!(
        at(&c, &mut seen)
            .await
            .ends_with(&format!("/console/records/{}", ids[4]))
    );
    let mut timeline = Vec::new();
    for li in c.find_all(Locator::Css("#timeline li")).await.unwrap() {
        timeline.push(li.text().await.unwrap());
    }
    let record = store.get(done_id).await.unwrap().unwrap();
    assert_eq!(timeline.len(), record.history.len() + 1, "{timeline:?}");
    for (li, h) in timeline[1..].iter().zip(&record.history) {
        assert!(li.contains(h.status.as_str()), "{li} vs {h:?}");
    }
    assert!(timeline.last().unwrap().contains("succeeded"));
    let pr_link = c.find(Locator::Css("#pr-link a")).await.unwrap();
    assert_eq!(pr_link.attr("href").await.unwrap().as_deref(), Some(pr));
    let page = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "gitops/web-prod",
        "abc1234",
        "1111111",
        "+  newTag: 0000000000000000000000000000000000000002",
    ] {
        assert!(page.contains(want), "{want} missing from the record page");
    }
    assert!(c.find(Locator::Id("no-log-link")).await.is_ok());
    assert!(c.find(Locator::Id("log-link")).await.is_err());
    // Tall enough for the diff and the timeline in the picture.
    c.set_window_size(1280, 1700).await.unwrap();
    std::fs::write(
        screenshots_dir().join("record.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();
    c.set_window_size(1280, 900).await.unwrap();

    // The re-dispatch of the failed record: a confirmation page, then the action.
    c.goto(&format!("{base}/console/records/{failed_id}"))
        .await
        .unwrap();
    at(&c, &mut seen).await;
    click(&c, c.find(Locator::Id("redispatch")).await.unwrap()).await;
    assert!(
        at(&c, &mut seen)
            .await
            .ends_with(&format!("/console/records/{failed_id}/dispatch"))
    );
    let h1 = c
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(h1, "Re-dispatch this record?");
    let before = store
        .get(failed_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (before.status, before.attempt),
        (Status::DispatchFailed, 1),
        "nothing happens on GET"
    );
    click(&c, c.find(Locator::Id("confirm")).await.unwrap()).await;
    assert!(
        at(&c, &mut seen)
            .await
            .contains(&format!("/console/records/{failed_id}?done=dispatched"))
    );
    assert!(c.find(Locator::Id("done")).await.is_ok());
    let after = store
        .get(failed_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((after.status, after.attempt), (Status::Dispatched, 2));
    let badge = c
        .find(Locator::Css("p.status .badge"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(badge, "dispatched");

    // The same POST without the form's CSRF token, or from another origin: refused, nothing done.
    let redact = format!("{base}/console/records/{}/redact", ids[4]);
    let no_csrf = http
        .post(&redact)
        .header("cookie", &session_cookie)
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let page = c
        .find(Locator::Css("form.logout input[name=csrf]"))
        .await
        .unwrap();
    let csrf = page.attr("value").await.unwrap().unwrap();
    let cross = http
        .post(&redact)
        .header("cookie", &session_cookie)
        .header("origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert!(
        store
            .get(done_id)
            .await
            .unwrap()
            .unwrap()
            .redacted_at
            .is_none()
    );
    // An audit session reads, sees no admin action, and the admin routes refuse it, even with its
    // own CSRF token.
    let no_redirect = orchestrator_clients::http::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = no_redirect
        .post(format!("{base}/console/login"))
        .form(&[("token", AUDIT)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let audit_cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(!audit_cookie.contains(AUDIT));
    let page = no_redirect
        .get(format!("{base}/console/records/{}", ids[4]))
        .header("cookie", &audit_cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(pr) && !page.contains("id=\"redispatch\"") && !page.contains("id=\"redact\"")
    );
    let audit_csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let confirm = no_redirect
        .get(&redact)
        .header("cookie", &audit_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status(), 403);
    let post = no_redirect
        .post(&redact)
        .header("cookie", &audit_cookie)
        .form(&[("csrf", audit_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    assert!(
        store
            .get(done_id)
            .await
            .unwrap()
            .unwrap()
            .redacted_at
            .is_none()
    );
    // A wrong login answers 401.
    let wrong = http
        .post(format!("{base}/console/login"))
        .form(&[("token", AUDIT.to_uppercase())])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // Readable on a phone: one column, nothing wider than the screen.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/console")).await.unwrap();
    let overflow = c
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        overflow.as_i64(),
        Some(0),
        "the list scrolls sideways on a phone"
    );
    std::fs::write(
        screenshots_dir().join("list-phone.png"),
        c.screenshot().await.unwrap(),
    )
    .unwrap();

    // Sign out: the session is gone.
    click(
        &c,
        c.find(Locator::Css("form.logout button")).await.unwrap(),
    )
    .await;
    assert!(at(&c, &mut seen).await.ends_with("/console/login"));
    c.goto(&format!("{base}/console")).await.unwrap();
    assert!(at(&c, &mut seen).await.ends_with("/console/login"));
    c.close().await.unwrap();

    // No credential in any URL the browser was at.
    assert!(seen.len() > 15, "{seen:?}");
    seen.iter().for_each(|u| no_credential(u));
    eprintln!(
        "console browser test: {} URLs checked, {:.1} s",
        seen.len(),
        started.elapsed().as_secs_f64()
    );
}
