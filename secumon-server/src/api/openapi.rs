//! The OpenAPI document of `/api/v1`, generated from the handlers' `#[utoipa::path]`
//! annotations and the types they take and return, served at `/api/v1/openapi.json`.
//! Conventions every operation shares (bearer authentication, the error shape of 4xx
//! answers) are added here once. The WebSocket `/api/v1/stream` is described in the README:
//! OpenAPI has no words for it.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use secumon_api::{ErrorBody, ErrorDetail};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "SecuMon API", description = "Agents, metrics, checks, alerts, findings, users and tenants. \
        Every operation but the login ones needs `Authorization: Bearer <access token or API key>` and acts \
        in the caller's tenant."),
    paths(
        super::accounts::login, super::accounts::verify_mfa, super::accounts::refresh, super::accounts::logout,
        super::accounts::me, super::accounts::enroll_mfa, super::accounts::confirm_mfa,
        super::accounts::list_users, super::accounts::add_user, super::accounts::get_user, super::accounts::reset_mfa, super::accounts::change_user,
        super::accounts::delete_user, super::accounts::revoke_sessions, super::accounts::change_password,
        super::accounts::list_api_keys, super::accounts::create_api_key, super::accounts::revoke_api_key,
        super::accounts::list_tenants, super::accounts::create_tenant,
        super::oidc::start, super::oidc::exchange,
        super::agents::list_agents, super::agents::get_agent, super::agents::delete_agent, super::agents::provision,
        super::agent_config::list_layers, super::agent_config::put_layer, super::agent_config::delete_layer,
        super::agent_config::agent_config,
        super::hosts::host_summary, super::overview::overview, super::reports::report, super::hosts::network_target, super::data::host_history, super::logs::host_logs,
        super::data::latest_checks, super::ingest::ingest,
        super::alerts::list_alerts, super::alerts::alert_stats, super::alerts::alert_history, super::alerts::acknowledge_alert,
        super::alerts::list_silences, super::alerts::add_silence, super::alerts::expire_silence, super::alerts::resolve_alert,
        super::rules::list_rules, super::rules::create_rule, super::rules::get_rule, super::rules::update_rule, super::rules::delete_rule,
        super::rules::test_rule, super::rules::rule_history,
        super::findings::list_findings, super::findings::import_findings, super::findings::import_secuscan, super::findings::list_integrations, super::secuops::ingest_secuops,
        super::dashboards::list, super::dashboards::create, super::dashboards::read, super::dashboards::update,
        super::dashboards::remove, super::config::read, super::config::write,
        super::audit::list, super::tenant_limits::read, super::tenant_limits::write,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Conventions),
    security(("bearer" = [])),
)]
struct ApiDoc;

/// Bearer authentication, and the error shape on every operation's 4xx answers.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("access token or API key").build(),
            ),
        );
        let error = ResponseBuilder::new()
            .description("The request was refused; the body says why")
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                operation.responses.responses.entry("4XX".to_string()).or_insert_with(|| RefOr::T(error.clone()));
            }
        }
    }
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises"));

/// `GET /api/v1/openapi.json`: no authentication, the same for everyone.
pub(super) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_lists_every_documented_operation_with_the_error_shape() {
        // OPENAPI_DUMP=FILE writes the document out, to compare it across a change.
        if let Ok(file) = std::env::var("OPENAPI_DUMP") {
            std::fs::write(file, &*super::DOCUMENT).unwrap();
        }
        let document: serde_json::Value = serde_json::from_str(&super::DOCUMENT).unwrap();
        let paths = document["paths"].as_object().unwrap();
        let operations: usize = paths.values().map(|item| item.as_object().unwrap().len()).sum();
        assert_eq!(operations, 68, "{:?}", paths.keys().collect::<Vec<_>>());
        for (path, item) in paths {
            for (method, operation) in item.as_object().unwrap() {
                assert!(operation["responses"]["4XX"].is_object(), "{method} {path} has no error answer");
            }
        }
        assert_eq!(document["paths"]["/api/v1/auth/login"]["post"]["security"], serde_json::json!([{}]));
        assert!(document["components"]["schemas"]["AgentList"].is_object());
        assert!(document["components"]["schemas"]["Overview"].is_object());
        assert!(document["components"]["schemas"]["RetentionSettings"].is_object(), "the config's retention");
    }
}
