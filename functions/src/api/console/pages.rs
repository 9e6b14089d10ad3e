//! The console's HTML (maud templates) and its one stylesheet. Every value from a record is
//! escaped by maud; a link from a record (a PR URL) is only made when it is `https://` or
//! `http://`. Status badges carry their text as well as a colour; a status this build does not
//! know is shown with a neutral badge.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use orchestrator_core::record::rfc3339;
use orchestrator_core::{Record, Source, Status};
use serde_json::Value;

use super::{Action, Ctx, Filters, log_stream_url};
use crate::audit::Found;

/// The stylesheet, served at `/console/style.css` (the CSP allows no inline style).
pub const STYLE: &str = include_str!("style.css");

/// Every source, for the filter.
const SOURCES: [Source; 4] = [
    Source::CircleciOrb,
    Source::CircleciNative,
    Source::Port,
    Source::Eventbridge,
];

/// The badge colour of a status, by its name (an unknown one is neutral).
pub fn badge_class(status: &str) -> &'static str {
    match status {
        "succeeded" | "completed" => "ok",
        "no_change" | "skipped" | "planned" => "info",
        "failed" | "dispatch_failed" | "rejected" => "bad",
        "received" | "dispatched" | "running" => "busy",
        "ignored" => "muted",
        _ => "neutral",
    }
}

fn badge(status: &str) -> Markup {
    html! { span class={ "badge " (badge_class(status)) } { (status) } }
}

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `url` when a browser may follow it from here (never `javascript:` or `data:`).
fn safe_url(url: &str) -> Option<&str> {
    (url.starts_with("https://") || url.starts_with("http://")).then_some(url)
}

fn link_or_text(url: &str, text: &str) -> Markup {
    html! {
        @if let Some(u) = safe_url(url) { a href=(u) rel="noreferrer noopener" { (text) } }
        @else { (text) }
    }
}

fn layout(ctx: &Ctx<'_>, title: &str, body: Markup) -> Markup {
    let root = ctx.root();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · gitops orchestrator" }
                link rel="stylesheet" href={ (root) "/style.css" };
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href=(root) { "gitops orchestrator · audit console" }
                    @if ctx.session.is_some() {
                        form.logout method="post" action={ (root) "/logout" } {
                            span.role { @if ctx.is_admin() { "admin" } @else { "audit (read only)" } }
                            input type="hidden" name="csrf" value=(ctx.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

pub fn error(ctx: &Ctx<'_>, status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    layout(
        ctx,
        title,
        html! {
            h1 { (status.as_u16()) " · " (title) }
            p.notice.bad role="alert" { (message) }
            p { a href=(ctx.root()) { "Back to the records" } }
        },
    )
}

pub fn login(ctx: &Ctx<'_>, refused: Option<&str>) -> Markup {
    let root = ctx.root();
    layout(
        ctx,
        "Sign in",
        html! {
            h1 { "Sign in" }
            @if let Some(m) = refused { p.notice.bad role="alert" #login-error { (m) } }
            form.card method="post" action={ (root) "/login" } {
                label for="token" { "Audit or admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                p.hint { "The audit token reads records; the admin token also re-dispatches and redacts. The session lasts 8 hours and is kept in an HttpOnly cookie, never the token." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

fn service_or_entity(r: &Record) -> String {
    if let Some(j) = &r.job {
        j.service.to_string()
    } else if let Some(e) = &r.entity {
        format!("{}/{}", e.blueprint, e.entity)
    } else {
        "—".into()
    }
}

fn change(r: &Record) -> Markup {
    let old = r
        .outcome
        .as_ref()
        .and_then(|o| o.get("old_tag"))
        .and_then(Value::as_str);
    html! {
        @if let Some(j) = &r.job {
            code { (old.unwrap_or("?")) } " → " code { (j.tag) }
        } @else if let Some(rule) = &r.rule {
            "rule " code { (rule) }
        } @else { "—" }
    }
}

pub fn list(ctx: &Ctx<'_>, f: &Filters, paged: bool, found: &Found) -> Markup {
    let root = ctx.root();
    let query = f.query();
    layout(
        ctx,
        "Records",
        html! {
            h1 { "Records" }
            form.filters method="get" action=(root) aria-label="Filter records" {
                div.field { label for="f-service" { "Service" } input #f-service name="service" value=(f.service); }
                div.field { label for="f-environment" { "Environment" } input #f-environment name="environment" value=(f.environment); }
                div.field {
                    label for="f-status" { "Status" }
                    select #f-status name="status" {
                        option value="" { "any" }
                        @for s in Status::ALL { option value=(s.as_str()) selected[f.status == s.as_str()] { (s.as_str()) } }
                    }
                }
                div.field {
                    label for="f-source" { "Source" }
                    select #f-source name="source" {
                        option value="" { "any" }
                        @for s in SOURCES { option value=(s.as_str()) selected[f.source == s.as_str()] { (s.as_str()) } }
                    }
                }
                div.field { label for="f-from" { "From (UTC)" } input #f-from type="datetime-local" name="from" value=(f.from); }
                div.field { label for="f-to" { "To (UTC)" } input #f-to type="datetime-local" name="to" value=(f.to); }
                @if !f.limit.is_empty() { input type="hidden" name="limit" value=(f.limit); }
                div.buttons {
                    button type="submit" { "Filter" }
                    a href=(root) { "Clear" }
                }
            }
            @if found.records.is_empty() {
                p.notice #no-records { "No records match." }
            } @else {
                table.records {
                    caption.sr { "Records, newest first" }
                    thead { tr {
                        th scope="col" { "When" } th scope="col" { "Source" } th scope="col" { "Service / entity" }
                        th scope="col" { "Env" } th scope="col" { "Change" } th scope="col" { "Status" } th scope="col" { "PR" }
                    } }
                    tbody {
                        @for r in &found.records {
                            tr data-id=(r.id) {
                                td data-label="When" { a href={ (root) "/records/" (r.id) } { (when(&r.received_at)) } }
                                td data-label="Source" { (r.source.as_str()) }
                                td data-label="Service" { (service_or_entity(r)) }
                                td data-label="Env" { @if let Some(j) = &r.job { (j.environment) } @else { "—" } }
                                td data-label="Change" { (change(r)) }
                                td data-label="Status" { (badge(r.status.as_str())) }
                                td data-label="PR" { @if let Some(u) = &r.pr_url { (link_or_text(u, "PR")) } @else { "—" } }
                            }
                        }
                    }
                }
            }
            nav.paging aria-label="Pages" {
                @if paged { a rel="first" href={ (root) "?" (query) } { "← First page" } }
                @if let Some(c) = &found.next_cursor {
                    @let sep = if query.is_empty() { "" } else { "&" };
                    a rel="next" #next-page href={ (root) "?" (query) (sep) "cursor=" (c) } { "Next page →" }
                }
            }
        },
    )
}

fn opt(v: Option<&str>) -> Markup {
    html! { @if let Some(v) = v { (v) } @else { "—" } }
}

fn json_text(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn diff(text: &str) -> Markup {
    html! {
        pre.diff aria-label="Diff" {
            @for line in text.lines() {
                @let class = if line.starts_with("+++") || line.starts_with("---") { "h" }
                    else if line.starts_with('+') { "add" }
                    else if line.starts_with('-') { "del" }
                    else if line.starts_with("@@") { "h" } else { "" };
                span class=(class) { (line) } (PreEscaped("\n"))
            }
        }
    }
}

/// A dry run's images of the built overlay: `{name, before, after}` each.
fn images(images: &[Value]) -> Markup {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    html! {
        table.steps #images {
            caption { "Images of the built overlay" }
            thead { tr { th scope="col" { "Image" } th scope="col" { "Before" } th scope="col" { "After" } } }
            tbody {
                @for im in images {
                    tr {
                        td data-label="Image" { code { (s(im, "name")) } }
                        td data-label="Before" { code { (s(im, "before")) } }
                        td data-label="After" { code { (s(im, "after")) } }
                    }
                }
            }
        }
    }
}

fn steps(steps: &[Value]) -> Markup {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    html! {
        table.steps {
            caption { "Steps" }
            thead { tr { th scope="col" { "Id" } th scope="col" { "Type" } th scope="col" { "Status" } th scope="col" { "Error" } th scope="col" { "Detail" } } }
            tbody {
                @for st in steps {
                    tr {
                        td data-label="Id" { code { (s(st, "id")) } }
                        td data-label="Type" { (s(st, "type")) }
                        td data-label="Status" { (badge(&s(st, "status"))) }
                        td data-label="Error" { (s(st, "error")) }
                        td data-label="Detail" {
                            @match st.get("detail") {
                                Some(d) if !d.is_null() => details { summary { "detail" } pre { (json_text(d)) } },
                                _ => "—",
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn record(ctx: &Ctx<'_>, r: &Record, done: Option<&str>) -> Markup {
    let root = ctx.root();
    let outcome = r.outcome.as_ref();
    let field = |k: &str| outcome.and_then(|o| o.get(k)).and_then(Value::as_str);
    let log_url = r
        .task_arn
        .as_deref()
        .and_then(|arn| log_stream_url(&ctx.state.console, arn));
    layout(
        ctx,
        &format!("Record {}", r.id),
        html! {
            p { a href=(root) { "← Records" } }
            h1 { "Record " code { (r.id) } }
            @match done {
                Some("dispatched") => p.notice.ok role="status" #done { "Re-dispatched: a new attempt was launched (or a live task adopted)." },
                Some("redacted") => p.notice.ok role="status" #done { "Redacted: the payload and outcome are cleared; the tombstone stays." },
                _ => {},
            }
            p.status { (badge(r.status.as_str())) " " @if let Some(reason) = &r.status_reason { span #reason { (reason) } } }
            section aria-labelledby="h-summary" {
                h2 #h-summary { "Summary" }
                dl.kv {
                    dt { "Source" } dd { (r.source.as_str()) }
                    dt { "Received" } dd { (when(&r.received_at)) }
                    dt { "Updated" } dd { (when(&r.updated_at)) }
                    dt { "Attempt" } dd { (r.attempt) }
                    @if let Some(at) = &r.retry_at { dt { "Retry at" } dd { (when(at)) } }
                    dt { "Task" } dd { code { (opt(r.task_arn.as_deref())) } }
                    @if let Some(by) = &r.redacted_by {
                        dt { "Redacted" } dd { (by) @if let Some(at) = &r.redacted_at { " at " (rfc3339::format(at)) } }
                    }
                }
            }
            section aria-labelledby="h-job" {
                h2 #h-job { "Job" }
                @if let Some(j) = &r.job {
                    dl.kv {
                        dt { "Service" } dd { (j.service) }
                        dt { "Image" } dd { code { (j.image) } }
                        dt { "Environment" } dd { (j.environment) }
                        dt { "Tag" } dd { code { (field("old_tag").unwrap_or("?")) } " → " code { (j.tag) } }
                    }
                } @else {
                    dl.kv {
                        @if let Some(e) = &r.entity { dt { "Entity" } dd { (e.blueprint) " / " (e.entity) } }
                        dt { "Rule" } dd { (opt(r.rule.as_deref())) }
                        dt { "Actions" } dd { (r.actions.len()) }
                    }
                }
            }
            section aria-labelledby="h-links" {
                h2 #h-links { "Links" }
                ul.links {
                    li { "Pull request: " @if let Some(u) = &r.pr_url { span #pr-link { (link_or_text(u, u)) } } @else { "none" } }
                    @if let Some(b) = r.branch.as_deref().or(field("branch")) { li { "Branch: " code { (b) } } }
                    @if let Some(c) = field("commit") { li { "Commit: " code { (c) } } }
                    li { "Task log: "
                        @if let Some(u) = &log_url { a #log-link href=(u) rel="noreferrer noopener" { "CloudWatch log stream" } }
                        @else { span #no-log-link { "no CloudWatch link (a local task, or no TASK_LOG_GROUP)" } }
                    }
                    @if let Some(run) = &r.port_run {
                        li #port-run { "Port run: " code { (run.id) } " (" (run.kind.as_str())
                            @if let Some(i) = &run.identifier { " " code { (i) } }
                            @if let Some(u) = &run.user { ", by " (u) }
                            ")" }
                    }
                }
            }
            section aria-labelledby="h-outcome" {
                h2 #h-outcome { "Outcome" }
                @if let Some(o) = outcome {
                    @if let Some(reason) = field("reason") { p.notice.bad #failure { "Failure: " (reason) } }
                    @if let Some(step) = field("failed_step") { p { "Failed step: " code { (step) } } }
                    @if let Some(d) = field("diff") { h3 { "Diff" } (diff(d)) }
                    @if let Some(im) = o.get("images").and_then(Value::as_array).filter(|a| !a.is_empty()) { (images(im)) }
                    @if let Some(st) = o.get("steps").and_then(Value::as_array) { (steps(st)) }
                    @if let Some(out) = o.get("outputs").filter(|v| !v.is_null()) {
                        h3 { "Outputs" } pre { (json_text(out)) }
                    }
                    details { summary { "The task's whole report" } pre { (json_text(o)) } }
                } @else if r.redacted_at.is_some() {
                    p { "Cleared by the redaction." }
                } @else {
                    p { "No outcome yet." }
                }
                @if let Some(stop) = &r.task_stop { details { summary { "How the task stopped" } pre { (json_text(stop)) } } }
            }
            section aria-labelledby="h-timeline" {
                h2 #h-timeline { "Timeline" }
                @if r.history.is_empty() {
                    p { "Received " (when(&r.received_at)) "; no status change since." }
                } @else {
                    ol.timeline #timeline {
                        li { time datetime=(rfc3339::format(&r.received_at)) { (when(&r.received_at)) } " " (badge("received")) " recorded" }
                        @for h in &r.history {
                            li {
                                time datetime=(rfc3339::format(&h.at)) { (when(&h.at)) } " "
                                (badge(h.status.as_str()))
                                " attempt " (h.attempt)
                                @if let Some(n) = &h.note { " · " span.note { (n) } }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="h-actions" {
                h2 #h-actions { "Actions" }
                @if ctx.is_admin() {
                    p.buttons {
                        a.button #redispatch href={ (root) "/records/" (r.id) "/dispatch" } { "Re-dispatch…" }
                        a.button.danger #redact href={ (root) "/records/" (r.id) "/redact" } { "Redact…" }
                    }
                } @else {
                    p { "Re-dispatch and redact need the admin token." }
                }
            }
        },
    )
}

pub fn confirm(ctx: &Ctx<'_>, r: &Record, action: Action) -> Markup {
    let root = ctx.root();
    let (title, what, path, button) = match action {
        Action::Dispatch => (
            "Re-dispatch this record?",
            "A new launch attempt starts for this record (a live task of its current attempt is adopted instead, if there is one). Only a record that is received or dispatch_failed can be re-dispatched.",
            "dispatch",
            "Re-dispatch",
        ),
        Action::Redact => (
            "Redact this record?",
            "The payload and the outcome are cleared for good; the record stays as a tombstone (id, status, job, references, history) and its dedupe key keeps replays out. This cannot be undone.",
            "redact",
            "Redact",
        ),
    };
    layout(
        ctx,
        title,
        html! {
            h1 { (title) }
            p { "Record " a href={ (root) "/records/" (r.id) } { code { (r.id) } } ", now " (badge(r.status.as_str())) ", " (service_or_entity(r)) "." }
            p { (what) }
            form.card method="post" action={ (root) "/records/" (r.id) "/" (path) } {
                input type="hidden" name="csrf" value=(ctx.csrf);
                p.buttons {
                    button #confirm type="submit" class=(if action == Action::Redact { "danger" } else { "" }) { (button) }
                    a href={ (root) "/records/" (r.id) } { "Cancel" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_runs_images_are_a_table_and_planned_is_a_known_badge() {
        let rendered = images(&[serde_json::json!({
            "name": "acme/billing",
            "before": "ghcr.io/acme/billing:1.0.0",
            "after": "ghcr.io/acme/billing:1.1.0<b>",
        })])
        .into_string();
        assert!(
            rendered.contains("<caption>Images of the built overlay</caption>"),
            "{rendered}"
        );
        assert!(rendered.contains("<code>acme/billing</code>"), "{rendered}");
        assert!(
            rendered.contains("<code>ghcr.io/acme/billing:1.0.0</code>"),
            "{rendered}"
        );
        // Values are text, never markup.
        assert!(
            rendered.contains("ghcr.io/acme/billing:1.1.0&lt;b&gt;"),
            "{rendered}"
        );
        assert_eq!(badge_class("planned"), "info");
        assert_eq!(badge_class("something-new"), "neutral");
    }
}
