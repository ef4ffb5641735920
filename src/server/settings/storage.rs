//! `[storage]` and `[recent]`: where images are kept and served from, and how
//! many recent images each visitor keeps.

use super::{invalid, is_plain_http_address, within, SettingsError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Directory where generated images are kept (when `url` is not set).
    pub dir: PathBuf,
    /// Where images are kept, as a URL: `file://data/images`, `s3://bucket` or
    /// `s3://bucket/prefix` (credentials and endpoint from the standard AWS_*
    /// variables), `memory://` (tests). Unset (or empty): `file://` + `dir`.
    /// Read once, at load.
    pub url: Option<StorageAddress>,
    /// Where visitors fetch images from instead of the app's `/images/`: a CDN
    /// or the bucket's public domain (`https://images.example/lofianime/`),
    /// serving the same file names. Unset: the app serves them.
    pub public_base_url: Option<String>,
    /// The longest one storage call (a read, a write, a wait for the next
    /// part of a file) may take, in seconds; past it the call fails.
    pub timeout_secs: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/images"),
            url: None,
            public_base_url: None,
            timeout_secs: 10,
        }
    }
}

/// Where images are kept, as `storage.url` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    Dir(PathBuf),
    S3 {
        bucket: String,
        prefix: Option<String>,
    },
    Memory,
}

/// `storage.url` as the owner wrote it, with what it names, read once at
/// load (a bad one stops start-up, named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorageAddress {
    text: String,
    /// `None`: written empty, which means unset.
    names: Option<StorageUrl>,
}

impl TryFrom<String> for StorageAddress {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let names = match text.trim() {
            "" => None,
            url => Some(parse_storage_url(url)?),
        };
        Ok(Self { text, names })
    }
}

impl From<StorageAddress> for String {
    fn from(address: StorageAddress) -> Self {
        address.text
    }
}

/// What a `storage.url` names, or why it names nothing.
fn parse_storage_url(url: &str) -> Result<StorageUrl, String> {
    if let Some(path) = url.strip_prefix("file://") {
        if path.is_empty() {
            return Err("file:// needs a directory, e.g. file://data/images".into());
        }
        return Ok(StorageUrl::Dir(PathBuf::from(path)));
    }
    if url == "memory://" {
        return Ok(StorageUrl::Memory);
    }
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err("must start with file://, s3:// or be memory://".into());
    };
    let (bucket, prefix) = match rest.split_once('/') {
        Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
        None => (rest, ""),
    };
    // S3's bucket naming rules, the parts that matter for a URL.
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err("s3:// needs a bucket name of 3 to 63 lowercase letters, digits, dots or dashes, e.g. s3://my-bucket/images".into());
    }
    if prefix.contains("..") || prefix.contains('?') || prefix.contains('#') {
        return Err(
            "the prefix after the bucket must be a plain path, e.g. s3://my-bucket/images".into(),
        );
    }
    Ok(StorageUrl::S3 {
        bucket: bucket.to_owned(),
        prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
    })
}

impl StorageSettings {
    /// `public_base_url`, ending in `/`, if set.
    pub fn public_base(&self) -> Option<String> {
        let url = self.public_base_url.as_deref()?.trim();
        (!url.is_empty()).then(|| format!("{}/", url.trim_end_matches('/')))
    }

    /// The storage `url` names (or `dir`, when it is unset).
    pub fn location(&self) -> StorageUrl {
        match self.url.as_ref().and_then(|url| url.names.clone()) {
            Some(names) => names,
            None => StorageUrl::Dir(self.dir.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecentSettings {
    /// How many recent images are kept per visitor (and shown on the page).
    pub keep: usize,
}

impl Default for RecentSettings {
    fn default() -> Self {
        Self {
            keep: lofianime_domain::DEFAULT_RECENT_KEEP,
        }
    }
}

impl StorageSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        within("storage.timeout_secs", self.timeout_secs, 1..=300)?;
        match self.public_base() {
            Some(base) if !is_plain_http_address(&base) => invalid(
                "storage.public_base_url",
                "must be an http(s) address such as https://images.example/lofianime/",
            ),
            _ => Ok(()),
        }
    }
}

impl RecentSettings {
    pub(super) fn check(&self) -> Result<(), SettingsError> {
        within("recent.keep", self.keep, 1..=100)
    }
}
