//! Port's REST API: a client-credentials token (`POST /v1/auth/access_token` with `clientId` and
//! `clientSecret`, answered with `accessToken`), then `PATCH
//! /v1/blueprints/{blueprint}/entities/{entity}` with `{"properties": ...}` and the token as a
//! bearer. The token is fetched once per task and never logged or recorded; error messages carry
//! Port's status and the start of its answer, never a URL with credentials (there are none).
//!
//! The blueprint and the entity are rendered from event data and become path segments: each must
//! be a Port identifier ([`check_identifier`]: letters, digits and `@_.+:=-`, not `.` or `..`),
//! so no value can change the path (`..`, `/`, `?`, `#`, `%2f`); a refused one sends nothing.

use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::failure::StepFailure;
use super::settings::Settings;
use orchestrator_core::Secret;

/// Characters of an error answer kept in the record.
const ANSWER_CHARS: usize = 500;

/// A Port API client for one task.
pub struct PortClient {
    http: reqwest::Client,
    base: reqwest::Url,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    token: OnceCell<Secret>,
}

impl std::fmt::Debug for PortClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortClient")
            .field("base", &self.base.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(ANSWER_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Longest identifier accepted.
const MAX_IDENTIFIER: usize = 256;

/// `value` as a path segment naming a Port `what` (blueprint or entity): Port's identifier
/// characters but `/` (`A-Z a-z 0-9 @ _ . + : = -`), at most [`MAX_IDENTIFIER`], and not `.` or
/// `..` (a URL library resolves those as dot segments).
pub fn check_identifier(what: &str, value: &str) -> Result<(), String> {
    let shown: String = value.chars().take(80).collect();
    if value.is_empty() {
        return Err(format!("the {what} identifier is empty"));
    }
    if value == "." || value == ".." {
        return Err(format!("the {what} identifier `{shown}` is a dot segment"));
    }
    if value.len() > MAX_IDENTIFIER {
        return Err(format!(
            "the {what} identifier is longer than {MAX_IDENTIFIER} bytes"
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "@_.+:=-".contains(*c)))
    {
        return Err(format!(
            "the {what} identifier `{shown}` holds `{}`, which is not allowed in a Port identifier path segment",
            c.escape_default()
        ));
    }
    Ok(())
}

impl PortClient {
    /// `text` without the client secret: Port's error answers are recorded.
    fn redact(&self, text: &str) -> String {
        match &self.client_secret {
            Some(secret) => secret.redact(text),
            None => text.to_owned(),
        }
    }

    pub fn new(http: reqwest::Client, settings: &Settings) -> Self {
        Self {
            http,
            base: settings.port_api_url.clone(),
            client_id: settings.port_client_id.clone(),
            client_secret: settings.port_client_secret.clone(),
            token: OnceCell::new(),
        }
    }

    /// `base` with `segments` appended, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, StepFailure> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| StepFailure::new("PORT_API_URL cannot be a base URL"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn fetch_token(&self) -> Result<Secret, StepFailure> {
        let id = self
            .client_id
            .as_deref()
            .ok_or_else(|| StepFailure::new("PORT_CLIENT_ID is not set"))?;
        let secret = self
            .client_secret
            .as_ref()
            .ok_or_else(|| StepFailure::new("PORT_CLIENT_SECRET is not set"))?;
        let resp = self
            .http
            .post(self.url(&["v1", "auth", "access_token"])?)
            .json(&json!({"clientId": id, "clientSecret": secret.expose()}))
            .send()
            .await
            .map_err(|e| {
                StepFailure::new(format!("Port token request failed: {}", e.without_url()))
            })?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(StepFailure::new(format!(
                "Port refused the client credentials: HTTP {}: {}",
                status.as_u16(),
                short(&secret.redact(&body))
            )));
        }
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["accessToken"].as_str().map(Secret::new))
            .filter(|t| !t.expose().is_empty())
            .ok_or_else(|| StepFailure::new("Port's token answer has no accessToken"))
    }

    /// `PATCH /v1/blueprints/{blueprint}/entities/{entity}` with `properties`.
    pub async fn patch_entity(
        &self,
        blueprint: &str,
        entity: &str,
        properties: &Value,
    ) -> Result<Value, StepFailure> {
        let request = json!({"properties": properties});
        let detail = |status: Option<u16>| {
            json!({
                "blueprint": blueprint,
                "entity": entity,
                "request": request,
                "http_status": status,
            })
        };
        check_identifier("blueprint", blueprint)
            .and_then(|()| check_identifier("entity", entity))
            .map_err(|e| StepFailure::with_detail(e, detail(None)))?;
        let token = self
            .token
            .get_or_try_init(|| self.fetch_token())
            .await
            .map_err(|f| StepFailure::with_detail(f.error, detail(None)))?;
        let url = self.url(&["v1", "blueprints", blueprint, "entities", entity])?;
        let resp = self
            .http
            .patch(url)
            .bearer_auth(token.expose())
            .json(&request)
            .send()
            .await
            .map_err(|e| {
                StepFailure::with_detail(
                    format!("Port PATCH failed: {}", e.without_url()),
                    detail(None),
                )
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(detail(Some(status.as_u16())));
        }
        let body = resp.text().await.unwrap_or_default();
        Err(StepFailure::with_detail(
            format!(
                "Port answered HTTP {} to the PATCH: {}",
                status.as_u16(),
                short(&self.redact(&token.redact(&body)))
            ),
            detail(Some(status.as_u16())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const CLIENT_SECRET: &str = "port-secret-canary-5f1e";
    const ACCESS_TOKEN: &str = "port-access-canary-77ab";

    fn client(server: &MockServer) -> PortClient {
        PortClient {
            http: orchestrator_clients::http::client().unwrap(),
            base: reqwest::Url::parse(&server.uri()).unwrap(),
            client_id: Some("id".into()),
            client_secret: Some(Secret::new(CLIENT_SECRET)),
            token: OnceCell::new(),
        }
    }

    #[test]
    fn identifiers_are_single_path_segments() {
        for ok in [
            "vm-1",
            "deploymentConfig",
            "svc@prod",
            "a.b",
            "x_y:z=1+2",
            "..a",
        ] {
            check_identifier("entity", ok).unwrap();
        }
        for bad in [
            "", ".", "..", "a/b", "/", "../x", "a\\b", "a?x=1", "a#b", "a%2fb", "%2e%2e", "a b",
            "a\nb", "é",
        ] {
            assert!(check_identifier("entity", bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(MAX_IDENTIFIER + 1);
        assert!(check_identifier("entity", &long).is_err());
    }

    /// Every path-changing identifier is a step failure, and Port receives nothing at all (not
    /// even the token request).
    #[tokio::test]
    async fn a_path_changing_identifier_sends_no_request() {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"accessToken": ACCESS_TOKEN})),
            )
            .mount(&server)
            .await;
        let c = client(&server);
        for (blueprint, entity) in [
            ("vm", ".."),
            ("vm", "."),
            ("vm", ""),
            ("..", "vm-1"),
            ("vm", "../../blueprints/other"),
            ("vm", "a/b"),
            ("vm", "x?y=1"),
            ("vm", "x#y"),
            ("vm", "%2e%2e"),
            ("vm", "a%2fb"),
        ] {
            let e = c
                .patch_entity(blueprint, entity, &serde_json::json!({"a": 1}))
                .await
                .unwrap_err();
            assert!(
                e.error.contains("identifier"),
                "{blueprint}/{entity}: {}",
                e.error
            );
            assert_eq!(e.detail["http_status"], Value::Null);
        }
        assert!(server.received_requests().await.unwrap().is_empty());
        // A plain identifier does reach Port (so the refusals above are the check's doing).
        let _ = c
            .patch_entity("vm", "vm-1", &serde_json::json!({"a": 1}))
            .await;
        assert!(!server.received_requests().await.unwrap().is_empty());
    }

    /// A Port that echoes what it was sent in its errors: the recorded error must not carry it.
    #[tokio::test]
    async fn error_answers_are_recorded_without_the_secrets() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/auth/access_token"))
            .respond_with(ResponseTemplate::new(401).set_body_string(format!(
                "{{\"error\":\"bad credentials\",\"clientSecret\":\"{CLIENT_SECRET}\"}}"
            )))
            .mount(&server)
            .await;
        let e = client(&server)
            .patch_entity("vm", "vm-1", &serde_json::json!({"a": 1}))
            .await
            .unwrap_err();
        assert!(
            e.error.contains("HTTP 401") && e.error.contains("***"),
            "{}",
            e.error
        );
        assert!(!e.error.contains(CLIENT_SECRET), "{}", e.error);

        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/auth/access_token"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"accessToken": ACCESS_TOKEN})),
            )
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/v1/blueprints/vm/entities/vm-1"))
            .respond_with(ResponseTemplate::new(403).set_body_string(format!(
                "token {ACCESS_TOKEN} may not write; secret {CLIENT_SECRET}"
            )))
            .mount(&server)
            .await;
        let e = client(&server)
            .patch_entity("vm", "vm-1", &serde_json::json!({"a": 1}))
            .await
            .unwrap_err();
        assert!(e.error.contains("HTTP 403"), "{}", e.error);
        assert!(
            !e.error.contains(ACCESS_TOKEN) && !e.error.contains(CLIENT_SECRET),
            "{}",
            e.error
        );
    }
}
