//! The pages, one file per part. Everything is rendered on the server; only the
//! islands (`#[island]`: the studio, which is the form with its progress, the
//! result and the recent images; and the Copy link button) are hydrated in the
//! browser, so only their code is in the WASM bundle. Every page also works
//! without JavaScript: the form posts to the same server function.
//!
//! - [`shell`]: the HTML document, the Content-Security-Policy, the routes;
//! - `home`: the front page around the studio (header, notice, footer);
//! - `account`: the header's sign-in corner and the sign-in prompt;
//! - `studio`: the island, and `generation`: its client-side state in one place;
//! - `form`, `quota`, `result`, `recent`: the studio's parts;
//! - `image_page`: `/i/{id}`, the shareable page of one image; `making`:
//!   `/making/{job}`, where a browser without JavaScript waits; `not_found`: 404;
//! - `words`: how times, windows and file names read.

mod account;
mod form;
mod generation;
mod home;
mod image_page;
pub(crate) mod making;
mod not_found;
mod quota;
mod recent;
mod result;
mod shell;
mod studio;
mod words;

pub use shell::{content_security_policy, shell, App, ImagesOrigin, InlineCss};
pub use words::{describe_age, describe_wait, describe_window, download_name};
