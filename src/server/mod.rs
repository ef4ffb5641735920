//! Server-only glue: settings, start-up, the Axum router and the handlers that
//! connect HTTP and Leptos to the domain.

pub mod client_ip;
pub mod handlers;
pub mod settings;
pub mod startup;
pub mod telemetry;
