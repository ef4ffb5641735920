//! The limiter's behaviour, run against all three stores: memory, a real
//! `redis-server` over RESP, and the same Redis through the Upstash REST bridge.
//! The Redis-backed runs also check what lands in Redis (keys, values, expiries)
//! and how many commands a decision costs.

use crate::support::redis_server::RedisServer;
use crate::support::upstash_bridge::Bridge;
use lofianime_domain::{Algorithm, LimiterStore, RateLimiter, Reason, DEFAULT_PREFIX};
use lofianime_domain::{Clock, ManualClock};
use lofianime_domain::{MemoryStore, RedisStore, StoreError, UpstashRestStore, UpstashSettings};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;

const DAY_MS: u64 = 86_400_000;
/// 2025-11-27T13:00:00Z: inside day 20 419 since the epoch.
const NOON_ISH: u64 = 1_764_248_400_000;
const TOKEN: &str = "test-token-for-the-bridge";
const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Memory,
    Redis,
    Upstash,
}

struct Stores {
    redis: RedisServer,
    bridge: Bridge,
}

impl Stores {
    async fn start() -> Self {
        let redis = RedisServer::start();
        let bridge = Bridge::start(&redis.url(), TOKEN).await;
        Self { redis, bridge }
    }

    async fn open(&self, kind: Kind, clock: Arc<dyn Clock>) -> Arc<dyn LimiterStore> {
        match kind {
            Kind::Memory => Arc::new(MemoryStore::new(clock)),
            Kind::Redis => Arc::new(
                RedisStore::connect(&self.redis.url(), TIMEOUT)
                    .await
                    .unwrap(),
            ),
            Kind::Upstash => Arc::new(
                UpstashRestStore::connect(UpstashSettings {
                    url: self.bridge.url.clone(),
                    token: SecretString::from(TOKEN),
                    timeout: TIMEOUT,
                    key_locking: false,
                })
                .await
                .unwrap(),
            ),
        }
    }

    async fn limiter(
        &self,
        kind: Kind,
        algorithm: Algorithm,
        clock: &Arc<ManualClock>,
    ) -> RateLimiter {
        let store = self.open(kind, clock.clone()).await;
        RateLimiter::new(store, algorithm, DEFAULT_PREFIX, clock.clone())
    }
}

const KINDS: [Kind; 3] = [Kind::Memory, Kind::Redis, Kind::Upstash];

#[tokio::test]
async fn fixed_window_admits_the_limit_on_upstash_keys() {
    let stores = Stores::start().await;
    for kind in KINDS {
        let clock = Arc::new(ManualClock::at(NOON_ISH));
        let limiter = stores
            .limiter(
                kind,
                Algorithm::FixedWindow {
                    limit: 5,
                    window_ms: DAY_MS,
                },
                &clock,
            )
            .await;
        let visitor = format!("fixed-{kind:?}");
        for expected in (0..5).rev() {
            let d = limiter.limit(&visitor, 1).await.unwrap();
            assert!(d.success, "{kind:?}");
            assert_eq!(
                (d.limit, d.remaining, d.reset_ms),
                (5, expected, 20_420 * DAY_MS),
                "{kind:?}"
            );
        }
        let denied = limiter.limit(&visitor, 1).await.unwrap();
        assert!(!denied.success, "{kind:?}");
        if kind != Kind::Memory {
            let key = format!("@upstash/ratelimit:{visitor}:20419");
            assert_eq!(
                stores.redis.get(&key).as_deref(),
                Some("6"),
                "{kind:?}: even the rejected call counts"
            );
            let ttl = stores.redis.pttl(&key);
            assert!(
                ttl > DAY_MS as i64 - 60_000 && ttl <= DAY_MS as i64,
                "{kind:?}: PTTL {ttl}"
            );
        }
    }
}

#[tokio::test]
async fn fixed_window_starts_fresh_in_the_next_bucket() {
    let stores = Stores::start().await;
    for kind in KINDS {
        let clock = Arc::new(ManualClock::at(19_999));
        let limiter = stores
            .limiter(
                kind,
                Algorithm::FixedWindow {
                    limit: 2,
                    window_ms: 10_000,
                },
                &clock,
            )
            .await
            .without_cache();
        let visitor = format!("edge-{kind:?}");
        assert_eq!(limiter.limit(&visitor, 1).await.unwrap().remaining, 1);
        assert_eq!(limiter.limit(&visitor, 1).await.unwrap().remaining, 0);
        assert!(
            !limiter.limit(&visitor, 1).await.unwrap().success,
            "{kind:?}"
        );
        clock.set(20_000);
        let d = limiter.limit(&visitor, 1).await.unwrap();
        assert_eq!(
            (d.success, d.remaining, d.reset_ms),
            (true, 1, 30_000),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn sliding_window_weighs_the_previous_window() {
    let stores = Stores::start().await;
    for kind in KINDS {
        let clock = Arc::new(ManualClock::at(10_000));
        let limiter = stores
            .limiter(
                kind,
                Algorithm::SlidingWindow {
                    limit: 4,
                    window_ms: 1000,
                },
                &clock,
            )
            .await
            .without_cache();
        let visitor = format!("sliding-{kind:?}");
        for expected in (0..4).rev() {
            assert_eq!(
                limiter.limit(&visitor, 1).await.unwrap().remaining,
                expected,
                "{kind:?}"
            );
        }
        // A quarter into the next window, floor(0.75 * 4) = 3 of the previous still count.
        clock.set(11_250);
        let d = limiter.limit(&visitor, 1).await.unwrap();
        assert_eq!(
            (d.success, d.remaining, d.reset_ms),
            (true, 0, 12_000),
            "{kind:?}"
        );
        assert!(
            !limiter.limit(&visitor, 1).await.unwrap().success,
            "{kind:?}"
        );
        // Three quarters in, floor(0.25 * 4) = 1 counts, plus 1 current: two left.
        clock.set(11_750);
        assert_eq!(
            limiter.remaining(&visitor).await.unwrap().remaining,
            2,
            "{kind:?}"
        );
        if kind != Kind::Memory {
            let key = format!("@upstash/ratelimit:{visitor}:11");
            let ttl = stores.redis.pttl(&key);
            assert!(
                ttl > 2000 && ttl <= 3000,
                "{kind:?}: current window kept 2 windows + 1 s, PTTL {ttl}"
            );
        }
    }
}

#[tokio::test]
async fn token_bucket_spends_refills_and_stores_the_upstash_hash() {
    let stores = Stores::start().await;
    for kind in KINDS {
        let clock = Arc::new(ManualClock::at(1_000_000));
        let limiter = stores
            .limiter(
                kind,
                Algorithm::TokenBucket {
                    refill_rate: 2,
                    interval_ms: 60_000,
                    max_tokens: 3,
                },
                &clock,
            )
            .await
            .without_cache();
        let visitor = format!("bucket-{kind:?}");
        for expected in (0..3).rev() {
            let d = limiter.limit(&visitor, 1).await.unwrap();
            assert_eq!((d.remaining, d.reset_ms), (expected, 1_060_000), "{kind:?}");
        }
        assert!(
            !limiter.limit(&visitor, 1).await.unwrap().success,
            "{kind:?}"
        );
        if kind != Kind::Memory {
            let key = format!("@upstash/ratelimit:{visitor}");
            assert_eq!(
                stores.redis.hget(&key, "refilledAt").as_deref(),
                Some("1000000")
            );
            assert_eq!(stores.redis.hget(&key, "tokens").as_deref(), Some("0"));
            // Full again after ceil(3 / 2) = 2 intervals.
            let ttl = stores.redis.pttl(&key);
            assert!(ttl > 110_000 && ttl <= 120_000, "{kind:?}: PTTL {ttl}");
        }
        // One and a half intervals later: one refill of 2.
        clock.set(1_090_000);
        let d = limiter.limit(&visitor, 1).await.unwrap();
        assert_eq!(
            (d.success, d.remaining, d.reset_ms),
            (true, 1, 1_120_000),
            "{kind:?}"
        );
    }
}

#[tokio::test]
async fn refunds_go_back_where_they_were_taken_on_every_store_and_algorithm() {
    let stores = Stores::start().await;
    let algorithms = [
        Algorithm::FixedWindow {
            limit: 3,
            window_ms: DAY_MS,
        },
        Algorithm::SlidingWindow {
            limit: 3,
            window_ms: DAY_MS,
        },
        Algorithm::TokenBucket {
            refill_rate: 1,
            interval_ms: DAY_MS,
            max_tokens: 3,
        },
    ];
    for kind in KINDS {
        for algorithm in algorithms {
            let clock = Arc::new(ManualClock::at(NOON_ISH));
            let limiter = stores.limiter(kind, algorithm, &clock).await;
            let visitor = format!("refund-{kind:?}-{algorithm}");
            let mut taken = Vec::new();
            for _ in 0..3 {
                taken.push(limiter.limit(&visitor, 1).await.unwrap());
            }
            // Refused calls (the first reaches the store) do not eat refunds.
            for _ in 0..2 {
                assert!(!limiter.limit(&visitor, 1).await.unwrap().success);
            }
            for (ticket, expected) in taken.iter().rev().zip([1, 2, 3]) {
                let refunded = limiter.refund(&visitor, ticket).await.unwrap();
                assert_eq!(refunded.remaining, expected, "{kind:?} {algorithm}");
            }
            // Never above the limit or the bucket's size.
            let again = limiter.refund(&visitor, &taken[0]).await.unwrap();
            assert_eq!(again.remaining, 3, "{kind:?} {algorithm}");
            assert_eq!(
                limiter.remaining(&visitor).await.unwrap().remaining,
                3,
                "{kind:?} {algorithm}"
            );
        }
    }
}

#[tokio::test]
async fn remaining_never_consumes_and_reset_forgets() {
    let stores = Stores::start().await;
    let algorithms = [
        Algorithm::FixedWindow {
            limit: 2,
            window_ms: DAY_MS,
        },
        Algorithm::SlidingWindow {
            limit: 2,
            window_ms: DAY_MS,
        },
        Algorithm::TokenBucket {
            refill_rate: 1,
            interval_ms: DAY_MS,
            max_tokens: 2,
        },
    ];
    for kind in KINDS {
        for algorithm in algorithms {
            let clock = Arc::new(ManualClock::at(NOON_ISH));
            let limiter = stores.limiter(kind, algorithm, &clock).await;
            let visitor = format!("remaining-{kind:?}-{algorithm}");
            for _ in 0..5 {
                assert_eq!(
                    limiter.remaining(&visitor).await.unwrap().remaining,
                    2,
                    "{kind:?} {algorithm}"
                );
            }
            limiter.limit(&visitor, 1).await.unwrap();
            limiter.limit(&visitor, 1).await.unwrap();
            let denied = limiter.limit(&visitor, 1).await.unwrap();
            assert!(!denied.success, "{kind:?} {algorithm}");
            assert_eq!(
                limiter.remaining(&visitor).await.unwrap().remaining,
                0,
                "{kind:?} {algorithm}"
            );
            limiter.reset(&visitor).await.unwrap();
            assert_eq!(
                limiter.remaining(&visitor).await.unwrap().remaining,
                2,
                "{kind:?} {algorithm}"
            );
            assert!(
                limiter.limit(&visitor, 1).await.unwrap().success,
                "{kind:?} {algorithm}: the block is gone too"
            );
        }
    }
}

#[tokio::test]
async fn five_hundred_concurrent_decisions_on_two_instances_admit_exactly_five() {
    let stores = Stores::start().await;
    for kind in KINDS {
        let clock = Arc::new(ManualClock::at(NOON_ISH));
        let algorithm = Algorithm::FixedWindow {
            limit: 5,
            window_ms: DAY_MS,
        };
        // Two limiters with their own connections, as two app servers would have.
        // (The memory store is per process: its two "instances" share it.)
        let first = stores.open(kind, clock.clone()).await;
        let second = if kind == Kind::Memory {
            first.clone()
        } else {
            stores.open(kind, clock.clone()).await
        };
        let instances = [
            Arc::new(RateLimiter::new(
                first,
                algorithm,
                DEFAULT_PREFIX,
                clock.clone(),
            )),
            Arc::new(RateLimiter::new(
                second,
                algorithm,
                DEFAULT_PREFIX,
                clock.clone(),
            )),
        ];
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let limiter = instances[i % 2].clone();
                let visitor = format!("crowd-{kind:?}");
                tokio::spawn(async move { limiter.limit(&visitor, 1).await.unwrap().success })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += usize::from(task.await.unwrap());
        }
        assert_eq!(admitted, 5, "{kind:?}");
    }
}

#[tokio::test]
async fn an_allowed_decision_is_one_command_and_a_cached_block_is_none() {
    let stores = Stores::start().await;
    for kind in [Kind::Redis, Kind::Upstash] {
        let clock = Arc::new(ManualClock::at(NOON_ISH));
        let limiter = stores
            .limiter(
                kind,
                Algorithm::FixedWindow {
                    limit: 10,
                    window_ms: DAY_MS,
                },
                &clock,
            )
            .await;
        let visitor = format!("count-{kind:?}");
        // The first call teaches Redis the script (EVALSHA -> NOSCRIPT -> EVAL).
        limiter.limit(&visitor, 1).await.unwrap();
        let evalsha = stores.redis.command_calls("evalsha");
        let eval = stores.redis.command_calls("eval");
        let requests = stores.bridge.requests();
        for _ in 0..9 {
            assert!(limiter.limit(&visitor, 1).await.unwrap().success);
        }
        // One EVALSHA per decision (INFO commandstats also counts the INCRBY run
        // inside the script, which is part of the same atomic call).
        assert_eq!(
            stores.redis.command_calls("evalsha") - evalsha,
            9,
            "{kind:?}"
        );
        assert_eq!(stores.redis.command_calls("eval"), eval, "{kind:?}");
        if kind == Kind::Upstash {
            assert_eq!(
                stores.bridge.requests() - requests,
                9,
                "one HTTP request per decision"
            );
        }
        // The 11th is refused by Redis; after that the cache answers.
        assert!(!limiter.limit(&visitor, 1).await.unwrap().success);
        let before = stores.redis.total_calls();
        for _ in 0..20 {
            let d = limiter.limit(&visitor, 1).await.unwrap();
            assert_eq!(d.reason, Reason::CacheBlock);
        }
        assert_eq!(
            stores.redis.total_calls(),
            before,
            "{kind:?}: cache-blocked decisions cost nothing"
        );
    }
}

#[tokio::test]
async fn a_flushed_script_cache_falls_back_to_eval() {
    let stores = Stores::start().await;
    for kind in [Kind::Redis, Kind::Upstash] {
        let clock = Arc::new(ManualClock::at(NOON_ISH));
        let limiter = stores
            .limiter(
                kind,
                Algorithm::FixedWindow {
                    limit: 10,
                    window_ms: DAY_MS,
                },
                &clock,
            )
            .await;
        let visitor = format!("flush-{kind:?}");
        limiter.limit(&visitor, 1).await.unwrap();
        let mut connection = redis::Client::open(stores.redis.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut connection)
            .unwrap();
        let evals = stores.redis.command_calls("eval");
        assert_eq!(
            limiter.limit(&visitor, 1).await.unwrap().remaining,
            8,
            "{kind:?}"
        );
        assert_eq!(stores.redis.command_calls("eval"), evals + 1, "{kind:?}");
    }
}

#[tokio::test]
async fn plain_redis_refuses_the_upstash_key_locking_shebang() {
    let stores = Stores::start().await;
    let store = UpstashRestStore::connect(UpstashSettings {
        url: stores.bridge.url.clone(),
        token: SecretString::from(TOKEN),
        timeout: TIMEOUT,
        key_locking: true,
    })
    .await
    .unwrap();
    let clock = Arc::new(ManualClock::at(NOON_ISH));
    let limiter = RateLimiter::new(
        Arc::new(store),
        Algorithm::FixedWindow {
            limit: 1,
            window_ms: DAY_MS,
        },
        DEFAULT_PREFIX,
        clock,
    );
    match limiter.limit("v", 1).await {
        Err(StoreError::Command(message)) => assert!(message.contains("flag"), "{message}"),
        other => panic!("expected Redis to refuse the shebang, got {other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_upstash_token_is_a_clear_start_up_error() {
    let stores = Stores::start().await;
    let result = UpstashRestStore::connect(UpstashSettings {
        url: stores.bridge.url.clone(),
        token: SecretString::from("not-the-token"),
        timeout: TIMEOUT,
        key_locking: false,
    })
    .await;
    let Err(error) = result else {
        panic!("a wrong token must not connect")
    };
    assert!(matches!(error, StoreError::Unauthorized(_)));
    let message = error.to_string();
    assert!(message.contains("Upstash rejected the token"), "{message}");
    assert!(
        !message.contains("not-the-token"),
        "the token never appears: {message}"
    );
}

#[tokio::test]
async fn unreachable_stores_are_clear_start_up_errors() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let upstash = UpstashRestStore::connect(UpstashSettings {
        url: format!("http://127.0.0.1:{closed_port}"),
        token: SecretString::from(TOKEN),
        timeout: TIMEOUT,
        key_locking: false,
    })
    .await;
    let Err(error) = upstash else {
        panic!("nothing listens there")
    };
    assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    assert!(
        error.to_string().contains("UPSTASH_REDIS_REST_URL"),
        "{error}"
    );

    let redis = RedisStore::connect(
        &format!("redis://:secret-pw@127.0.0.1:{closed_port}"),
        TIMEOUT,
    )
    .await;
    let Err(error) = redis else {
        panic!("nothing listens there")
    };
    assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
    assert!(!error.to_string().contains("secret-pw"), "{error}");

    let not_a_url = RedisStore::connect("mysql://nope", TIMEOUT).await;
    let Err(error) = not_a_url else {
        panic!("not a Redis URL")
    };
    assert!(error.to_string().contains("REDIS_URL"), "{error}");
}

#[tokio::test]
async fn the_bridge_speaks_the_upstash_protocol() {
    let stores = Stores::start().await;
    let client = reqwest::Client::new();
    let post = |path: &str, token: Option<&str>, body: &str| {
        let mut request = client
            .post(format!("{}{path}", stores.bridge.url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        request.send()
    };
    let bearer = format!("Bearer {TOKEN}");

    let ok = post("/", Some(&bearer), r#"["SET", "k", "v"]"#)
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), r#"{"result":"OK"}"#);
    let got = post("/", Some(&bearer), r#"["GET", "k"]"#).await.unwrap();
    assert_eq!(got.text().await.unwrap(), r#"{"result":"v"}"#);
    let encoded = client
        .post(&stores.bridge.url)
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .header("upstash-encoding", "base64")
        .body(r#"["GET", "k"]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(encoded.text().await.unwrap(), r#"{"result":"dg=="}"#);

    let pipeline = post(
        "/pipeline",
        Some(&bearer),
        r#"[["INCR", "n"], ["INCRBY", "n", 5], ["HGET"]]"#,
    )
    .await
    .unwrap();
    let answers: serde_json::Value = pipeline.json().await.unwrap();
    assert_eq!(answers[0]["result"], 1);
    assert_eq!(answers[1]["result"], 6);
    assert!(answers[2]["error"]
        .as_str()
        .unwrap()
        .contains("wrong number of arguments"));

    let noscript = post(
        "/",
        Some(&bearer),
        r#"["EVALSHA", "0000000000000000000000000000000000000000", 0]"#,
    )
    .await
    .unwrap();
    assert_eq!(noscript.status(), 400);
    assert!(noscript.text().await.unwrap().contains("NOSCRIPT"));

    assert_eq!(post("/", None, r#"["PING"]"#).await.unwrap().status(), 401);
    assert_eq!(
        post("/", Some("Bearer wrong"), r#"["PING"]"#)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post("/", Some("Token abc"), r#"["PING"]"#)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("/", Some(&bearer), "not json").await.unwrap().status(),
        400
    );
}

#[tokio::test]
async fn the_store_is_chosen_from_the_environment() {
    use lofianime::server::compose::remote_store;
    use lofianime::server::settings::{Secrets, Settings};
    use lofianime_domain::RemoteStore;
    let stores = Stores::start().await;
    let settings = Settings::default();
    let secret = |s: &str| Some(SecretString::from(s.to_owned()));
    let describe = |store: &Arc<dyn RemoteStore>| LimiterStore::describe(store.as_ref());

    let memory = remote_store(&settings, &Secrets::default()).await.unwrap();
    assert!(memory.is_none(), "no store configured: memory");

    let redis = Secrets {
        redis_url: secret(&stores.redis.url()),
        ..Default::default()
    };
    let store = remote_store(&settings, &redis).await.unwrap().unwrap();
    assert!(
        describe(&store).starts_with("Redis at redis://127.0.0.1:"),
        "{}",
        describe(&store)
    );

    let upstash = Secrets {
        upstash_redis_rest_url: secret(&stores.bridge.url),
        upstash_redis_rest_token: secret(TOKEN),
        ..Default::default()
    };
    let store = remote_store(&settings, &upstash).await.unwrap().unwrap();
    assert!(
        describe(&store).starts_with("Upstash REST at http://127.0.0.1:"),
        "{}",
        describe(&store)
    );
    assert!(
        !describe(&store).contains("key-locking"),
        "no shebang for a local bridge"
    );

    let half = Secrets {
        upstash_redis_rest_url: secret(&stores.bridge.url),
        ..Default::default()
    };
    let error = remote_store(&settings, &half)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("UPSTASH_REDIS_REST_TOKEN is not"), "{error}");

    let both = Secrets {
        redis_url: secret(&stores.redis.url()),
        upstash_redis_rest_url: secret(&stores.bridge.url),
        upstash_redis_rest_token: secret(TOKEN),
        ..Default::default()
    };
    let error = remote_store(&settings, &both)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("set one of them"), "{error}");

    let wrong_token = Secrets {
        upstash_redis_rest_url: secret(&stores.bridge.url),
        upstash_redis_rest_token: secret("wrong-token-value"),
        ..Default::default()
    };
    let error = remote_store(&settings, &wrong_token)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("UPSTASH_REDIS_REST_URL") && error.contains("Upstash rejected the token"),
        "{error}"
    );
    assert!(!error.contains("wrong-token-value"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_generations_on_two_app_instances_admit_exactly_five() {
    use crate::support::app::spawn_app_on;
    use axum::http::StatusCode;
    use lofianime_domain::testing::FakeModel;
    use lofianime_domain::SystemClock;

    use lofianime::server::settings::Settings;

    let stores = Stores::start().await;
    for kind in [Kind::Redis, Kind::Upstash] {
        let mut settings = Settings::default();
        settings.ratelimit.prefix = format!("apps-{kind:?}");
        let generator = Arc::new(FakeModel::default());
        let mut apps = Vec::new();
        for _ in 0..2 {
            let components = crate::support::app::local_components(generator.clone())
                .with_limiter_store(stores.open(kind, Arc::new(SystemClock)).await);
            apps.push(Arc::new(spawn_app_on(settings.clone(), components)));
        }
        let requests: Vec<_> = (0..500)
            .map(|i| {
                let app = apps[i % 2].clone();
                tokio::spawn(
                    async move { app.generate("the same visitor, many tabs").await.status() },
                )
            })
            .collect();
        let mut ok = 0;
        for request in requests {
            match request.await.unwrap() {
                StatusCode::OK => ok += 1,
                StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("{kind:?}: unexpected status {other}"),
            }
        }
        assert_eq!(ok, 5, "{kind:?}");
        assert_eq!(generator.calls(), 5, "{kind:?}: exactly five model calls");
    }
}
