//! The front door's promises, each as a use case a visitor goes through.

use super::generation::EVERYONE;
use super::*;
use crate::clock::ManualClock;
use crate::gallery::SharedGallery;
use crate::generator::fake::{Behaviour, FakeModel, FAKE_PERCENT};
use crate::generator::ImageFormat;
use crate::ratelimit::DEFAULT_PREFIX;
use crate::storage::ObjectImageStore;
use crate::store::MemoryStore;
use lofianime_wire::progress::{JobState, Phase};

fn policy(limit: u64, budget: Option<u64>) -> Policy {
    let window = |limit| Algorithm::FixedWindow {
        limit,
        window_ms: 60_000,
    };
    Policy {
        algorithm: window(limit),
        prefix: DEFAULT_PREFIX.into(),
        ephemeral_cache: true,
        budget: budget.map(window),
        who_pays: WhoPays::EachVisitor,
        signed_out: SignedOut::SameQuota,
        on_store_failure: FailurePolicy::Deny,
        max_prompt_chars: 20,
        job_ttl_ms: 600_000,
        cancel_check: Duration::from_millis(10),
        return_grace: Duration::ZERO,
        max_refunds_per_window: Some(limit),
        spend: SpendPolicy::default(),
    }
}

fn studio_with(model: Arc<FakeModel>, policy: Policy) -> Arc<Studio> {
    let clock = Arc::new(ManualClock::at(1_000));
    let components = Components::local(model, ObjectImageStore::in_memory(), clock, DEFAULT_KEEP);
    Arc::new(Studio::new(policy, components))
}

use crate::gallery::DEFAULT_KEEP;

fn studio(model: Arc<FakeModel>, limit: u64) -> Arc<Studio> {
    studio_with(model, policy(limit, None))
}

fn v() -> Visitor {
    Visitor::new("v")
}

async fn left(studio: &Studio, visitor: &str) -> u64 {
    studio
        .quota(&Visitor::new(visitor))
        .await
        .unwrap()
        .remaining
}

async fn budget_left(studio: &Studio) -> u64 {
    let budget = studio.parts.budget.as_ref().unwrap();
    budget.remaining(EVERYONE).await.unwrap().remaining
}

#[tokio::test]
async fn a_bad_prompt_spends_nothing_and_calls_no_model() {
    let model = Arc::new(FakeModel::default());
    let studio = studio(model.clone(), 1);
    for bad in ["", "   ", "this prompt is far too long"] {
        assert!(matches!(
            studio.generate(&v(), bad, None).await,
            Err(StudioError::InvalidPrompt(_))
        ));
    }
    assert_eq!(model.calls(), 0);
    assert_eq!(left(&studio, "v").await, 1);
}

#[tokio::test]
async fn a_denied_request_calls_no_model() {
    let model = Arc::new(FakeModel::default());
    let studio = studio(model.clone(), 2);
    studio.generate(&v(), "one", None).await.unwrap();
    studio.generate(&v(), "two", None).await.unwrap();
    let denied = studio.generate(&v(), "three", None).await.unwrap_err();
    assert!(
        matches!(denied, StudioError::Denied { decision: d, scope: LimitScope::Visitor } if d.remaining == 0 && !d.success)
    );
    assert_eq!(model.calls(), 2);
}

#[tokio::test]
async fn refunds_the_credit_when_the_model_fails() {
    let model = Arc::new(FakeModel::new(Behaviour::Fail));
    let studio = studio(model.clone(), 3);
    let failure = studio.generate(&v(), "sunset", None).await.unwrap_err();
    assert!(
        matches!(failure, StudioError::Model { decision, .. } if decision.unwrap().remaining == 3)
    );
    assert_eq!(left(&studio, "v").await, 3);
    assert_eq!(model.calls(), 1);
}

#[tokio::test]
async fn the_shared_budget_refuses_and_the_visitor_keeps_their_credit() {
    let model = Arc::new(FakeModel::default());
    let studio = studio_with(model.clone(), policy(5, Some(1)));
    studio
        .generate(&Visitor::new("a"), "one", None)
        .await
        .unwrap();
    let refused = studio
        .generate(&Visitor::new("b"), "two", None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StudioError::Denied { scope: LimitScope::Everyone, decision } if decision.limit == 1),
        "{refused:?}"
    );
    assert_eq!(left(&studio, "b").await, 5);
    assert_eq!(model.calls(), 1);
}

#[tokio::test]
async fn a_visitor_refusal_spends_nothing_of_the_shared_budget() {
    let studio = studio_with(Arc::new(FakeModel::default()), policy(1, Some(10)));
    studio.generate(&v(), "one", None).await.unwrap();
    assert!(studio.generate(&v(), "two", None).await.is_err());
    assert_eq!(budget_left(&studio).await, 9);
}

#[tokio::test]
async fn a_failure_refunds_the_shared_budget_too() {
    let model = Arc::new(FakeModel::new(Behaviour::Fail));
    let studio = studio_with(model.clone(), policy(5, Some(1)));
    for _ in 0..3 {
        assert!(matches!(
            studio.generate(&v(), "sunset", None).await,
            Err(StudioError::Model { .. })
        ));
    }
    assert_eq!(model.calls(), 3, "each failure gave the budget back");
    assert_eq!(budget_left(&studio).await, 1);
}

#[tokio::test]
async fn signed_out_visitors_get_their_own_quota_and_accounts_the_full_one() {
    let mut optional = policy(3, Some(10));
    optional.signed_out = SignedOut::OwnQuota(Algorithm::FixedWindow {
        limit: 1,
        window_ms: 60_000,
    });
    let model = Arc::new(FakeModel::default());
    let studio = studio_with(model.clone(), optional);
    let address = Visitor::new("203.0.113.7");
    let account = Visitor::account("ana@example.com").unwrap();
    assert_eq!(studio.quota(&address).await.unwrap().limit, 1);
    assert_eq!(studio.quota(&account).await.unwrap().limit, 3);
    assert_eq!(studio.signed_out_limit(), Some(1));
    studio.generate(&address, "one", None).await.unwrap();
    let refused = studio.generate(&address, "two", None).await.unwrap_err();
    assert!(
        matches!(refused, StudioError::Denied { scope: LimitScope::Visitor, decision } if decision.limit == 1),
        "{refused:?}"
    );
    for prompt in ["a", "b", "c"] {
        studio.generate(&account, prompt, None).await.unwrap();
    }
    assert!(studio.generate(&account, "d", None).await.is_err());
    assert_eq!(model.calls(), 4, "1 signed out + 3 signed in");
    assert_eq!(budget_left(&studio).await, 6, "the budget counts everyone");
}

#[tokio::test]
async fn must_sign_in_refuses_signed_out_visitors_before_anything_is_spent() {
    let mut required = policy(3, Some(10));
    required.signed_out = SignedOut::MustSignIn;
    let model = Arc::new(FakeModel::default());
    let studio = studio_with(model.clone(), required);
    let address = Visitor::new("203.0.113.7");
    assert!(matches!(
        studio.generate(&address, "one", None).await,
        Err(StudioError::SignInRequired)
    ));
    assert!(matches!(
        studio.quota(&address).await,
        Err(StudioError::SignInRequired)
    ));
    assert_eq!(model.calls(), 0);
    assert_eq!(budget_left(&studio).await, 10);
    let account = Visitor::account("ana@example.com").unwrap();
    studio.generate(&account, "one", None).await.unwrap();
    assert_eq!(studio.quota(&account).await.unwrap().remaining, 2);
}

#[tokio::test]
async fn who_pays_everyone_spends_one_shared_quota() {
    let mut shared = policy(2, None);
    shared.who_pays = WhoPays::Everyone;
    let studio = studio_with(Arc::new(FakeModel::default()), shared);
    studio
        .generate(&Visitor::new("a"), "one", None)
        .await
        .unwrap();
    studio
        .generate(&Visitor::new("b"), "two", None)
        .await
        .unwrap();
    assert!(matches!(
        studio.generate(&Visitor::new("c"), "three", None).await,
        Err(StudioError::Denied { .. })
    ));
    assert_eq!(left(&studio, "z").await, 0);
}

#[tokio::test]
async fn a_success_stores_the_image_under_a_new_key() {
    let studio = studio(Arc::new(FakeModel::default()), 5);
    let generated = studio.generate(&v(), "  a cat  ", None).await.unwrap();
    assert_eq!(generated.prompt.as_str(), "a cat");
    assert_eq!(generated.decision.unwrap().remaining, 4);
    let image = studio.open_image(&generated.image).await.unwrap().unwrap();
    let chunks: Vec<bytes::Bytes> = futures_util::TryStreamExt::try_collect(image.chunks)
        .await
        .unwrap();
    let bytes = chunks.concat();
    assert_eq!(bytes.len() as u64, image.size);
    assert!(bytes.starts_with(b"\x89PNG"));
    assert_eq!(generated.image.format(), ImageFormat::Png);
}

async fn wait_for_state(studio: &Studio, job: &JobId, want: JobState) {
    for _ in 0..500 {
        let seen = studio.progress(&v(), job).await.unwrap().map(|p| p.state);
        if seen == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the job never reached {want:?}");
}

type Running = tokio::task::JoinHandle<Result<Generated, StudioError>>;

/// A generation with a job id on a model of `behaviour`, started in the
/// background (limit 2).
fn start(studio: &Arc<Studio>, job: &JobId) -> Running {
    let (studio, job) = (studio.clone(), job.clone());
    tokio::spawn(async move { studio.generate(&v(), "slow", Some(&job)).await })
}

/// A generation under way on a model of `behaviour` (limit 2), once it
/// reached `phase`.
async fn under_way(
    id: u8,
    behaviour: Behaviour,
    phase: Phase,
) -> (Arc<FakeModel>, Arc<Studio>, JobId, Running) {
    let model = Arc::new(FakeModel::new(behaviour));
    let studio = studio_with(model.clone(), policy(2, Some(10)));
    let job = JobId::from_bytes([id; 16]);
    let running = start(&studio, &job);
    wait_for_state(&studio, &job, JobState::Running(phase)).await;
    (model, studio, job, running)
}

const PROCESSING: Phase = Phase::Generating {
    percent: Some(FAKE_PERCENT),
};

/// A generation already generating on a model that runs until dropped.
async fn slow_generation_under_way(id: u8) -> (Arc<FakeModel>, Arc<Studio>, JobId, Running) {
    under_way(id, Behaviour::RunUntilDropped, PROCESSING).await
}

#[tokio::test]
async fn a_cancel_after_the_model_started_stops_it_and_counts() {
    let (model, studio, job, running) = slow_generation_under_way(7).await;
    assert_eq!(
        left(&studio, "v").await,
        1,
        "the credit is spent while it runs"
    );
    assert_eq!(
        studio.cancel(&v(), &job).await.unwrap(),
        CancelOutcome::Requested
    );
    let outcome = running.await.unwrap();
    assert!(
        matches!(outcome, Err(StudioError::Canceled { decision: Some(d), counted: true, .. }) if d.remaining == 1),
        "{outcome:?}"
    );
    assert!(model.stopped(), "the model run was dropped");
    assert_eq!(
        left(&studio, "v").await,
        1,
        "the owner was billed: it counts"
    );
    assert_eq!(budget_left(&studio).await, 9, "and the budget keeps it");
    wait_for_state(&studio, &job, JobState::Canceled).await;
}

#[tokio::test]
async fn a_cancel_before_the_model_started_is_not_counted() {
    let (model, studio, job, running) =
        under_way(17, Behaviour::StartUntilDropped, Phase::Starting).await;
    studio.cancel(&v(), &job).await.unwrap();
    let outcome = running.await.unwrap();
    assert!(
        matches!(outcome, Err(StudioError::Canceled { decision: Some(d), counted: false, .. }) if d.remaining == 2),
        "{outcome:?}"
    );
    assert!(model.stopped());
    assert_eq!(left(&studio, "v").await, 2);
    // A booting model may already bill: the budget, the owner's ceiling, keeps it.
    assert_eq!(budget_left(&studio).await, 9);
}

/// Waits until `visitor` has `want` left (refunds from a drop are spawned).
async fn wait_for_quota(studio: &Studio, want: u64) {
    for _ in 0..200 {
        if left(studio, "v").await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the quota never came back to {want}");
}

#[tokio::test]
async fn leaving_after_the_model_started_counts_and_is_recorded_as_cancelled() {
    let (model, studio, job, running) = slow_generation_under_way(6).await;
    // The visitor closed the page: the request's future is dropped.
    running.abort();
    let _ = running.await;
    wait_for_state(&studio, &job, JobState::Canceled).await;
    assert!(model.stopped());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(left(&studio, "v").await, 1);
    assert_eq!(budget_left(&studio).await, 9);
}

#[tokio::test]
async fn leaving_before_the_model_started_gives_the_visitor_their_credit_back() {
    let (_, studio, job, running) =
        under_way(16, Behaviour::StartUntilDropped, Phase::Starting).await;
    running.abort();
    let _ = running.await;
    wait_for_state(&studio, &job, JobState::Canceled).await;
    wait_for_quota(&studio, 2).await;
    assert_eq!(budget_left(&studio).await, 9);
}

/// Repeats an attack and returns how many model runs reached processing.
async fn billed_runs_under(behaviour: Behaviour, attack: &str) -> usize {
    let model = Arc::new(FakeModel::new(behaviour));
    let studio = studio_with(model.clone(), policy(3, Some(100)));
    for round in 0..10u8 {
        let job = JobId::from_bytes([100 + round; 16]);
        let running = start(&studio, &job);
        if behaviour == Behaviour::RunUntilDropped {
            for _ in 0..200 {
                let state = studio.progress(&v(), &job).await.unwrap().map(|p| p.state);
                if state == Some(JobState::Running(PROCESSING)) || running.is_finished() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            match attack {
                "cancel" => {
                    studio.cancel(&v(), &job).await.unwrap();
                }
                _ => running.abort(),
            }
        }
        let _ = running.await;
    }
    model.calls()
}

#[tokio::test]
async fn cancel_leave_and_unsafe_loops_bill_no_more_than_the_limit() {
    for (behaviour, attack) in [
        (Behaviour::RunUntilDropped, "cancel"),
        (Behaviour::RunUntilDropped, "leave"),
        (Behaviour::Unsafe, "unsafe prompts"),
    ] {
        let billed = billed_runs_under(behaviour, attack).await;
        assert_eq!(billed, 3, "{attack}: billed runs = the visitor's limit");
    }
}

#[tokio::test]
async fn billed_failures_are_refunded_to_the_visitor_within_the_allowance_only() {
    let model = Arc::new(FakeModel::new(Behaviour::FailWhileProcessing));
    let mut limits = policy(2, Some(100));
    limits.max_refunds_per_window = Some(1);
    let studio = studio_with(model.clone(), limits);
    for _ in 0..10 {
        let _ = studio.generate(&v(), "sunset", None).await;
    }
    // Two credits, plus one failure given back.
    assert_eq!(model.calls(), 3);
    assert_eq!(
        budget_left(&studio).await,
        97,
        "every billed run stays in the budget"
    );
}

#[tokio::test]
async fn the_budget_is_never_exceeded_by_billed_failures() {
    let model = Arc::new(FakeModel::new(Behaviour::FailWhileProcessing));
    let studio = studio_with(model.clone(), policy(100, Some(4)));
    for n in 0..10 {
        let _ = studio
            .generate(&Visitor::new(format!("v{n}")), "sunset", None)
            .await;
    }
    assert_eq!(model.calls(), 4);
}

#[tokio::test]
async fn a_panic_inside_the_model_refunds_and_ends_the_record() {
    let model = Arc::new(FakeModel::new(Behaviour::Panic));
    let studio = studio_with(model.clone(), policy(2, Some(5)));
    let job = JobId::from_bytes([9; 16]);
    let outcome = start(&studio, &job).await;
    assert!(outcome.unwrap_err().is_panic());
    wait_for_quota(&studio, 2).await;
    for _ in 0..200 {
        if budget_left(&studio).await == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(budget_left(&studio).await, 5, "the budget came back too");
    wait_for_state(&studio, &job, JobState::Canceled).await;
    assert_eq!(model.calls(), 1);
}

#[tokio::test]
async fn every_exit_without_an_image_leaves_the_counts_where_they_started() {
    for behaviour in [Behaviour::Fail, Behaviour::Panic] {
        let studio = studio_with(Arc::new(FakeModel::new(behaviour)), policy(3, Some(4)));
        let _ = tokio::spawn({
            let studio = studio.clone();
            async move { studio.generate(&v(), "sunset", None).await }
        })
        .await;
        wait_for_quota(&studio, 3).await;
        for _ in 0..200 {
            if budget_left(&studio).await == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(budget_left(&studio).await, 4, "{behaviour:?}");
    }
}

#[tokio::test]
async fn a_reused_generation_id_is_refused_before_anything_is_spent() {
    let model = Arc::new(FakeModel::default());
    let studio = studio(model.clone(), 5);
    let job = JobId::from_bytes([8; 16]);
    studio.generate(&v(), "a cat", Some(&job)).await.unwrap();
    wait_for_state(&studio, &job, JobState::Finished).await;
    assert!(matches!(
        studio.generate(&v(), "a cat", Some(&job)).await,
        Err(StudioError::JobIdTaken)
    ));
    assert_eq!(model.calls(), 1);
    assert_eq!(left(&studio, "v").await, 4);
}

#[tokio::test]
async fn a_finished_generation_joins_the_visitors_recent_images() {
    let studio = studio(Arc::new(FakeModel::default()), 5);
    let first = studio.generate(&v(), "first", None).await.unwrap();
    let second = studio.generate(&v(), "second", None).await.unwrap();
    let recent = studio.recent(&v()).await.unwrap();
    let names: Vec<_> = recent.iter().map(|k| k.image.clone()).collect();
    assert_eq!(names, [second.image, first.image]);
    assert_eq!(recent[0].prompt, "second");
    assert!(studio.recent(&Visitor::new("w")).await.unwrap().is_empty());
}

#[tokio::test]
async fn refused_requests_write_nothing_and_keep_memory_flat() {
    let clock = Arc::new(ManualClock::at(1_000));
    let memory = Arc::new(MemoryStore::new(clock.clone()));
    let model = Arc::new(FakeModel::default());
    let components = Components {
        limiter_store: memory.clone(),
        shared: memory.clone(),
        controls: memory.clone(),
        gallery: Arc::new(SharedGallery::new(memory.clone(), DEFAULT_KEEP)),
        generator: model.clone(),
        images: Arc::new(ObjectImageStore::in_memory()),
        // The first generation's row is written in the background: in a
        // keyspace of its own, so the count below is of refusals only.
        ledger: Arc::new(MemoryStore::new(clock.clone())),
        history: None,
        clock,
    };
    let studio = Studio::new(policy(1, Some(10)), components);
    studio.generate(&v(), "one", None).await.unwrap();
    let keys = memory.len();
    for n in 0..10_000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        let job = JobId::from_bytes(id);
        assert!(matches!(
            studio.generate(&v(), "again", Some(&job)).await,
            Err(StudioError::Denied { .. })
        ));
    }
    assert_eq!(memory.len(), keys, "no record was written for a refusal");
    assert_eq!(model.calls(), 1);
}

#[tokio::test]
async fn only_the_owner_sees_or_cancels_a_generation() {
    let (_, studio, job, running) = slow_generation_under_way(3).await;
    let other = Visitor::new("w");
    assert_eq!(studio.progress(&other, &job).await.unwrap(), None);
    assert_eq!(
        studio.cancel(&other, &job).await.unwrap(),
        CancelOutcome::Unknown
    );
    running.abort();
}

/// The studio, and another instance's view of the same store (its own caches).
fn two_instances(model: Arc<FakeModel>, policy: Policy) -> (Arc<Studio>, Arc<Studio>) {
    let clock = Arc::new(ManualClock::at(1_000));
    let memory = Arc::new(MemoryStore::new(clock.clone()));
    let components = || {
        Components::local(
            model.clone(),
            ObjectImageStore::in_memory(),
            clock.clone(),
            DEFAULT_KEEP,
        )
        .on_remote_store(memory.clone(), DEFAULT_KEEP)
    };
    (
        Arc::new(Studio::new(policy.clone(), components())),
        Arc::new(Studio::new(policy, components())),
    )
}

#[tokio::test]
async fn a_pause_refuses_every_generation_before_anything_is_spent() {
    let model = Arc::new(FakeModel::default());
    let (studio, other) = two_instances(model.clone(), policy(3, Some(10)));
    other.pause("owner@example.com").await.unwrap();
    // This instance reads the switch at most once a second.
    tokio::time::sleep(crate::controls::REFRESH).await;
    assert!(matches!(
        studio.generate(&v(), "a harbour", None).await,
        Err(StudioError::Paused)
    ));
    assert_eq!(model.calls(), 0);
    assert_eq!(left(&studio, "v").await, 3);
    assert_eq!(budget_left(&studio).await, 10);
    other.resume("owner@example.com").await.unwrap();
    tokio::time::sleep(crate::controls::REFRESH).await;
    studio.generate(&v(), "a harbour", None).await.unwrap();
}

#[tokio::test]
async fn a_blocked_visitor_is_refused_by_identifier_or_address() {
    let model = Arc::new(FakeModel::default());
    let (studio, other) = two_instances(model.clone(), policy(3, None));
    other
        .block("203.0.113.7", None, None, "owner")
        .await
        .unwrap();
    other
        .block("ada@example.com", None, Some("abuse"), "owner")
        .await
        .unwrap();
    let signed_in_elsewhere = Visitor::account("grace@example.com")
        .unwrap()
        .from_address("203.0.113.7");
    for visitor in [
        Visitor::new("203.0.113.7"),
        Visitor::account("ada@example.com").unwrap(),
        signed_in_elsewhere,
    ] {
        assert!(
            matches!(
                studio.generate(&visitor, "a harbour", None).await,
                Err(StudioError::Blocked)
            ),
            "{visitor}"
        );
    }
    assert_eq!(model.calls(), 0);
    assert_eq!(left(&studio, "203.0.113.7").await, 3, "nothing spent");
    studio
        .generate(&Visitor::new("203.0.113.8"), "a harbour", None)
        .await
        .unwrap();
    assert_eq!(
        other
            .blocks()
            .await
            .unwrap()
            .into_iter()
            .map(|block| block.target)
            .collect::<Vec<_>>(),
        ["203.0.113.7", "ada@example.com"]
    );
    other.unblock("203.0.113.7", "owner").await.unwrap();
    assert!(other
        .generate(&Visitor::new("203.0.113.7"), "a harbour", None)
        .await
        .is_ok());
}

#[tokio::test]
async fn a_dynamic_limit_holds_the_visitors_but_not_the_shared_budget() {
    let model = Arc::new(FakeModel::default());
    let (studio, other) = two_instances(model.clone(), policy(5, Some(3)));
    other
        .set_limit(LiveLimit::Visitor, Some(1), "owner")
        .await
        .unwrap();
    tokio::time::sleep(crate::controls::REFRESH).await;
    assert_eq!(
        studio.limits().await.limit,
        Live {
            configured: Some(5),
            live: Some(1)
        }
    );
    studio.generate(&v(), "one", None).await.unwrap();
    match studio.generate(&v(), "two", None).await {
        Err(StudioError::Denied {
            decision,
            scope: LimitScope::Visitor,
        }) => assert_eq!((decision.limit, decision.remaining), (1, 0)),
        other => panic!("{:?}", other.map(|g| g.image)),
    }
    // The shared budget keeps its own limit (3), not the visitors' (1).
    studio
        .generate(&Visitor::new("w"), "one", None)
        .await
        .unwrap();
    assert_eq!(budget_left(&studio).await, 1);
    // Raised again: the visitor refused a moment ago may go on at once.
    other
        .set_limit(LiveLimit::Visitor, Some(4), "owner")
        .await
        .unwrap();
    tokio::time::sleep(crate::controls::REFRESH).await;
    studio.generate(&v(), "two", None).await.unwrap();
    other
        .set_limit(LiveLimit::Visitor, None, "owner")
        .await
        .unwrap();
    tokio::time::sleep(crate::controls::REFRESH).await;
    assert_eq!(studio.quota(&v()).await.unwrap().limit, 5);
}

#[tokio::test]
async fn the_shared_budget_and_the_dollar_budget_change_live_too() {
    let model = Arc::new(FakeModel::default());
    let (studio, other) = two_instances(model.clone(), policy(5, Some(10)));
    assert!(other
        .set_limit(LiveLimit::Shared, Some(1), "owner")
        .await
        .unwrap());
    tokio::time::sleep(crate::controls::REFRESH).await;
    studio.generate(&v(), "one", None).await.unwrap();
    assert!(matches!(
        studio.generate(&Visitor::new("w"), "two", None).await,
        Err(StudioError::Denied {
            scope: LimitScope::Everyone,
            ..
        })
    ));
    other
        .set_limit(LiveLimit::Shared, None, "owner")
        .await
        .unwrap();
    // A dollar budget below one run's expected cost ($0.00975) admits none.
    other
        .set_limit(LiveLimit::DailyDollars, Some(5_000), "owner")
        .await
        .unwrap();
    tokio::time::sleep(crate::controls::REFRESH).await;
    let limits = studio.limits().await;
    assert_eq!(limits.daily_usd_micros.in_force(), Some(5_000));
    assert_eq!(limits.global_limit.unwrap().in_force(), Some(10));
    assert!(matches!(
        studio.generate(&Visitor::new("w"), "two", None).await,
        Err(StudioError::Denied {
            scope: LimitScope::Dollars,
            ..
        })
    ));
    assert_eq!(model.calls(), 1);
    // No signed-out quota of its own here: nothing to change.
    assert!(!other
        .set_limit(LiveLimit::SignedOut, Some(1), "owner")
        .await
        .unwrap());
    assert_eq!(limits.anonymous_limit, None);
}
