//! The audit API's client, behind `orchestrator records list|show|redispatch|redact`: it talks
//! HTTP to a deployed (or local) API, authenticated with the audit or admin token (from the
//! environment, never argv) or with SigV4 and the caller's AWS identity (the routes are
//! IAM-authorized on AWS), and renders answers as JSON (as the API sent them) or as text for
//! people.

use std::fmt::Write as _;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use orchestrator_core::{RecordId, Secret};
use reqwest::{Method, Url};
use serde_json::Value;

use crate::api::access::Power;

/// How requests prove who sends them.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `Authorization: Bearer <token>` (`AUDIT_TOKEN` or `ADMIN_TOKEN`).
    Token(Secret),
    /// SigV4 for API Gateway (`execute-api`) in `region`.
    SigV4 {
        credentials: Credentials,
        region: String,
    },
}

impl ClientAuth {
    /// The token for `need`, looked up with `env` (the environment, in the binary): the admin
    /// token for admin operations; the audit token, else the admin token, for reading.
    pub fn token_from(
        need: Power,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ClientAuth, ClientError> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty()).map(Secret::new);
        let token = match need {
            Power::Audit => get("AUDIT_TOKEN").or_else(|| get("ADMIN_TOKEN")),
            Power::Admin => get("ADMIN_TOKEN"),
        };
        token.map(ClientAuth::Token).ok_or(ClientError::Missing(match need {
            Power::Audit => "no credential: set AUDIT_TOKEN (or ADMIN_TOKEN), or pass --sigv4 to sign with your AWS identity",
            Power::Admin => "no credential: set ADMIN_TOKEN, or pass --sigv4 to sign with your AWS identity",
        }))
    }
}

/// What can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A setting the command needs is missing (says which and how to give it).
    #[error("{0}")]
    Missing(&'static str),
    #[error("the API URL `{0}` is not an http(s) URL")]
    BadUrl(String),
    #[error("cannot reach the API: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot sign the request: {0}")]
    Sign(String),
    /// The API's error answer: status, stable code and message.
    #[error("the API answered {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

/// Filters and paging of `records list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub service: Option<String>,
    pub status: Option<String>,
    pub source: Option<String>,
}

impl ListFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        for (k, v) in [
            ("cursor", &self.cursor),
            ("service", &self.service),
            ("status", &self.status),
            ("source", &self.source),
        ] {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        q
    }
}

/// A client of one API (its base URL, e.g. `https://…/prod` or `http://127.0.0.1:3000`).
#[derive(Debug, Clone)]
pub struct RecordsClient {
    http: reqwest::Client,
    base: Url,
    auth: ClientAuth,
}

impl RecordsClient {
    pub fn new(base: &str, auth: ClientAuth) -> Result<Self, ClientError> {
        let mut url = Url::parse(base).map_err(|_| ClientError::BadUrl(base.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(ClientError::BadUrl(base.to_owned()));
        }
        // `…/prod` and `…/prod/` alike: paths are appended to the stage.
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        let http = orchestrator_clients::http::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base: url,
            auth,
        })
    }

    /// `GET /pullrequests`: one page, as the API sent it.
    pub async fn list(&self, filter: &ListFilter) -> Result<Value, ClientError> {
        let mut url = self.url("pullrequests")?;
        let q = filter.query();
        if !q.is_empty() {
            url.query_pairs_mut().extend_pairs(q);
        }
        self.send(Method::GET, url).await
    }

    /// `GET /pullrequests/{id}`.
    pub async fn show(&self, id: RecordId) -> Result<Value, ClientError> {
        let url = self.url(&format!("pullrequests/{id}"))?;
        self.send(Method::GET, url).await
    }

    /// `POST /pullrequests/{id}/dispatch`.
    pub async fn redispatch(&self, id: RecordId) -> Result<Value, ClientError> {
        let url = self.url(&format!("pullrequests/{id}/dispatch"))?;
        self.send(Method::POST, url).await
    }

    /// `DELETE /pullrequests/{id}`: the redacted record.
    pub async fn redact(&self, id: RecordId) -> Result<Value, ClientError> {
        let url = self.url(&format!("pullrequests/{id}"))?;
        self.send(Method::DELETE, url).await
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        self.base
            .join(path)
            .map_err(|_| ClientError::BadUrl(self.base.to_string()))
    }

    async fn send(&self, method: Method, url: Url) -> Result<Value, ClientError> {
        let mut req = self.http.request(method.clone(), url.clone());
        match &self.auth {
            ClientAuth::Token(t) => req = req.bearer_auth(t.expose()),
            ClientAuth::SigV4 {
                credentials,
                region,
            } => {
                for (name, value) in sigv4_headers(
                    credentials,
                    region,
                    method.as_str(),
                    url.as_str(),
                    SystemTime::now(),
                )? {
                    req = req.header(name, value);
                }
            }
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_success() {
            return Ok(body);
        }
        let text = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_owned);
        Err(ClientError::Api {
            status: status.as_u16(),
            code: text("/error/code").unwrap_or_else(|| "unknown".into()),
            // API Gateway's own refusals (a missing or wrong signature) say `message`.
            message: text("/error/message")
                .or_else(|| text("/message"))
                .unwrap_or_else(|| body.to_string()),
        })
    }
}

/// The headers that sign `method url` (no body) with SigV4 for API Gateway at `time`:
/// `authorization`, `x-amz-date` and, with temporary credentials, `x-amz-security-token`.
pub fn sigv4_headers(
    credentials: &Credentials,
    region: &str,
    method: &str,
    url: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, ClientError> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ClientError::Sign(e.to_string()))?
        .into();
    let signable = SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| ClientError::Sign(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| ClientError::Sign(e.to_string()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// `orchestrator records`: where the API is and how to talk to it.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordsArgs {
    /// Base URL of the API: the stage URL on AWS (`https://<id>.execute-api.<region>.amazonaws.com/<stage>`),
    /// `http://127.0.0.1:3000` locally.
    #[arg(long, env = "ORCHESTRATOR_API_URL", global = true)]
    pub api_url: Option<String>,
    /// Print the API's JSON as it was sent (for scripts), instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Sign with SigV4 and the default AWS credential chain (environment, profile, SSO, role),
    /// instead of AUDIT_TOKEN / ADMIN_TOKEN.
    #[arg(long, global = true)]
    pub sigv4: bool,
    /// Region of the API for SigV4 (default: the AWS configuration's).
    #[arg(long, global = true)]
    pub region: Option<String>,
    #[command(subcommand)]
    pub op: RecordsOp,
}

/// One operation on the audit trail. Tokens come from the environment only: `AUDIT_TOKEN` (or
/// `ADMIN_TOKEN`) to read, `ADMIN_TOKEN` to re-dispatch or redact.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RecordsOp {
    /// One page of records, newest first.
    List {
        /// Records per page (1 to 100).
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        source: Option<String>,
    },
    /// One record, whole.
    Show { id: RecordId },
    /// Launch again a record stuck in `received`.
    Redispatch { id: RecordId },
    /// Redact a finished record: its payload is cleared, a tombstone stays.
    Redact { id: RecordId },
}

impl RecordsOp {
    fn power(&self) -> Power {
        match self {
            RecordsOp::List { .. } | RecordsOp::Show { .. } => Power::Audit,
            RecordsOp::Redispatch { .. } | RecordsOp::Redact { .. } => Power::Admin,
        }
    }
}

/// Runs `records …`: the text to print. `env` looks up the tokens (the process environment, in
/// the binary).
pub async fn run(
    args: RecordsArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, ClientError> {
    let base = args.api_url.as_deref().ok_or(ClientError::Missing(
        "no API URL: pass --api-url or set ORCHESTRATOR_API_URL",
    ))?;
    let auth = if args.sigv4 {
        sigv4_from_default_chain(args.region).await?
    } else {
        ClientAuth::token_from(args.op.power(), env)?
    };
    let client = RecordsClient::new(base, auth)?;
    let (value, page) = match args.op {
        RecordsOp::List {
            limit,
            cursor,
            service,
            status,
            source,
        } => {
            let filter = ListFilter {
                limit,
                cursor,
                service,
                status,
                source,
            };
            (client.list(&filter).await?, true)
        }
        RecordsOp::Show { id } => (client.show(id).await?, false),
        RecordsOp::Redispatch { id } => (client.redispatch(id).await?, false),
        RecordsOp::Redact { id } => (client.redact(id).await?, false),
    };
    Ok(if args.json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        )
    } else if page {
        render_page(&value)
    } else {
        render_record(&value)
    })
}

/// SigV4 credentials and region from the default AWS chain.
async fn sigv4_from_default_chain(region: Option<String>) -> Result<ClientAuth, ClientError> {
    use aws_credential_types::provider::ProvideCredentials;
    let config = orchestrator_clients::aws::config().await;
    let region = region
        .or_else(|| config.region().map(|r| r.to_string()))
        .ok_or(ClientError::Missing(
            "--sigv4 needs a region: pass --region or set AWS_REGION",
        ))?;
    let provider = config.credentials_provider().ok_or(ClientError::Missing(
        "--sigv4: the AWS configuration has no credential provider",
    ))?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| ClientError::Sign(format!("no AWS credentials: {e}")))?;
    Ok(ClientAuth::SigV4 {
        credentials,
        region,
    })
}

fn field<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("-")
}

/// A page of records as a table: one line per record, newest first, then the next cursor.
pub fn render_page(page: &Value) -> String {
    let rows: Vec<[String; 6]> = page["records"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            [
                field(r, "/id").to_owned(),
                field(r, "/received_at").to_owned(),
                field(r, "/source").to_owned(),
                field(r, "/status").to_owned(),
                field(r, "/job/service").to_owned(),
                match (r.pointer("/job/environment"), r.pointer("/job/tag")) {
                    (Some(e), Some(t)) => format!(
                        "{}@{}",
                        e.as_str().unwrap_or("-"),
                        t.as_str().unwrap_or("-")
                    ),
                    _ => "-".to_owned(),
                },
            ]
        })
        .collect();
    let header = ["ID", "RECEIVED", "SOURCE", "STATUS", "SERVICE", "ENV@TAG"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, &header);
    for row in &rows {
        line(&mut out, &row.each_ref().map(String::as_str));
    }
    if rows.is_empty() {
        out.push_str("(no records)\n");
    }
    if let Some(c) = page["next_cursor"].as_str() {
        let _ = writeln!(out, "more: --cursor {c}");
    }
    out
}

/// One record for people: its main fields, one per line (absent ones left out).
pub fn render_record(r: &Value) -> String {
    let mut out = String::new();
    for (label, path) in [
        ("id", "/id"),
        ("status", "/status"),
        ("reason", "/status_reason"),
        ("source", "/source"),
        ("received", "/received_at"),
        ("updated", "/updated_at"),
        ("service", "/job/service"),
        ("image", "/job/image"),
        ("environment", "/job/environment"),
        ("tag", "/job/tag"),
        ("rule", "/rule"),
        ("task", "/task_arn"),
        ("pull request", "/pr_url"),
        ("branch", "/branch"),
        ("dedupe key", "/dedupe_key"),
        ("redacted by", "/redacted_by"),
        ("redacted at", "/redacted_at"),
    ] {
        if let Some(v) = r.pointer(path).filter(|v| !v.is_null()) {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let _ = writeln!(out, "{label:<13} {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_environment_by_power() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let token = |a: Result<ClientAuth, ClientError>| match a {
            Ok(ClientAuth::Token(t)) => Some(t.expose().to_owned()),
            _ => None,
        };
        let both = env(&[("AUDIT_TOKEN", "aud"), ("ADMIN_TOKEN", "adm")]);
        assert_eq!(
            token(ClientAuth::token_from(Power::Audit, both)).as_deref(),
            Some("aud")
        );
        assert_eq!(
            token(ClientAuth::token_from(Power::Admin, both)).as_deref(),
            Some("adm")
        );
        let admin = env(&[("ADMIN_TOKEN", "adm")]);
        assert_eq!(
            token(ClientAuth::token_from(Power::Audit, admin)).as_deref(),
            Some("adm")
        );
        let audit = env(&[("AUDIT_TOKEN", "aud"), ("ADMIN_TOKEN", "")]);
        assert!(matches!(
            ClientAuth::token_from(Power::Admin, audit),
            Err(ClientError::Missing(m)) if m.contains("ADMIN_TOKEN")
        ));
    }

    #[test]
    fn base_urls_keep_their_stage() {
        let c = RecordsClient::new(
            "https://x.example/prod",
            ClientAuth::Token(Secret::new("t")),
        )
        .unwrap();
        assert_eq!(
            c.url("pullrequests").unwrap().as_str(),
            "https://x.example/prod/pullrequests"
        );
        for bad in ["ftp://x", "not a url", "mailto:a@b"] {
            assert!(
                RecordsClient::new(bad, ClientAuth::Token(Secret::new("t"))).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_page_renders_as_an_aligned_table() {
        let page = serde_json::json!({
            "records": [
                {"id": "0193-a", "received_at": "2026-11-28T10:00:00.000Z", "source": "circleci_orb",
                 "status": "succeeded", "job": {"service": "shop", "environment": "dev", "tag": "abc1234"}},
                {"id": "0193-b", "received_at": "2026-11-28T09:00:00.000Z", "source": "port",
                 "status": "ignored", "job": null}
            ],
            "next_cursor": "cur"
        });
        let text = render_page(&page);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("ID      RECEIVED"), "{text}");
        assert!(
            lines[1].contains("succeeded  shop     dev@abc1234"),
            "{text}"
        );
        assert!(lines[2].ends_with("ignored    -        -"), "{text}");
        assert_eq!(lines[3], "more: --cursor cur");
    }
}
