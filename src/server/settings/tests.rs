//! The settings as an owner writes them: defaults, the file, variables, and
//! the messages a bad value gets.
// figment's Jail closures return figment's own (large) error type.
#![allow(clippy::result_large_err)]

use super::*;
use figment::Jail;
use ipnet::IpNet;
use lofianime_domain::{Algorithm, FailurePolicy};

fn load_in(jail: &Jail) -> Result<Settings, SettingsError> {
    Settings::from_figment(Settings::figment(&jail.directory().join("Leptos.toml")))
}

#[test]
fn the_defaults_are_the_original_apps_policy() {
    Jail::expect_with(|jail| {
        let settings = load_in(jail).expect("defaults load");
        assert_eq!(settings.ratelimit.limit, 5);
        assert_eq!(settings.ratelimit.window, "1440 m");
        assert_eq!(settings.ratelimit.prefix, "@upstash/ratelimit");
        assert_eq!(
            settings.algorithm(),
            Algorithm::FixedWindow {
                limit: 5,
                window_ms: 86_400_000
            }
        );
        assert_eq!(settings.ratelimit.on_store_failure, FailurePolicy::Deny);
        assert!(settings.ratelimit.ephemeral_cache);
        assert_eq!(settings.prompt.max_chars, 500);
        assert!(settings.visitors.trusted_proxies.is_empty());
        Ok(())
    });
}

#[test]
fn trusted_proxies_take_addresses_and_ranges_and_name_a_bad_entry() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "Leptos.toml",
            "[visitors]\ntrusted_proxies = [\"127.0.0.1\", \"::1\", \"10.0.0.0/8\"]\n",
        )?;
        let settings = load_in(jail).expect("addresses are fine");
        let proxies: Vec<String> = settings
            .visitors
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]);
        jail.create_file(
            "Leptos.toml",
            "[visitors]\ntrusted_proxies = [\"proxy.local\"]\n",
        )?;
        let error = load_in(jail).unwrap_err().to_string();
        assert!(
            error.contains("proxy.local") && error.contains("CIDR"),
            "{error}"
        );
        Ok(())
    });
}

#[test]
fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "Leptos.toml",
            "[ratelimit]\nlimit = 3\nwindow = \"10 s\"\n[visitors]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        )?;
        jail.set_env("LOFIANIME_RATELIMIT__LIMIT", "7");
        let settings = load_in(jail).expect("settings load");
        assert_eq!(settings.ratelimit.limit, 7);
        assert_eq!(settings.ratelimit.window, "10 s");
        assert_eq!(
            settings.visitors.trusted_proxies,
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        Ok(())
    });
}

#[test]
fn every_algorithm_can_be_chosen() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "Leptos.toml",
            "[ratelimit]\nalgorithm = \"token-bucket\"\nlimit = 10\nwindow = \"1 h\"\nrefill_rate = 2\n",
        )?;
        assert_eq!(
            load_in(jail).unwrap().algorithm(),
            Algorithm::TokenBucket {
                refill_rate: 2,
                interval_ms: 3_600_000,
                max_tokens: 10
            }
        );
        jail.set_env("LOFIANIME_RATELIMIT__ALGORITHM", "sliding-window");
        assert_eq!(
            load_in(jail).unwrap().algorithm(),
            Algorithm::SlidingWindow {
                limit: 10,
                window_ms: 3_600_000
            }
        );
        jail.set_env("LOFIANIME_RATELIMIT__ALGORITHM", "leaky-bucket");
        let message = load_in(jail).unwrap_err().to_string();
        assert!(message.contains("leaky-bucket"), "{message}");
        Ok(())
    });
}

#[test]
fn a_misspelt_setting_is_an_error_naming_it() {
    Jail::expect_with(|jail| {
        jail.create_file("Leptos.toml", "[ratelimit]\nlimt = 3\n")?;
        let message = load_in(jail).unwrap_err().to_string();
        assert!(message.contains("limt"), "{message}");
        Ok(())
    });
}

#[test]
fn a_bad_value_is_an_error_naming_the_setting_and_its_variable() {
    Jail::expect_with(|jail| {
        jail.set_env("LOFIANIME_RATELIMIT__WINDOW", "one day");
        let message = load_in(jail).unwrap_err().to_string();
        assert!(message.contains("LOFIANIME_RATELIMIT__WINDOW"), "{message}");
        assert!(message.contains("one day"), "{message}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("LOFIANIME_RATELIMIT__LIMIT", "0");
        let message = load_in(jail).unwrap_err().to_string();
        assert!(message.contains("ratelimit.limit"), "{message}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("LOFIANIME_RATELIMIT__LIMIT", "five");
        let message = load_in(jail).unwrap_err().to_string();
        assert!(message.contains("RATELIMIT.LIMIT"), "{message}");
        assert!(message.contains("LOFIANIME_"), "{message}");
        assert!(message.contains("\"five\""), "{message}");
        Ok(())
    });
}

#[test]
fn addresses_and_counts_of_the_operations_settings_are_checked() {
    for (variable, value, named) in [
        (
            "LOFIANIME_STORAGE__URL",
            "ftp://files.example/x",
            "LOFIANIME_STORAGE__URL",
        ),
        (
            "LOFIANIME_STORAGE__URL",
            "s3://A_Bucket",
            "LOFIANIME_STORAGE__URL",
        ),
        (
            "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
            "images.example",
            "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
        ),
        (
            "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
            "https://images.example/?v=1",
            "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
        ),
        (
            "LOFIANIME_SITE__PUBLIC_URL",
            "lofianime.example",
            "LOFIANIME_SITE__PUBLIC_URL",
        ),
        ("LOFIANIME_WORKERS__CPU", "0", "LOFIANIME_WORKERS__CPU"),
        (
            "LOFIANIME_STORAGE__TIMEOUT_SECS",
            "0",
            "LOFIANIME_STORAGE__TIMEOUT_SECS",
        ),
        // Cancel-After past the deadline means nothing.
        (
            "LOFIANIME_MODEL__CANCEL_AFTER_SECS",
            "600",
            "LOFIANIME_MODEL__CANCEL_AFTER_SECS",
        ),
        (
            "LOFIANIME_SHUTDOWN__GRACE_SECS",
            "7200",
            "LOFIANIME_SHUTDOWN__GRACE_SECS",
        ),
        ("LOFIANIME_AUTH__MODE", "sometimes", "AUTH.MODE"),
        (
            "LOFIANIME_AUTH__SESSION_DAYS",
            "0",
            "LOFIANIME_AUTH__SESSION_DAYS",
        ),
        // Sign-in on without the public address its redirect URI needs.
        (
            "LOFIANIME_AUTH__MODE",
            "required",
            "LOFIANIME_SITE__PUBLIC_URL",
        ),
    ] {
        Jail::expect_with(|jail| {
            jail.set_env(variable, value);
            let message = load_in(jail).unwrap_err().to_string();
            assert!(message.contains(named), "{value}: {message}");
            Ok(())
        });
    }
    Jail::expect_with(|jail| {
        assert_eq!(load_in(jail).unwrap().model.cancel_after_secs(), 60);
        jail.set_env("LOFIANIME_MODEL__DEADLINE_SECS", "30");
        assert_eq!(
            load_in(jail).unwrap().model.cancel_after_secs(),
            30,
            "never past a shorter deadline"
        );
        jail.set_env("LOFIANIME_MODEL__CANCEL_AFTER_SECS", "12");
        assert_eq!(load_in(jail).unwrap().model.cancel_after_secs(), 12);
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("LOFIANIME_STORAGE__URL", "s3://my-bucket/images/");
        jail.set_env(
            "LOFIANIME_STORAGE__PUBLIC_BASE_URL",
            "https://cdn.example/x",
        );
        let settings = load_in(jail).unwrap();
        assert_eq!(
            settings.storage.location(),
            StorageUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: Some("images".into())
            }
        );
        assert_eq!(
            settings.storage.public_base().as_deref(),
            Some("https://cdn.example/x/")
        );
        Ok(())
    });
}

#[test]
fn the_repository_settings_file_is_valid_and_matches_the_defaults() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_SETTINGS_FILE);
    let from_file = Settings::from_figment(
        Figment::from(Serialized::defaults(Settings::default())).merge(Toml::file(&file)),
    )
    .expect("Leptos.toml is valid");
    assert_eq!(from_file, Settings::default());
}

#[test]
fn every_message_names_the_setting_it_is_about() {
    // Each window is named by its own setting (a bad global window was once
    // reported as `ratelimit.window`).
    for (variable, named, other) in [
        (
            "LOFIANIME_RATELIMIT__GLOBAL_WINDOW",
            "ratelimit.global_window (LOFIANIME_RATELIMIT__GLOBAL_WINDOW)",
            "LOFIANIME_RATELIMIT__WINDOW)",
        ),
        (
            "LOFIANIME_RATELIMIT__WINDOW",
            "ratelimit.window (LOFIANIME_RATELIMIT__WINDOW)",
            "GLOBAL_WINDOW",
        ),
    ] {
        Jail::expect_with(|jail| {
            jail.set_env(variable, "a fortnight");
            let message = load_in(jail).unwrap_err().to_string();
            assert!(message.contains(named), "{message}");
            assert!(!message.contains(other), "{message}");
            assert!(message.contains("a fortnight"), "{message}");
            Ok(())
        });
    }
    Jail::expect_with(|jail| {
        jail.set_env("LOFIANIME_MODEL__POLL_INTERVAL_MS", "0");
        let message = load_in(jail).unwrap_err().to_string();
        assert!(
            message.starts_with("model.poll_interval_ms (LOFIANIME_MODEL__POLL_INTERVAL_MS): "),
            "{message}"
        );
        Ok(())
    });
    assert_eq!(
        Setting::new("server.header_read_timeout_secs").variable(),
        "LOFIANIME_SERVER__HEADER_READ_TIMEOUT_SECS"
    );
}

#[test]
fn webhooks_are_on_for_an_https_site_and_the_call_budget_is_checked() {
    Jail::expect_with(|jail| {
        let settings = load_in(jail).expect("defaults load");
        assert_eq!(settings.model.webhooks, WebhookMode::Auto);
        assert!(!settings.model.webhooks_on(None), "no public address");
        assert!(!settings.model.webhooks_on(Some("http://lofi.example")));
        assert!(settings.model.webhooks_on(Some("https://lofi.example")));
        assert_eq!(
            (
                settings.model.budget_creates,
                settings.model.budget_calls,
                settings.model.budget_window_secs,
                settings.model.fallback_poll_secs
            ),
            (600, 3_000, 60, 10),
            "Replicate's account limits"
        );
        jail.set_env("LOFIANIME_MODEL__WEBHOOKS", "off");
        let settings = load_in(jail).unwrap();
        assert!(!settings.model.webhooks_on(Some("https://lofi.example")));
        jail.set_env("LOFIANIME_MODEL__WEBHOOKS", "on");
        let error = load_in(jail).unwrap_err().to_string();
        assert!(
            error.contains("model.webhooks") && error.contains("site.public_url"),
            "{error}"
        );
        jail.set_env("LOFIANIME_SITE__PUBLIC_URL", "http://10.0.0.5:3000");
        let settings = load_in(jail).unwrap();
        assert!(settings
            .model
            .webhooks_on(settings.site.public_origin().as_deref()));
        jail.set_env("LOFIANIME_MODEL__WEBHOOKS", "sometimes");
        let error = load_in(jail).unwrap_err().to_string();
        assert!(error.contains("model.webhooks"), "{error}");
        jail.set_env("LOFIANIME_MODEL__WEBHOOKS", "auto");
        jail.set_env("LOFIANIME_MODEL__BUDGET_CALLS", "0");
        let error = load_in(jail).unwrap_err().to_string();
        assert!(error.contains("model.budget_calls"), "{error}");
        Ok(())
    });
}
