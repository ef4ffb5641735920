//! The server binary: logging, then the app. Everything else lives in the library.

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    lofianime::server::telemetry::init();
    match lofianime::server::startup::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("lofianime could not start: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
fn main() {
    // The browser side starts from `lofianime::hydrate` in the WASM bundle.
}
