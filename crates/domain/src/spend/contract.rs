//! Behaviour every [`SpendLedger`] must have; run against memory here and
//! against a real Redis and the Upstash REST bridge in `tests/`.

use super::{Reservation, SpendLedger, SpendRow};

const DAY: &str = "2026-12-06";
const KEEP_MS: u64 = 86_400_000;

pub fn row(run_id: &str, outcome: &str, billed_ms: u64, usd_micros: u64) -> SpendRow {
    SpendRow {
        run_id: run_id.to_owned(),
        day: DAY.to_owned(),
        time_ms: 1_000,
        outcome: outcome.to_owned(),
        billed_ms,
        usd_micros,
        who: "tag".to_owned(),
        prompt: None,
        image: None,
    }
}

pub async fn rows_count_once_and_add_up_by_outcome(ledger: &dyn SpendLedger) {
    assert!(ledger
        .record(&row("a", "delivered", 8_000, 7_800), None, KEEP_MS)
        .await
        .unwrap());
    assert!(ledger
        .record(&row("b", "stopped", 2_500, 2_438), None, KEEP_MS)
        .await
        .unwrap());
    assert!(
        !ledger
            .record(&row("a", "delivered", 8_000, 7_800), None, KEEP_MS)
            .await
            .unwrap(),
        "the same run written again counts once"
    );
    assert!(ledger
        .record(&row("c", "delivered", 0, 0), None, KEEP_MS)
        .await
        .unwrap());
    let day = ledger.day(DAY, 1_000).await.unwrap();
    assert_eq!(
        (day.runs, day.billed_ms, day.usd_micros),
        (3, 10_500, 10_238)
    );
    assert_eq!(day.by_outcome["delivered"].runs, 2);
    assert_eq!(day.by_outcome["stopped"].usd_micros, 2_438);
    let latest = ledger.latest(10).await.unwrap();
    let ids: Vec<&str> = latest.iter().map(|row| row.run_id.as_str()).collect();
    assert_eq!(ids, ["c", "b", "a"], "newest first");
    assert_eq!(latest[1], row("b", "stopped", 2_500, 2_438));
    assert_eq!(
        ledger.recent_billed_ms().await.unwrap(),
        [2_500, 8_000],
        "only billed runs estimate the next"
    );
    assert_eq!(ledger.day("2026-12-05", 1_000).await.unwrap().runs, 0);
}

pub async fn reservations_hold_the_budget_until_settled_or_lapsed(
    ledger: &dyn SpendLedger,
    now_ms: u64,
) {
    let day = "2026-12-07";
    let reserve = |id: &'static str, micros: u64, expires_ms: u64| async move {
        let reservation = Reservation {
            day: day.to_owned(),
            id: id.to_owned(),
            micros,
            budget_micros: 30_000,
            now_ms,
            expires_ms,
            keep_ms: KEEP_MS,
        };
        ledger.reserve(&reservation).await.unwrap()
    };
    let later = now_ms + 60_000;
    assert!(reserve("r1", 10_000, later).await.admitted);
    assert!(reserve("r2", 10_000, later).await.admitted);
    let full = reserve("r3", 10_001, later).await;
    assert!(!full.admitted, "20,000 held and 10,001 more passes 30,000");
    assert_eq!(full.committed_micros, 20_000);
    assert_eq!(
        ledger.day(day, now_ms).await.unwrap().reserved_micros,
        20_000
    );
    // Settling r1 at its real cost replaces the reservation.
    let mut settled = row("run-1", "delivered", 9_000, 12_000);
    settled.day = day.to_owned();
    assert!(ledger.record(&settled, Some("r1"), KEEP_MS).await.unwrap());
    let totals = ledger.day(day, now_ms).await.unwrap();
    assert_eq!(
        (totals.usd_micros, totals.reserved_micros),
        (12_000, 10_000)
    );
    assert!(!reserve("r4", 8_001, later).await.admitted);
    ledger.release(day, "r2").await.unwrap();
    assert!(reserve("r4", 8_001, later).await.admitted);
    // A reservation nobody settles lapses (this one at once).
    assert!(reserve("r5", 9_999, now_ms).await.admitted, "30,000 fits");
    let totals = ledger.day(day, now_ms).await.unwrap();
    assert_eq!(totals.reserved_micros, 8_001, "r5 lapsed at once");
}

pub async fn locks_are_held_until_they_expire(ledger: &dyn SpendLedger) {
    assert!(ledger.try_lock("reconcile", 60_000).await.unwrap());
    assert!(!ledger.try_lock("reconcile", 60_000).await.unwrap());
    assert_eq!(ledger.read_mark("reconciled").await.unwrap(), None);
    ledger.write_mark("reconciled", 42).await.unwrap();
    assert_eq!(ledger.read_mark("reconciled").await.unwrap(), Some(42));
}

pub async fn refusals_add_up_beside_the_runs(ledger: &dyn SpendLedger) {
    let day = "2026-12-08";
    ledger
        .add_refusals(day, &[("limit".into(), 3), ("paused".into(), 1)], KEEP_MS)
        .await
        .unwrap();
    ledger
        .add_refusals(day, &[("limit".into(), 2)], KEEP_MS)
        .await
        .unwrap();
    let mut delivered = row("d", "delivered", 1_000, 975);
    delivered.day = day.to_owned();
    assert!(ledger.record(&delivered, None, KEEP_MS).await.unwrap());
    let totals = ledger.day(day, 1_000).await.unwrap();
    assert_eq!(totals.refused.get("limit"), Some(&5));
    assert_eq!(totals.refused.get("paused"), Some(&1));
    assert_eq!(totals.refused_total(), 6);
    assert_eq!(totals.runs, 1, "refusals are not runs");
    assert_eq!(
        totals.by_outcome.keys().collect::<Vec<_>>(),
        ["delivered"],
        "nor outcomes"
    );
}
