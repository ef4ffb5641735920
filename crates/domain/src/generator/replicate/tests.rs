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
