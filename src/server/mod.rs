//! Server-only glue between HTTP, Leptos and the domain: settings, composition
//! (which parts the settings choose), the shared state, the router and its
//! handlers (server-function bodies, the JSON API), error mapping, start-up.

pub mod admin;
pub mod admin_access;
pub mod admin_page;
pub mod auth;
pub mod client_ip;
pub mod compose;
pub mod errors;
pub mod functions;
pub mod generations;
pub mod guard;
pub mod health;
pub mod images;
pub mod json_api;
pub mod metrics;
pub mod middleware;
pub mod pages;
pub mod per_address;
pub mod returning;
pub mod router;
pub mod serve;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod webhooks;
