//! A tenant's alerting as the API uses it, wherever its engine runs. In one process it is
//! the local engine. Split over processes (`--role`), an API process runs no engine: each
//! tenant's alerts live in the alert process that holds its lease, so the API's reads
//! (alerts, silences, rules, history) and changes (acknowledge, resolve, silence, rule
//! edits, a revoked agent, imported findings) are calls to that process over NATS
//! request/reply on [`CALL_SUBJECT`]. Every alert process hears every call and only the
//! tenant's owner answers; while nobody owns it (a handover) the call times out and the
//! API answers 503, so an API process never acts on a stale copy of the engine or writes
//! one over the owner's state.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use secumon_alert::{Acknowledgement, ActiveAlert, RuleSpec, Silence};
use secumon_api::ErrorCode;
use secumon_core::{Finding, IngestBatch, Sample};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::alerting::{Alerting, RuleTest, RuleView};
use crate::api::ApiError;
use crate::tenants::AlertingByTenant;

/// The subject of alert calls; the tenant goes in a header.
pub const CALL_SUBJECT: &str = "secumon.alerting.call";
const TENANT_HEADER: &str = "Secumon-Tenant";
/// How long a call waits for the tenant's owner: beyond a lease's handover, the API says
/// to try again rather than hold its caller.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One operation on a tenant's alerting.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
enum Call {
    Active,
    DeliveryFailures,
    History { rule: Option<String>, limit: u32 },
    Acknowledge { id: String, ack: Acknowledgement },
    Resolve { id: String, by: String },
    Silences,
    AddSilence { silence: Silence },
    ExpireSilence { id: String, by: String },
    Rules,
    CreateRule { spec: RuleSpec },
    UpdateRule { id: String, spec: RuleSpec },
    DeleteRule { id: String },
    TestRule { id: String },
    ChannelNames,
    ForgetAgent { id: String },
    ObserveFindings { findings: Vec<Finding>, samples: Vec<Sample> },
    ObserveSamples { samples: Vec<Sample> },
}

/// The owner's answer: the call's value, or the API error it came to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ok(serde_json::Value),
    Refused { code: String, message: String },
}

/// Runs `call` on a local engine: the owner's side of a call, and the one-process path.
async fn run(engine: &Alerting, call: Call) -> Result<serde_json::Value, ApiError> {
    fn value<T: Serialize>(value: T) -> Result<serde_json::Value, ApiError> {
        serde_json::to_value(value).map_err(|e| ApiError::internal(ErrorCode::Internal, "an answer did not encode", e))
    }
    match call {
        Call::Active => value(engine.active()),
        Call::DeliveryFailures => value(engine.delivery_failures()),
        Call::History { rule, limit } => value(engine.history(rule.as_deref(), limit).await?),
        Call::Acknowledge { id, ack } => value(engine.acknowledge(&id, ack)),
        Call::Resolve { id, by } => value(engine.resolve(&id, &by)),
        Call::Silences => value(engine.silences()),
        Call::AddSilence { silence } => value(engine.add_silence(silence)),
        Call::ExpireSilence { id, by } => value(engine.expire_silence(&id, &by)),
        Call::Rules => value(engine.rules().await),
        Call::CreateRule { spec } => value(engine.create_rule(spec).await?),
        Call::UpdateRule { id, spec } => value(engine.update_rule(&id, spec).await?),
        Call::DeleteRule { id } => value(engine.delete_rule(&id).await?),
        Call::TestRule { id } => value(engine.test_rule(&id).await?),
        Call::ChannelNames => value(engine.channel_names()),
        Call::ForgetAgent { id } => {
            engine.forget_agent(&id);
            value(())
        }
        Call::ObserveFindings { findings, samples } => {
            engine.observe_findings(&findings, &samples);
            value(())
        }
        Call::ObserveSamples { samples } => {
            engine.observe_unstored(&samples);
            value(())
        }
    }
}

/// A tenant's alerting: its engine here, or calls to the alert process that owns it.
pub(crate) enum TenantAlerting {
    Local(Arc<Alerting>),
    Remote { client: async_nats::Client, tenant: String },
}

impl TenantAlerting {
    async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, ApiError> {
        let answer = match self {
            Self::Local(engine) => run(engine, call).await?,
            Self::Remote { client, tenant } => remote(client, tenant, &call).await?,
        };
        serde_json::from_value(answer)
            .map_err(|e| ApiError::internal(ErrorCode::Internal, "the alert process's answer did not decode", e))
    }

    /// The alerts pending, firing or stale now.
    pub async fn active(&self) -> Result<Vec<ActiveAlert>, ApiError> {
        match self {
            // Cheap and frequent (the overview, `ALERTS`): no JSON round trip here.
            Self::Local(engine) => Ok(engine.active()),
            Self::Remote { .. } => self.call(Call::Active).await,
        }
    }

    /// Deliveries that failed for good since the owning process started.
    pub async fn delivery_failures(&self) -> Result<u64, ApiError> {
        self.call(Call::DeliveryFailures).await
    }

    /// The latest history entries, of one rule or all, newest first.
    pub async fn history(&self, rule: Option<&str>, limit: u32) -> Result<Vec<serde_json::Value>, ApiError> {
        self.call(Call::History { rule: rule.map(str::to_string), limit }).await
    }

    /// Acknowledges a firing alert; `false` when there is none with `id`.
    pub async fn acknowledge(&self, id: &str, ack: Acknowledgement) -> Result<bool, ApiError> {
        self.call(Call::Acknowledge { id: id.to_string(), ack }).await
    }

    /// Resolves a firing or stale alert by hand; `false` when there is none with `id`.
    pub async fn resolve(&self, id: &str, by: &str) -> Result<bool, ApiError> {
        self.call(Call::Resolve { id: id.to_string(), by: by.to_string() }).await
    }

    /// The silences in force or still to come.
    pub async fn silences(&self) -> Result<Vec<Silence>, ApiError> {
        self.call(Call::Silences).await
    }

    /// Adds a silence; the engine gives it its id.
    pub async fn add_silence(&self, silence: Silence) -> Result<Silence, ApiError> {
        self.call(Call::AddSilence { silence }).await
    }

    /// Ends a silence before its time; `None` when there is no current one with `id`.
    pub async fn expire_silence(&self, id: &str, by: &str) -> Result<Option<Silence>, ApiError> {
        self.call(Call::ExpireSilence { id: id.to_string(), by: by.to_string() }).await
    }

    /// Every rule, from the rules file and from the API.
    pub async fn rules(&self) -> Result<Vec<RuleView>, ApiError> {
        self.call(Call::Rules).await
    }

    pub async fn create_rule(&self, spec: RuleSpec) -> Result<(), ApiError> {
        self.call(Call::CreateRule { spec }).await
    }

    pub async fn update_rule(&self, id: &str, spec: RuleSpec) -> Result<(), ApiError> {
        self.call(Call::UpdateRule { id: id.to_string(), spec }).await
    }

    pub async fn delete_rule(&self, id: &str) -> Result<(), ApiError> {
        self.call(Call::DeleteRule { id: id.to_string() }).await
    }

    /// What a rule would do now, against stored data.
    pub async fn test_rule(&self, id: &str) -> Result<RuleTest, ApiError> {
        self.call(Call::TestRule { id: id.to_string() }).await
    }

    /// The notification channels this tenant's rules may name.
    pub async fn channel_names(&self) -> Result<Vec<String>, ApiError> {
        self.call(Call::ChannelNames).await
    }

    /// Ends what the engine holds of a revoked agent.
    pub async fn forget_agent(&self, id: &str) -> Result<(), ApiError> {
        self.call(Call::ForgetAgent { id: id.to_string() }).await
    }

    /// Evaluates finding rules against findings just stored and the samples their import wrote.
    pub async fn observe_findings(&self, findings: Vec<Finding>, samples: Vec<Sample>) -> Result<(), ApiError> {
        self.call(Call::ObserveFindings { findings, samples }).await
    }

    /// Evaluates the rules a just-committed batch concerns. Another process's engine hears
    /// of it from the cluster feed, as of every committed batch: nothing to call.
    pub fn observe_batch(&self, tenant: &str, batch: &IngestBatch) {
        if let Self::Local(engine) = self {
            engine.observe_batch(tenant, batch);
        }
    }

    /// Evaluates the rules on the server's own stored samples (a refused sender's clock
    /// offset): not a committed agent batch, so not on the cluster feed.
    pub async fn observe_own_batch(&self, tenant: &str, batch: &IngestBatch) -> Result<(), ApiError> {
        match self {
            Self::Local(engine) => {
                engine.observe_own_batch(tenant, batch);
                Ok(())
            }
            Self::Remote { .. } => {
                let samples = batch
                    .metric_samples()
                    .map(|s| Sample { series: batch.stored_series_key(tenant, &s.series), ..s.into_owned() })
                    .collect();
                self.call(Call::ObserveSamples { samples }).await
            }
        }
    }
}

async fn remote(client: &async_nats::Client, tenant: &str, call: &Call) -> Result<serde_json::Value, ApiError> {
    let unavailable = |why: String| {
        ApiError::internal(
            ErrorCode::Busy,
            format!("no alert process answers for tenant {tenant:?} now (a lease changing hands?): try again"),
            why,
        )
    };
    let body = serde_json::to_vec(call).map_err(|e| unavailable(e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert(TENANT_HEADER, tenant);
    let request = async_nats::Request::new().payload(body.into()).headers(headers).timeout(Some(CALL_TIMEOUT));
    let message = client.send_request(CALL_SUBJECT, request).await.map_err(|e| unavailable(e.to_string()))?;
    match serde_json::from_slice::<Reply>(&message.payload) {
        Ok(Reply::Ok(value)) => Ok(value),
        Ok(Reply::Refused { code, message }) => {
            Err(ApiError::new(ErrorCode::parse(&code).unwrap_or(ErrorCode::Internal), message))
        }
        Err(error) => Err(unavailable(format!("an undecodable answer: {error}"))),
    }
}

/// The owner's side: answers the calls for the tenants this process evaluates, until
/// `stopped`; calls for other tenants are left to their owners.
pub(crate) async fn serve(
    client: async_nats::Client,
    alerting: Arc<AlertingByTenant>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), async_nats::SubscribeError> {
    let mut calls = client.subscribe(CALL_SUBJECT).await?;
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => break,
                message = calls.next() => match message { Some(message) => message, None => break },
            };
            let (client, alerting) = (client.clone(), Arc::clone(&alerting));
            // Each call on its own task: a rule test reading the store must not hold up an
            // acknowledgement behind it.
            tokio::spawn(async move {
                let Some(reply_to) = message.reply.clone() else { return };
                let tenant =
                    message.headers.as_ref().and_then(|h| h.get(TENANT_HEADER)).map(|v| v.as_str().to_string());
                let Some(tenant) = tenant else { return };
                let engine = match alerting.evaluating(&tenant).await {
                    Ok(Some(engine)) => engine,
                    Ok(None) => return,
                    Err(error) => {
                        tracing::error!(%tenant, %error, "cannot start the tenant's alert engine for a call");
                        return;
                    }
                };
                let reply = match serde_json::from_slice::<Call>(&message.payload) {
                    Ok(call) => match run(&engine, call).await {
                        Ok(value) => Reply::Ok(value),
                        Err(error) => Reply::Refused {
                            code: error.code().as_str().to_string(),
                            message: error.message().to_string(),
                        },
                    },
                    Err(error) => Reply::Refused {
                        code: ErrorCode::BadRequest.as_str().to_string(),
                        message: format!("an alert call this process does not understand: {error}"),
                    },
                };
                let body = serde_json::to_vec(&reply).unwrap_or_default();
                if let Err(error) = client.publish(reply_to, body.into()).await {
                    tracing::warn!(%tenant, %error, "cannot answer an alert call");
                }
            });
        }
    });
    Ok(())
}
