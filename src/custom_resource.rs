//! The ledger schema as part of the deploy (docs/design.md, Operations): CloudFormation invokes the
//! operator function with a custom-resource request for `LedgerSchema`; on Create and Update the
//! function applies the pending migrations and answers with the commit it was built from (the
//! stack's `DeployedCommit` output). Delete answers at once and leaves the schema and its data.
//!
//! CloudFormation waits for the answer, an HTTPS PUT of a JSON document to the pre-signed
//! `ResponseURL`, not for the invocation's result: every request gets exactly one answer, a failed
//! migration included (`FAILED` with the reason, which rolls the deploy back).

use serde::Deserialize;
use serde_json::{Value, json};

/// The fields of a CloudFormation custom-resource request this service uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CfnRequest {
    pub request_type: String,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

/// Stable across updates: a changed id would make CloudFormation delete the "old" resource.
pub const PHYSICAL_ID: &str = "order-confirmation-ledger-schema";

/// Is this payload a CloudFormation custom-resource request?
pub fn is_custom_resource_request(payload: &Value) -> bool {
    payload.get("RequestType").is_some() && payload.get("ResponseURL").is_some()
}

/// What the request asks of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create or Update: apply pending migrations.
    Migrate,
    /// Delete: nothing (the ledger outlives the stack).
    Keep,
}

impl CfnRequest {
    pub fn action(&self) -> Result<Action, String> {
        match self.request_type.as_str() {
            "Create" | "Update" => Ok(Action::Migrate),
            "Delete" => Ok(Action::Keep),
            _ => Err("RequestType: must be Create, Update or Delete".into()),
        }
    }

    /// The response document CloudFormation expects. The reason is cut to stay well under the
    /// 4 KB response limit.
    pub fn response(&self, outcome: &Result<Value, String>) -> Value {
        let physical = self.physical_resource_id.clone().unwrap_or_else(|| PHYSICAL_ID.to_owned());
        let mut doc = json!({
            "PhysicalResourceId": physical,
            "StackId": self.stack_id,
            "RequestId": self.request_id,
            "LogicalResourceId": self.logical_resource_id,
        });
        match outcome {
            Ok(data) => {
                doc["Status"] = json!("SUCCESS");
                doc["Data"] = data.clone();
            }
            Err(reason) => {
                doc["Status"] = json!("FAILED");
                doc["Reason"] = json!(reason.chars().take(1000).collect::<String>());
            }
        }
        doc
    }
}

/// PUTs the response to the pre-signed URL (HTTPS in AWS; plain HTTP is accepted for local tests).
/// No content type: the URL is signed without one.
pub async fn send_response(url: &str, body: &Value) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| format!("TLS set-up: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<bytes::Bytes>>(connector);
    let bytes = bytes::Bytes::from(body.to_string());
    let request = hyper::Request::builder()
        .method("PUT")
        .uri(url)
        .header("content-length", bytes.len())
        .body(Full::new(bytes))
        .map_err(|e| format!("ResponseURL is not a usable URL: {e}"))?;
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| "the response PUT timed out after 30 s".to_owned())?
        .map_err(|e| format!("the response PUT failed: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(format!("the response PUT was refused with HTTP {status}: {text}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: &str) -> CfnRequest {
        serde_json::from_value(json!({
            "RequestType": kind, "ResponseURL": "https://example.com/r", "StackId": "arn:aws:cloudformation:…:stack/s/1",
            "RequestId": "r-1", "LogicalResourceId": "LedgerSchema", "ResourceType": "Custom::LedgerSchema",
            "ServiceToken": "arn:aws:lambda:…", "ResourceProperties": {"CodeVersion": "3"}
        }))
        .unwrap()
    }

    #[test]
    fn create_and_update_migrate_and_delete_keeps_the_schema() {
        assert_eq!(request("Create").action(), Ok(Action::Migrate));
        assert_eq!(request("Update").action(), Ok(Action::Migrate));
        assert_eq!(request("Delete").action(), Ok(Action::Keep));
        assert!(request("Replace").action().is_err());
    }

    #[test]
    fn the_response_carries_the_request_ids_and_the_outcome() {
        let r = request("Create");
        let ok = r.response(&Ok(json!({"Commit": "abc"})));
        assert_eq!(ok["Status"], "SUCCESS");
        assert_eq!(ok["Data"]["Commit"], "abc");
        assert_eq!((ok["RequestId"].as_str(), ok["LogicalResourceId"].as_str()), (Some("r-1"), Some("LedgerSchema")));
        assert_eq!(ok["PhysicalResourceId"], PHYSICAL_ID);
        let failed = r.response(&Err("x".repeat(5000)));
        assert_eq!(failed["Status"], "FAILED");
        assert_eq!(failed["Reason"].as_str().unwrap().len(), 1000);
        assert!(is_custom_resource_request(
            &serde_json::to_value(json!({"RequestType": "Create", "ResponseURL": "u"})).unwrap()
        ));
    }
}
