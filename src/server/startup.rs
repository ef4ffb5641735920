//! Start-up: reads the settings and the environment, puts the app together
//! (`compose`), logs what it runs on, and serves the router until Ctrl-C or
//! SIGTERM.

use crate::server::compose::{self, ComposeError};
use crate::server::metrics::MetricsEndpoint;
use crate::server::per_address::AddressCap;
use crate::server::router::router;
use crate::server::serve::{serve_until, Draining, Limits};
use crate::server::settings::{Secrets, Settings, SettingsError};
use crate::server::state::AppState;
use lofianime_domain::runtime::cleanups_done;
use std::net::SocketAddr;
use std::time::Duration;

/// Why the app could not start; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error("metrics exporter: {0}")]
    Metrics(String),
    #[error("Leptos configuration: {0}")]
    Leptos(String),
    #[error("could not listen on {addr}: {source} (set LEPTOS_SITE_ADDR to another address)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How long stopped generations get to answer, and clean-up work to finish,
/// after the grace period.
const AFTER_GRACE: Duration = Duration::from_secs(5);

/// Reads the settings and the environment, builds the app and serves it until
/// Ctrl-C or SIGTERM.
pub async fn run() -> Result<(), StartupError> {
    // A missing .env is normal; a broken one is worth a warning.
    if let Err(error) = dotenvy::dotenv() {
        if !error.not_found() {
            tracing::warn!(%error, "could not read .env");
        }
    }
    let settings = Settings::load()?;
    let secrets = Secrets::from_env();
    let leptos_options = leptos::config::get_configuration(None)
        .map_err(|e| StartupError::Leptos(e.to_string()))?
        .leptos_options;
    let addr = leptos_options.site_addr;
    let state = build(&settings, &secrets, leptos_options).await?;
    tokio::spawn(summarise_refusals());
    // One instance at a time (a lock in the store) writes the rows of runs
    // whose instance died before settling them.
    let studio = state.studio.clone();
    tokio::spawn(async move { studio.reconcile_forever().await });
    // Model runs a dead process left going are cancelled (at once: a crash
    // before this start may have left some).
    let studio = state.studio.clone();
    tokio::spawn(async move { studio.stop_orphaned_runs_forever().await });
    // Blocks with an expiry are lifted when their time is up.
    let studio = state.studio.clone();
    tokio::spawn(async move { studio.lift_expired_blocks_forever().await });
    // Refusals reach the day's totals every few seconds, not one write each.
    let studio = state.studio.clone();
    tokio::spawn(async move { studio.count_refusals_forever().await });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })?;
    tracing::info!("lofianime is listening on http://{addr}");
    let server = &settings.server;
    let limits = Limits {
        header_read_timeout: Duration::from_secs(server.header_read_timeout_secs),
        body_read_timeout: Duration::from_secs(server.body_read_timeout_secs),
        max_connections: server.max_connections,
        per_address: AddressCap::new(
            server.max_connections_per_address,
            settings.visitors.trusted_proxies.clone(),
        ),
    };
    let draining = draining(&state, Duration::from_secs(settings.shutdown.grace_secs));
    let studio = state.studio.clone();
    serve_until(listener, router(state), limits, shutdown_signal(), draining).await;
    // The last few seconds' refusals, while the store still answers.
    match tokio::time::timeout(Duration::from_secs(2), studio.flush_refusals()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "the last refusals could not be added to the day's totals")
        }
        Err(_) => {
            tracing::warn!("the last refusals could not be added to the day's totals in time")
        }
    }
    // Model runs being cancelled at their provider and credits being given back.
    if !cleanups_done(AFTER_GRACE).await {
        tracing::warn!("some clean-up work (cancelling model runs, refunds) did not finish");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The app's state from the settings, each part logged as it is chosen.
async fn build(
    settings: &Settings,
    secrets: &Secrets,
    leptos_options: leptos::config::LeptosOptions,
) -> Result<AppState, StartupError> {
    let cpu_workers = settings
        .workers
        .cpu
        .unwrap_or_else(lofianime_domain::runtime::default_workers);
    lofianime_domain::runtime::configure_cpu_pool(cpu_workers);
    tracing::info!(
        cpu_workers,
        "CPU-bound work (painting, image variants) runs on at most this many threads at once"
    );
    let components = compose::components(settings, secrets).await?;
    tracing::info!(
        store = %components.limiter_store.describe(),
        algorithm = %settings.algorithm(),
        window = %settings.ratelimit.window,
        on_store_failure = ?settings.ratelimit.on_store_failure,
        "rate limiter"
    );
    let spend = &settings.spend;
    tracing::info!(
        usd_per_second = spend.usd_per_second,
        daily_usd_budget = ?spend.daily_usd,
        daily_generation_budget = settings.ratelimit.global_limit,
        budget_window = %settings.ratelimit.global_window,
        "spend: each run costs its billed seconds at this price (an estimate until checked on the model's page); the budgets (a generation budget of 0 is none)"
    );
    let mut state = AppState::new(settings, secrets, components, leptos_options)?;
    if let Some(issuer) = state.auth.issuer() {
        tracing::info!(mode = ?settings.auth.mode, %issuer, accounts_by = ?settings.auth.identify_accounts_by, "sign-in is on");
    }
    if let Some(token) = &secrets.metrics_token {
        state.metrics = Some(MetricsEndpoint::install(token).map_err(StartupError::Metrics)?);
        tracing::info!("metrics at /metrics (Authorization: Bearer METRICS_TOKEN)");
    }
    for (part, description) in state.studio.describe() {
        tracing::info!(%description, "{part}");
    }
    for (server, health) in state.studio.model_server_health().await {
        if health == "READY" || health == "BUSY" {
            tracing::info!(%server, %health, "model server");
        } else {
            tracing::warn!(%server, %health, "model server not ready");
        }
    }
    if !settings.visitors.trusted_proxies.is_empty() {
        tracing::info!(proxies = ?settings.visitors.trusted_proxies, header = ?settings.visitors.client_ip_header, "the forwarding header is believed from these proxies");
    }
    Ok(state)
}

/// Refusals are counted, and summed up once a minute instead of one line each.
async fn summarise_refusals() {
    const PERIOD_SECS: u64 = 60;
    let mut every = tokio::time::interval(Duration::from_secs(PERIOD_SECS));
    every.tick().await;
    loop {
        every.tick().await;
        crate::server::errors::log_refusal_summary(PERIOD_SECS);
    }
}

/// What a shutdown does: on the signal, no new generations (the running ones
/// may finish); after `grace`, the running ones are stopped.
fn draining(state: &AppState, grace: Duration) -> Draining {
    let drain = state.studio.shutdown().clone();
    let stop = state.studio.shutdown().clone();
    Draining {
        grace,
        after_expiry: AFTER_GRACE,
        tasks: state.generations.clone(),
        on_signal: Box::new(move || {
            tracing::info!(
                grace_secs = grace.as_secs(),
                "no longer accepting connections; letting generations in flight finish"
            );
            drain.drain();
        }),
        on_expiry: Box::new(move || {
            tracing::warn!("the grace period is over: stopping the generations still running and giving their credits back");
            stop.stop();
        }),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
