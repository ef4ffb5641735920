//! A burst of generations against a running app: `clients` clients post to
//! `/api/ai` (JSON) or the page's `/api/generate` (its form, answered in
//! JSON as the page's script asks) one after another until `length` has
//! passed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a burst went: generations answered 2xx, and the rest.
pub struct Burst {
    pub done: u64,
    pub failed: u64,
}

/// A generation of `prompt` asked of `url`: the page's `/api/generate` (its
/// form, answered in JSON as the page's script asks) or `/api/ai` (JSON).
pub fn generation(client: &reqwest::Client, url: &str, prompt: &str) -> reqwest::RequestBuilder {
    if url.ends_with("/api/generate") {
        client
            .post(url)
            .header("accept", "application/json")
            .form(&[("prompt", prompt)])
    } else {
        client
            .post(url)
            .json(&serde_json::json!({ "prompt": prompt }))
    }
}

/// Sends a generation `request` and reads its JSON answer.
#[allow(dead_code)] // Not every bench that includes this module reads answers.
pub async fn answer_of<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.unwrap().json().await.unwrap()
}

pub async fn burst(url: String, clients: usize, length: Duration) -> Burst {
    let client = reqwest::Client::new();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + length;
    let mut tasks = Vec::new();
    for n in 0..clients {
        let (client, url, done, failed) =
            (client.clone(), url.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < until {
                i += 1;
                let request = generation(&client, &url, &format!("client {n} picture {i}"));
                match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Burst {
        done: done.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    }
}
