//! The provider's list of the account's runs (`GET /v1/predictions`, every
//! page), for reconciling the spend ledger.

use super::super::ModelError;
use super::prediction::PredictionMetrics;
use super::{ReplicateGenerator, Target};
use async_trait::async_trait;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// One page of `GET /v1/predictions`.
#[derive(Debug, Deserialize)]
struct PredictionPage {
    #[serde(default)]
    results: Vec<ListedPrediction>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ListedPrediction {
    id: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    source: Option<String>,
    status: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    metrics: Option<PredictionMetrics>,
}

/// The most pages one listing reads (100 runs a page).
const MAX_PAGES: usize = 200;

#[async_trait]
impl crate::spend::RunHistory for ReplicateGenerator {
    async fn runs_since(&self, since_ms: u64) -> Result<Vec<crate::spend::ListedRun>, ModelError> {
        let api = &self.api;
        let mut url = api.endpoint("predictions");
        url.query_pairs_mut()
            .append_pair("created_after", &crate::spend::rfc3339(since_ms));
        let mut runs = Vec::new();
        for _ in 0..MAX_PAGES {
            let deadline = Instant::now() + Duration::from_secs(30);
            let page = api
                .call(reqwest::Method::GET, &url, deadline, Target::RunList)
                .await?
                .json::<PredictionPage>()
                .await
                .map_err(|e| {
                    ModelError::Unavailable(format!("unreadable list of predictions: {e}"))
                })?;
            runs.extend(page.results.into_iter().map(listed));
            // The next page, only on the API's own origin (the token goes with it).
            match page.next.and_then(|next| url::Url::parse(&next).ok()) {
                Some(next) if next.origin() == api.settings.base_url.origin() => url = next,
                _ => return Ok(runs),
            }
        }
        Ok(runs)
    }

    fn version(&self) -> &str {
        &self.api.settings.version
    }

    async fn stop(&self, run_id: &str) -> crate::generator::RunRecord {
        let answer = self.api.cancel(run_id).await;
        self.api.final_record(run_id, answer).await
    }
}

fn listed(prediction: ListedPrediction) -> crate::spend::ListedRun {
    crate::spend::ListedRun {
        terminal: matches!(
            prediction.status.as_str(),
            "succeeded" | "failed" | "canceled" | "aborted"
        ),
        billed_secs: prediction
            .metrics
            .and_then(|metrics| metrics.predict_time)
            .unwrap_or(0.0),
        created_ms: prediction
            .created_at
            .as_deref()
            .and_then(crate::spend::parse_rfc3339)
            .unwrap_or(0),
        from_api: prediction
            .source
            .as_deref()
            .is_none_or(|source| source == "api"),
        version: prediction.version,
        id: prediction.id,
    }
}
