//! The client's readers of Replicate's answers.

use super::super::{ImageFormat, RunRecord};
use super::prediction::*;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

#[test]
fn retry_after_reads_seconds_dates_and_bodies() {
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, "7".parse().unwrap());
    assert_eq!(retry_after(&headers, ""), Some(Duration::from_secs(7)));
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    headers.insert(RETRY_AFTER, later.parse().unwrap());
    let parsed = retry_after(&headers, "").unwrap();
    assert!(
        parsed > Duration::from_secs(27) && parsed <= Duration::from_secs(30),
        "{parsed:?}"
    );
    assert_eq!(
        retry_after(
            &HeaderMap::new(),
            r#"{"detail":"slow down","retry_after":2.5}"#
        ),
        Some(Duration::from_millis(2500))
    );
    assert_eq!(retry_after(&HeaderMap::new(), "{}"), None);
}

#[test]
fn images_are_recognised_by_their_first_bytes() {
    assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(ImageFormat::Png));
    assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
    assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(ImageFormat::Webp));
    assert_eq!(sniff(b"<html>not an image</html>"), None);
}

#[test]
fn predictions_are_done_when_terminal_or_holding_output() {
    let p = |status: &str, output: Value| Prediction {
        id: "x".into(),
        status: status.into(),
        output,
        error: Value::Null,
        logs: None,
        started_at: None,
        metrics: None,
    };
    assert!(!p("starting", Value::Null).is_done());
    assert!(!p("processing", json!([])).is_done());
    assert!(p("processing", json!(["data:image/png;base64,AA"])).is_done());
    assert!(p("aborted", Value::Null).is_done());
    assert!(
        !p("queued-in-the-future", Value::Null).is_done(),
        "unknown is not terminal"
    );
}

#[test]
fn the_record_of_a_run_is_read_from_started_at_and_predict_time() {
    let read = |json: &str| serde_json::from_str::<Prediction>(json).unwrap().record();
    assert_eq!(
        read(r#"{"id":"a","status":"processing","started_at":"2026-12-06T10:00:00Z"}"#),
        None,
        "not over yet"
    );
    assert_eq!(
        read(r#"{"id":"a","status":"canceled","started_at":null,"metrics":{}}"#),
        Some(RunRecord {
            run_id: Some("a".into()),
            processed: false,
            billed_secs: 0.0
        }),
        "stopped before it processed: not billed"
    );
    assert_eq!(
        read(
            r#"{"id":"a","status":"canceled","started_at":"2026-12-06T10:00:00Z","metrics":{"predict_time":2.5}}"#
        ),
        Some(RunRecord {
            run_id: Some("a".into()),
            processed: true,
            billed_secs: 2.5
        })
    );
    assert_eq!(
        read(r#"{"id":"a","status":"failed","metrics":{"predict_time":7.25}}"#)
            .map(|record| record.processed),
        Some(true),
        "billed seconds mean it processed"
    );
    assert_eq!(
        read(r#"{"id":"a","status":"aborted","started_at":null}"#),
        Some(RunRecord {
            run_id: Some("a".into()),
            processed: false,
            billed_secs: 0.0
        })
    );
}

#[test]
fn progress_is_read_from_the_last_bar_in_the_logs() {
    let logs = "Using seed: 7\n  0%|          | 0/50 [00:00<?, ?it/s]\n 46%|████▌     | 23/50 [00:04<00:05]";
    assert_eq!(last_percent(logs), Some(46));
    assert_eq!(last_percent("loading weights"), None);
    assert_eq!(last_percent("100%|██████████| 50/50"), Some(100));
    assert_eq!(last_percent("999%|"), None);
}

#[test]
fn problem_bodies_are_summarised() {
    let body = r#"{"title":"Invalid version or not permitted","detail":"The specified version does not exist","status":422,"invalid_fields":[{"field":"version"}]}"#;
    let text = problem(body);
    assert!(
        text.starts_with("Invalid version or not permitted The specified version does not exist"),
        "{text}"
    );
    assert!(text.contains("invalid_fields"), "{text}");
}

#[test]
fn only_the_tail_of_long_logs_is_kept_with_its_last_bar() {
    let mut prediction: Prediction = serde_json::from_value(json!({
        "id": "a", "status": "processing",
        "logs": format!("{}\n 12%|█▏  | 6/50", "é".repeat(1000)),
    }))
    .unwrap();
    prediction.keep_logs_tail(100);
    let logs = prediction.logs.as_deref().unwrap();
    assert!(logs.len() <= 100, "{}", logs.len());
    assert_eq!(last_percent(logs), Some(12));
}

/// Webhook deliveries against a generator whose records are in memory.
mod webhooks {
    use super::super::{CallLimits, WebhookSettings};
    use super::super::{ReplicateGenerator, ReplicateSettings, WebhookOutcome, WebhookRefusal};
    use reqwest::header::HeaderMap;
    use serde_json::json;
    use std::time::{Duration, SystemTime};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn generator() -> ReplicateGenerator {
        ReplicateGenerator::new(ReplicateSettings {
            // Nothing listens there: no call may be needed.
            base_url: "http://127.0.0.1:9".parse().unwrap(),
            token: "r8_unused".into(),
            model: "owner/name".into(),
            version: "0".repeat(64),
            prompt_prefix: String::new(),
            input: Default::default(),
            deadline: Duration::from_secs(5),
            cancel_after: Duration::from_secs(5),
            wait: Duration::ZERO,
            poll_interval: Duration::from_millis(10),
            max_image_bytes: 1000,
            backoff: Duration::from_millis(1),
            limits: CallLimits::default(),
            webhooks: Some(WebhookSettings {
                url: "https://lofi.example/webhooks/replicate".parse().unwrap(),
                secret: Some(SECRET.into()),
                fallback_poll: Duration::from_secs(10),
            }),
        })
        .unwrap()
    }

    fn signed(id: &str, body: &str) -> HeaderMap {
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signature = standardwebhooks::Webhook::new(SECRET)
            .unwrap()
            .sign(id, timestamp, body.as_bytes())
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        headers
    }

    fn event(prediction: &str, status: &str, logs: &str) -> String {
        json!({
            "id": prediction, "status": status, "logs": logs,
            "output": if status == "succeeded" { json!(["https://replicate.delivery/x.png"]) } else { json!(null) },
            "started_at": "2026-12-07T10:00:00Z",
            "metrics": if status == "succeeded" { json!({"predict_time": 9.5}) } else { json!({}) },
        })
        .to_string()
    }

    #[tokio::test]
    async fn events_fill_the_runs_record_once_and_never_after_its_end() {
        let generator = generator();
        let api = &generator.api;
        let inbox = api.inbox.as_ref().unwrap();
        let hooks = generator.webhooks().unwrap();
        let mailbox = inbox.open(Duration::from_secs(60)).await.unwrap();
        let run = mailbox.run.clone();
        assert_eq!(
            inbox.address(&run),
            format!("https://lofi.example/webhooks/replicate?run={run}")
        );
        assert!(inbox.latest(&run).await.is_none(), "nothing yet");
        // An event before the create's answer is taken (the prediction is not noted yet).
        let body = event("p1", "processing", " 40%|####");
        let (outcome, over) = hooks
            .receive(Some(&run), &signed("msg_1", &body), body.as_bytes())
            .await
            .unwrap();
        assert_eq!((outcome, over), (WebhookOutcome::Applied, None));
        assert_eq!(
            inbox.latest(&run).await.unwrap().phase(),
            lofianime_wire::progress::Phase::Generating { percent: Some(40) }
        );
        inbox.started(&run, "p1").await;
        // Another prediction's event at this run's address is not taken.
        let body = event("p2", "failed", "");
        let (outcome, _) = hooks
            .receive(Some(&run), &signed("msg_2", &body), body.as_bytes())
            .await
            .unwrap();
        assert_eq!(outcome, WebhookOutcome::Ignored);
        // The end, with the provider's record.
        let body = event("p1", "succeeded", "100%|");
        let (outcome, over) = hooks
            .receive(Some(&run), &signed("msg_3", &body), body.as_bytes())
            .await
            .unwrap();
        assert_eq!(outcome, WebhookOutcome::Applied);
        let over = over.unwrap();
        assert_eq!((over.processed, over.billed_secs), (true, 9.5));
        // A late progress event cannot undo it.
        let body = event("p1", "processing", " 50%|#####");
        let (outcome, _) = hooks
            .receive(Some(&run), &signed("msg_4", &body), body.as_bytes())
            .await
            .unwrap();
        assert_eq!(outcome, WebhookOutcome::Ignored);
        let latest = inbox.latest(&run).await.unwrap();
        assert_eq!(latest.status, "succeeded");
        assert!(latest.is_done());
        // Replays are refused; so is an event with the address of no run.
        let body = event("p1", "succeeded", "");
        let headers = signed("msg_5", &body);
        let (outcome, _) = hooks
            .receive(Some("not-a-run"), &headers, body.as_bytes())
            .await
            .unwrap();
        assert_eq!(outcome, WebhookOutcome::Ignored);
        assert!(matches!(
            hooks.receive(Some(&run), &headers, body.as_bytes()).await,
            Err(WebhookRefusal::Unverified(_))
        ));
        // Unsigned: refused before anything else.
        assert!(matches!(
            hooks
                .receive(Some(&run), &HeaderMap::new(), body.as_bytes())
                .await,
            Err(WebhookRefusal::Unverified(_))
        ));
        // Signed but not a prediction: refused, unread.
        let headers = signed("msg_6", "[1, 2]");
        assert!(matches!(
            hooks.receive(Some(&run), &headers, b"[1, 2]").await,
            Err(WebhookRefusal::Unreadable(_))
        ));
    }
}
