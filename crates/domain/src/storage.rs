//! Where generated images are kept, so the page never depends on a model's
//! short-lived URLs. Backed by the `object_store` crate: a local directory by
//! default, memory in tests, a cloud bucket later by configuration.

use crate::generator::{GeneratedImage, ImageFormat};
use crate::variants::{self, FirstVariants, VariantError};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use lofianime_wire::{ImageId, Variant};
use object_store::{path::Path, ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The name of a stored image or one of its variants: 32 lowercase hex digits,
/// then `.png` (the original, or `.jpg` / `.webp`), `-medium.webp`,
/// `-display.webp` or `-thumb.webp`. Parsing it is the only way to make one from visitor input, so a
/// request can never name a path outside the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageKey {
    id: ImageId,
    variant: Variant,
    format: ImageFormat,
}

impl ImageKey {
    fn new_random(format: ImageFormat) -> Self {
        Self {
            id: ImageId::parse(&uuid::Uuid::new_v4().simple().to_string())
                .expect("a simple UUID is 32 lowercase hex digits"),
            variant: Variant::Original,
            format,
        }
    }

    /// Parses a file name such as `3f0c…9a.png` (the shapes [`lofianime_wire`] defines).
    pub fn parse(file_name: &str) -> Option<Self> {
        let (id, variant, extension) = lofianime_wire::split_image_name(file_name)?;
        Some(Self {
            id: ImageId::parse(id)?,
            variant,
            format: ImageFormat::from_extension(extension)?,
        })
    }

    /// The original of image `id` stored as `format`.
    pub fn original(id: &ImageId, format: ImageFormat) -> Self {
        Self {
            id: id.clone(),
            variant: Variant::Original,
            format,
        }
    }

    /// The same image's `variant` (a WebP; the original keeps its format).
    pub fn variant(&self, variant: Variant) -> Self {
        Self {
            id: self.id.clone(),
            variant,
            format: ImageFormat::Webp,
        }
    }

    pub fn id(&self) -> &ImageId {
        &self.id
    }

    pub fn which(&self) -> Variant {
        self.variant
    }

    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// The app's own URL for this image.
    pub fn url(&self) -> String {
        format!("{}{self}", lofianime_wire::IMAGES_PATH)
    }
}

impl TryFrom<String> for ImageKey {
    type Error = &'static str;

    fn try_from(file_name: String) -> Result<Self, Self::Error> {
        Self::parse(&file_name).ok_or("not the name of a stored image")
    }
}

impl From<ImageKey> for String {
    fn from(key: ImageKey) -> Self {
        key.to_string()
    }
}

impl fmt::Display for ImageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.variant {
            Variant::Original => write!(f, "{}.{}", self.id, self.format.extension()),
            variant => {
                let url = lofianime_wire::variant_url(self.id.as_str(), variant);
                f.write_str(url.trim_start_matches(lofianime_wire::IMAGES_PATH))
            }
        }
    }
}

/// What is known of a stored image besides its bytes, kept beside it as
/// `{id}.json`: what its page shows to anyone holding the link (no visitor data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The original's file name (`{id}.png`).
    pub original: String,
    pub prompt: String,
    pub width: u32,
    pub height: u32,
    pub created_ms: u64,
    /// The original's size in bytes.
    #[serde(default)]
    pub bytes: u64,
    /// It has a medium variant (images stored before it existed have only a
    /// display and a thumbnail variant).
    #[serde(default)]
    pub medium: bool,
    /// The seed it was made with (none: made before seeds were kept, or by a
    /// generator that takes none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// The tag of the visitor (or account) who made it: only they may delete it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ImageRecord {
    pub fn key(&self) -> Option<ImageKey> {
        ImageKey::parse(&self.original).filter(|key| key.which() == Variant::Original)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("image storage failed: {0}")]
    Store(#[from] object_store::Error),
    #[error("image variants: {0}")]
    Variants(#[from] VariantError),
    #[error("image record {0}: {1}")]
    Record(String, String),
    /// A storage call passed its time limit (`storage.timeout_secs`).
    #[error("the image store did not answer within {0} s")]
    TimedOut(u64),
    /// Making this image's variants failed a moment ago; not tried again yet.
    #[error("the image's variants could not be made a moment ago: {0}")]
    FailedRecently(String),
}

/// When a new image's page variants are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variants {
    /// The one a page shows before the answer, the thumbnail right after
    /// (a page shows both at once).
    #[default]
    First,
    /// When first asked for: nobody is known to look (the JSON API answers
    /// the original's URL), so the answer waits for no image work. The
    /// original is checked by its header, not decoded.
    WhenAsked,
}

#[async_trait]
pub trait ImageStore: Send + Sync + 'static {
    fn describe(&self) -> String;

    /// Whether the store takes a write now (a small object, written, read and
    /// removed within `bound`); the problem in words when it does not.
    async fn probe_write(&self, bound: std::time::Duration) -> Result<(), String> {
        let _ = bound;
        Ok(())
    }

    /// Stores an image under a new key, with its record and its variants.
    async fn put(
        &self,
        image: &GeneratedImage,
        prompt: &str,
        created_ms: u64,
    ) -> Result<(ImageKey, ImageRecord), StorageError> {
        self.put_with(image, prompt, created_ms, Variants::First)
            .await
    }

    /// [`ImageStore::put`], its variants made `when` said (all of them first
    /// whatever it says when the store cannot make one later).
    async fn put_with(
        &self,
        image: &GeneratedImage,
        prompt: &str,
        created_ms: u64,
        when: Variants,
    ) -> Result<(ImageKey, ImageRecord), StorageError>;

    /// The bytes of a stored image or variant, or `None` when there is no such
    /// image. A missing variant of a stored image is made (once) and kept.
    async fn get(&self, key: &ImageKey) -> Result<Option<Bytes>, StorageError>;

    /// The record of image `id`, or `None` when there is no such image.
    async fn record(&self, id: &ImageId) -> Result<Option<ImageRecord>, StorageError>;

    /// Removes image `id`: its original (any format), variants and record;
    /// false when there was nothing of it.
    async fn delete(&self, id: &ImageId) -> Result<bool, StorageError>;

    /// A stored image or variant as a stream of its bytes, to pass on without
    /// holding it whole (a missing variant is made as [`ImageStore::get`] does).
    async fn open(&self, key: &ImageKey) -> Result<Option<ImageStream>, StorageError> {
        Ok(self.get(key).await?.map(ImageStream::whole))
    }
}

/// An image's bytes as they arrive from the store, and how many there are.
pub struct ImageStream {
    pub size: u64,
    pub chunks: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl ImageStream {
    /// Bytes already in memory, as one chunk.
    pub fn whole(bytes: Bytes) -> Self {
        Self {
            size: bytes.len() as u64,
            chunks: futures_util::stream::once(async move { Ok(bytes) }).boxed(),
        }
    }
}

/// An [`ImageStore`] over any `object_store` backend.
pub struct ObjectImageStore {
    store: Arc<dyn ObjectStore>,
    description: String,
    /// The longest one storage call may take.
    timeout: Duration,
    /// A lock per image whose missing variants are being made: two requests
    /// for one image make them once; other images do not wait. A new image's
    /// thumbnail is made under it right after the answer.
    making: Arc<Mutex<HashMap<ImageId, Arc<tokio::sync::Mutex<()>>>>>,
    /// Every variant is made before a new image's answer (its files are
    /// served from elsewhere, which cannot make a missing one).
    eager: bool,
    /// Images whose variants could not be made lately, when and why: not
    /// tried again for [`FAILURE_MEMORY`].
    failed: Mutex<HashMap<ImageId, (Instant, String)>>,
}

/// How long a failure to make an image's variants is remembered.
const FAILURE_MEMORY: Duration = Duration::from_secs(30);
/// How many such failures are remembered at most.
const FAILURES_KEPT: usize = 10_000;
/// How long storing a generated image keeps trying (the run is paid for).
const WRITE_PATIENCE: Duration = Duration::from_secs(30);
/// Each storage call's time limit unless set otherwise.
pub const DEFAULT_STORAGE_TIMEOUT: Duration = Duration::from_secs(10);

impl ObjectImageStore {
    fn over(store: Arc<dyn ObjectStore>, description: String) -> Self {
        Self {
            store,
            description,
            timeout: DEFAULT_STORAGE_TIMEOUT,
            making: Arc::default(),
            failed: Mutex::default(),
            eager: false,
        }
    }

    /// Makes every variant before a new image's answer: for images served
    /// from another address (`storage.public_base_url`), which cannot make a
    /// missing variant on its first request as this app does.
    pub fn with_all_variants_first(mut self, eager: bool) -> Self {
        self.eager = eager;
        self
    }

    /// Bounds every storage call by `timeout` (a frozen store answers no
    /// visitor late: the call fails instead).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// `call`, failed when it passes the time limit.
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(StorageError::TimedOut(self.timeout.as_secs())))
    }

    /// Images as files in `dir` (created if missing).
    pub fn local_dir(dir: &std::path::Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| {
            StorageError::Store(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(source),
            })
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self::over(
            Arc::new(store),
            format!("local directory {}", dir.display()),
        ))
    }

    /// The object store underneath (other files may live beside the images).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Images in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, B2),
    /// under `prefix` if given. Credentials, region and endpoint come from the
    /// standard variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`), read by `object_store`.
    pub fn s3(bucket: &str, prefix: Option<&str>) -> Result<Self, StorageError> {
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()?;
        let endpoint = std::env::var("AWS_ENDPOINT")
            .ok()
            .and_then(|url| url::Url::parse(&url).ok())
            .map(|url| format!(" at {}", url.origin().ascii_serialization()))
            .unwrap_or_default();
        let place = match prefix {
            Some(prefix) => format!("s3://{bucket}/{prefix}"),
            None => format!("s3://{bucket}"),
        };
        let store: Arc<dyn ObjectStore> = match prefix {
            Some(prefix) => Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)),
            None => Arc::new(s3),
        };
        Ok(Self::over(store, format!("S3 bucket {place}{endpoint}")))
    }

    /// Checks that the store answers and takes a write (a small object written,
    /// read back and deleted), within `bound`; the error says what is wrong.
    pub async fn check_writable(&self, bound: std::time::Duration) -> Result<(), String> {
        let name = format!("lofianime-check/{}", uuid::Uuid::new_v4().simple());
        let check = async {
            self.write(&name, Bytes::from_static(b"ok")).await?;
            self.read(&name).await?;
            self.remove_file(&name).await?;
            Ok::<(), StorageError>(())
        };
        match tokio::time::timeout(bound, check).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(explain(&error)),
            Err(_) => Err(format!(
                "the endpoint cannot be reached: no answer within {} s (AWS_ENDPOINT, AWS_REGION)",
                bound.as_secs()
            )),
        }
    }

    /// Images in this process's memory; for tests.
    pub fn in_memory() -> Self {
        Self::over(
            Arc::new(object_store::memory::InMemory::new()),
            "in memory".into(),
        )
    }

    async fn read(&self, name: &str) -> Result<Option<Bytes>, StorageError> {
        self.timed(async {
            match self.store.get(&Path::from(name)).await {
                Ok(result) => Ok(Some(result.bytes().await?)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Whether object `name` is there (its metadata only).
    async fn exists(&self, name: &str) -> Result<bool, StorageError> {
        self.timed(async {
            match self.store.head(&Path::from(name)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn write(&self, name: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.timed(async {
            self.store
                .put(&Path::from(name), PutPayload::from_bytes(bytes))
                .await?;
            Ok(())
        })
        .await
    }

    async fn remove_file(&self, name: &str) -> Result<(), StorageError> {
        self.timed(async {
            match self.store.delete(&Path::from(name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Writes a new image's files: the variants and the record first, the
    /// original last (an image exists once its original does, so a write
    /// that fails half-way leaves no image that looks whole).
    async fn write_new(
        &self,
        key: &ImageKey,
        original: &Bytes,
        made: &[(Variant, Bytes)],
        record: &ImageRecord,
    ) -> Result<(), StorageError> {
        for (variant, bytes) in made {
            self.write(&key.variant(*variant).to_string(), bytes.clone())
                .await?;
        }
        self.write_record(key.id(), record).await?;
        self.write(&key.to_string(), original.clone()).await
    }

    /// Removes what a failed [`Self::write_new`] may have left (best effort).
    async fn remove_partial(&self, key: &ImageKey) {
        let names = [
            key.variant(Variant::Medium).to_string(),
            key.variant(Variant::Display).to_string(),
            key.variant(Variant::Thumb).to_string(),
            format!("{}.json", key.id()),
            key.to_string(),
        ];
        // At once: on a store that stalls, one time limit instead of five.
        let removals = names.iter().map(|name| async move {
            if let Err(error) = self.remove_file(name).await {
                tracing::warn!(file = %name, %error, "could not remove part of an image that failed to store");
            }
        });
        futures_util::future::join_all(removals).await;
    }

    /// The lock under which image `id`'s missing variants are made.
    fn variant_lock(&self, id: &ImageId) -> Arc<tokio::sync::Mutex<()>> {
        let mut making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        making.entry(id.clone()).or_default().clone()
    }

    /// Forgets image `id`'s lock when nobody else holds or waits for it.
    fn release_variant_lock(&self, id: &ImageId, lock: Arc<tokio::sync::Mutex<()>>) {
        release_lock(&self.making, id, lock);
    }

    /// Encodes a new image's thumbnail from `pixels` and keeps it, after the
    /// answer, under the image's lock (`held`): a page asking for it sooner
    /// waits for it instead of making it again. A failure is logged; the
    /// thumbnail is then made on its first request.
    fn thumbnail_after(
        &self,
        key: ImageKey,
        pixels: image::RgbImage,
        held: tokio::sync::OwnedMutexGuard<()>,
        lock: Arc<tokio::sync::Mutex<()>>,
    ) {
        let (store, timeout, making) = (self.store.clone(), self.timeout, self.making.clone());
        tokio::spawn(async move {
            let thumb = key.variant(Variant::Thumb);
            let kept = async {
                let bytes = on_cpu(move || variants::encode(&pixels, Variant::Thumb)).await?;
                tokio::time::timeout(
                    timeout,
                    store.put(
                        &Path::from(thumb.to_string()),
                        PutPayload::from_bytes(bytes),
                    ),
                )
                .await
                .map_err(|_| StorageError::TimedOut(timeout.as_secs()))??;
                Ok::<(), StorageError>(())
            }
            .await;
            if let Err(error) = kept {
                tracing::warn!(image = %thumb, %error, "could not keep a new image's thumbnail; it is made when first asked for");
            }
            drop(held);
            release_lock(&making, key.id(), lock);
        });
    }

    /// Why making image `id`'s variants failed, if it did within [`FAILURE_MEMORY`].
    fn failed_recently(&self, id: &ImageId) -> Option<String> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed
            .get(id)
            .filter(|(at, _)| at.elapsed() < FAILURE_MEMORY)
            .map(|(_, why)| why.clone())
    }

    fn remember_failure(&self, id: &ImageId, error: &StorageError) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.len() >= FAILURES_KEPT {
            failed.retain(|_, (at, _)| at.elapsed() < FAILURE_MEMORY);
        }
        if failed.len() < FAILURES_KEPT {
            failed.insert(id.clone(), (Instant::now(), error.to_string()));
        }
    }

    async fn write_record(&self, id: &ImageId, record: &ImageRecord) -> Result<(), StorageError> {
        let json = serde_json::to_vec(record)
            .map_err(|e| StorageError::Record(id.to_string(), e.to_string()))?;
        self.write(&format!("{id}.json"), json.into()).await
    }

    /// The original of image `id`: the one its record names, else whichever
    /// format is there (images stored before records were kept).
    async fn find_original(&self, id: &ImageId) -> Result<Option<Original>, StorageError> {
        let record = self.record(id).await?;
        let has_record = record.is_some();
        let candidates = match record.and_then(|record| record.key()) {
            Some(key) => vec![key],
            None => [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Webp]
                .into_iter()
                .map(|format| ImageKey::original(id, format))
                .collect(),
        };
        for key in candidates {
            if let Some(bytes) = self.read(&key.to_string()).await? {
                return Ok(Some(Original {
                    key,
                    bytes,
                    has_record,
                }));
            }
        }
        Ok(None)
    }

    /// Makes and keeps `variant` (and a record, if there is none) of the
    /// original `key` holding `original`: the display variant on its first
    /// request, or one an earlier write could not keep.
    async fn make_missing(
        &self,
        original: Original,
        variant: Variant,
    ) -> Result<Bytes, StorageError> {
        let Original {
            key,
            bytes,
            has_record,
        } = original;
        let id = key.id();
        let started = std::time::Instant::now();
        let original_bytes = bytes.len() as u64;
        // The medium variant's first request (an image made through the JSON
        // API, or stored before medium variants existed): the thumbnail is
        // made from its pixels too unless it is there, as for a new image,
        // rather than decoding the original again when the list asks for it.
        let with_thumb = variant == Variant::Medium
            && !self
                .exists(&key.variant(Variant::Thumb).to_string())
                .await?;
        let (width, height, made) = on_cpu(move || {
            if with_thumb {
                let first = variants::first_variants(&bytes, None, false)?;
                let mut made = first.ready;
                if let Some(thumb) = first.thumb_pixels {
                    made.push((Variant::Thumb, variants::encode(&thumb, Variant::Thumb)?));
                }
                return Ok::<_, VariantError>((first.width, first.height, made));
            }
            let pixels = variants::decode(&bytes)?;
            let made = vec![(variant, variants::make(&pixels, variant)?)];
            Ok((pixels.width(), pixels.height(), made))
        })
        .await?;
        // The one asked for last: a request that finds it finds the rest.
        let mut asked = None;
        for (made_variant, made_bytes) in made {
            if made_variant == variant {
                asked = Some(made_bytes);
            } else {
                self.write(&key.variant(made_variant).to_string(), made_bytes)
                    .await?;
            }
        }
        let made = asked.ok_or_else(|| {
            StorageError::Variants(VariantError::Encode(format!("{variant:?} was not made")))
        })?;
        self.write(&key.variant(variant).to_string(), made.clone())
            .await?;
        if !has_record {
            let record = ImageRecord {
                original: key.to_string(),
                prompt: String::new(),
                width,
                height,
                created_ms: 0,
                bytes: original_bytes,
                medium: false,
                seed: None,
                owner: None,
            };
            self.write_record(id, &record).await?;
        }
        tracing::info!(
            image = %key.variant(variant),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "made an image's variant on its first request"
        );
        Ok(made)
    }
}

/// A stored original found by its id, and whether it has a record.
struct Original {
    key: ImageKey,
    bytes: Bytes,
    has_record: bool,
}

/// What a failed storage check means, for the owner.
fn explain(error: &StorageError) -> String {
    let text = error.to_string();
    format!("{}: {text}", meaning(&text))
}

/// What a storage error's text says went wrong, in the owner's words.
fn meaning(text: &str) -> &'static str {
    let has = |needle: &str| text.contains(needle);
    // Status codes are matched as words: the text also carries a random object
    // name, a port and a duration, whose digits may contain "401" or "403".
    let status = |code: &str| {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == code)
    };
    if has("error sending request")
        || has("onnection refused")
        || has("dns error")
        || has("timed out")
    {
        "the endpoint cannot be reached (AWS_ENDPOINT, AWS_REGION)"
    } else if has("NoSuchBucket") || has("bucket does not exist") {
        "the bucket does not exist"
    } else if has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("InvalidClientTokenId")
        || has("AccessDenied")
        || status("403")
        || status("401")
    {
        "the credentials were refused (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
    } else {
        "the store refused a test write"
    }
}

/// `chunks`, each of which must come within `limit` (a store that stalls
/// mid-file ends the stream with an error rather than holding it open).
fn within(
    chunks: BoxStream<'static, Result<Bytes, StorageError>>,
    limit: Duration,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    futures_util::stream::unfold(Some(chunks), move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout(limit, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(chunks))),
            Ok(None) => None,
            Err(_) => Some((Err(StorageError::TimedOut(limit.as_secs())), None)),
        }
    })
    .boxed()
}

/// How much of a local file one read sends.
const FILE_CHUNK: u64 = 64 * 1024;

/// `range` of a local file, [`FILE_CHUNK`] bytes per read on the blocking
/// pool. `object_store` reads 8 KB per blocking task: serving a 1 MB original
/// cost 5.4 ms of CPU (a 120 KB medium variant, 15 hand-offs). One chunk is
/// read at a time, as the connection takes them.
fn file_chunks(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    let failed = |error: std::io::Error| {
        StorageError::Store(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(error),
        })
    };
    futures_util::stream::try_unfold(
        (file, range.start, range.end),
        move |(mut file, at, end)| async move {
            if at >= end {
                return Ok(None);
            }
            let want = (end - at).min(FILE_CHUNK);
            let read = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek, SeekFrom};
                file.seek(SeekFrom::Start(at))?;
                let mut chunk = Vec::with_capacity(want as usize);
                (&mut file).take(want).read_to_end(&mut chunk)?;
                Ok::<_, std::io::Error>((file, chunk))
            })
            .await
            .map_err(|joined| failed(std::io::Error::other(joined)))?;
            let (file, chunk) = read.map_err(failed)?;
            if chunk.is_empty() {
                return Err(failed(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file ended before its size",
                )));
            }
            let next = at + chunk.len() as u64;
            Ok(Some((Bytes::from(chunk), (file, next, end))))
        },
    )
    .boxed()
}

/// Image work `task` on a CPU worker (see [`crate::cpu`]).
async fn on_cpu<T: Send + 'static>(
    task: impl FnOnce() -> Result<T, VariantError> + Send + 'static,
) -> Result<T, StorageError> {
    crate::cpu::run(task)
        .await
        .map_err(|e| StorageError::Variants(VariantError::Encode(e.to_string())))?
        .map_err(StorageError::Variants)
}

/// Forgets image `id`'s lock in `making` when nobody else holds or waits for it.
fn release_lock(
    making: &Mutex<HashMap<ImageId, Arc<tokio::sync::Mutex<()>>>>,
    id: &ImageId,
    lock: Arc<tokio::sync::Mutex<()>>,
) {
    let mut making = making.lock().unwrap_or_else(|e| e.into_inner());
    // This one and the map's.
    if Arc::strong_count(&lock) <= 2 {
        making.remove(id);
    }
}

#[async_trait]
impl ImageStore for ObjectImageStore {
    async fn probe_write(&self, bound: std::time::Duration) -> Result<(), String> {
        self.check_writable(bound).await
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn put_with(
        &self,
        image: &GeneratedImage,
        prompt: &str,
        created_ms: u64,
        when: Variants,
    ) -> Result<(ImageKey, ImageRecord), StorageError> {
        let key = ImageKey::new_random(image.format);
        let (bytes, pixels, all) = (image.bytes.clone(), image.pixels.clone(), self.eager);
        let FirstVariants {
            width,
            height,
            ready,
            thumb_pixels,
        } = if when == Variants::WhenAsked && !all {
            // Only its size, from the header (or the painter's pixels): an
            // image whose header cannot be read is not kept.
            let (width, height) = match pixels.as_deref() {
                Some(pixels) => pixels.dimensions(),
                None => variants::dimensions(&bytes)?,
            };
            FirstVariants {
                width,
                height,
                ready: Vec::new(),
                thumb_pixels: None,
            }
        } else {
            // Decoded once (not at all when the painter's pixels are at hand),
            // and the variant the page shows first made: an image that cannot
            // be decoded is not kept.
            on_cpu(move || variants::first_variants(&bytes, pixels.as_deref(), all)).await?
        };
        let record = ImageRecord {
            original: key.to_string(),
            prompt: prompt.to_owned(),
            width,
            height,
            created_ms,
            bytes: image.bytes.len() as u64,
            medium: true,
            seed: image.seed,
            owner: image.owner.clone(),
        };
        // The thumbnail follows under the image's lock (new, so not waited for).
        let lock = self.variant_lock(key.id());
        let held = lock.clone().lock_owned().await;
        // The model run is paid for: a store that fails for a moment is
        // tried again, within a bound.
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(250);
        loop {
            match self.write_new(&key, &image.bytes, &ready, &record).await {
                Ok(()) => break,
                Err(error) if started.elapsed() + pause < WRITE_PATIENCE => {
                    tracing::warn!(image = %key, %error, retry_in_ms = pause.as_millis() as u64, "could not store a generated image; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(4));
                }
                Err(error) => {
                    self.remove_partial(&key).await;
                    drop(held);
                    self.release_variant_lock(key.id(), lock);
                    return Err(error);
                }
            }
        }
        metrics::counter!("lofianime_images_stored_total").increment(1);
        match thumb_pixels {
            Some(pixels) => self.thumbnail_after(key.clone(), pixels, held, lock),
            None => {
                drop(held);
                self.release_variant_lock(key.id(), lock);
            }
        }
        Ok((key, record))
    }

    async fn get(&self, key: &ImageKey) -> Result<Option<Bytes>, StorageError> {
        if let Some(bytes) = self.read(&key.to_string()).await? {
            return Ok(Some(bytes));
        }
        if key.which() == Variant::Original {
            return Ok(None);
        }
        // No such image: answered without waiting for the variant makers (a
        // flood of made-up ids queues behind nothing).
        let Some(original) = self.find_original(key.id()).await? else {
            return Ok(None);
        };
        let id = key.id();
        if let Some(why) = self.failed_recently(id) {
            return Err(StorageError::FailedRecently(why));
        }
        let lock = self.variant_lock(id);
        let made = async {
            let _this_image = lock.lock().await;
            // Someone else may have made them (or failed to) while this
            // request waited.
            if let Some(bytes) = self.read(&key.to_string()).await? {
                return Ok(Some(bytes));
            }
            if let Some(why) = self.failed_recently(id) {
                return Err(StorageError::FailedRecently(why));
            }
            match self.make_missing(original, key.which()).await {
                Ok(made) => Ok(Some(made)),
                Err(error) => {
                    tracing::warn!(image = %key, %error, "could not make an image's variants; not tried again for a while");
                    self.remember_failure(id, &error);
                    Err(error)
                }
            }
        }
        .await;
        self.release_variant_lock(id, lock);
        made
    }

    async fn open(&self, key: &ImageKey) -> Result<Option<ImageStream>, StorageError> {
        let found = self
            .timed(async {
                match self.store.get(&Path::from(key.to_string())).await {
                    Ok(found) => Ok(Some(found)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
        match found {
            Some(found) => {
                let size = found.meta.size;
                let chunks = match found.payload {
                    object_store::GetResultPayload::File(file, _) => file_chunks(file, found.range),
                    object_store::GetResultPayload::Stream(chunks) => {
                        chunks.map_err(StorageError::from).boxed()
                    }
                };
                Ok(Some(ImageStream {
                    size,
                    chunks: within(chunks, self.timeout),
                }))
            }
            None => Ok(self.get(key).await?.map(ImageStream::whole)),
        }
    }

    async fn delete(&self, id: &ImageId) -> Result<bool, StorageError> {
        let originals = [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Webp]
            .map(|format| ImageKey::original(id, format));
        let mut names: Vec<String> = originals.iter().map(ToString::to_string).collect();
        names.push(originals[0].variant(Variant::Medium).to_string());
        names.push(originals[0].variant(Variant::Display).to_string());
        names.push(originals[0].variant(Variant::Thumb).to_string());
        names.push(format!("{id}.json"));
        let mut found = false;
        for name in names {
            let there = self.exists(&name).await?;
            if there {
                self.remove_file(&name).await?;
                found = true;
            }
        }
        Ok(found)
    }

    async fn record(&self, id: &ImageId) -> Result<Option<ImageRecord>, StorageError> {
        let Some(bytes) = self.read(&format!("{id}.json")).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Record(id.to_string(), e.to_string()))
    }
}

/// Whether images can be saved, asked of the store at most once per
/// [`Writability::TTL`]: readiness and every generation (before it pays for
/// a model run) read the same answer.
pub struct Writability {
    images: Arc<dyn ImageStore>,
    last: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl Writability {
    /// How long one probe's answer is believed.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(3);
    /// How long one probe may take.
    const BOUND: std::time::Duration = std::time::Duration::from_secs(2);

    pub fn new(images: Arc<dyn ImageStore>) -> Self {
        Self {
            images,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The store takes writes (as last probed, within the TTL).
    pub async fn check(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref() {
            if at.elapsed() < Self::TTL {
                return answer.clone();
            }
        }
        let answer = self.images.probe_write(Self::BOUND).await;
        if let Err(problem) = &answer {
            tracing::warn!(%problem, "the image store does not take writes: generations are refused until it does");
        }
        *last = Some((std::time::Instant::now(), answer.clone()));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_is_named_by_its_cause_not_by_digits_in_names() {
        // The object's random name and the duration held "401" once, and an
        // unreachable endpoint was reported as refused credentials.
        let unreachable = "Generic S3 error: Error performing PUT http://127.0.0.1:46773/pictures/lofianime-check/4019ab in 1.876401s after 10 retries: HTTP error: error sending request";
        assert!(meaning(unreachable).starts_with("the endpoint cannot be reached"));
        let refused = "Generic S3 error: Error performing PUT http://127.0.0.1:9000/b/x in 5ms - Client error with status 403 Forbidden: <Error/>";
        assert!(meaning(refused).starts_with("the credentials were refused"));
        let missing = "Generic S3 error: ... NoSuchBucket ... 4031";
        assert_eq!(meaning(missing), "the bucket does not exist");
        assert_eq!(
            meaning("HTTP 500 in 1.403s"),
            "the store refused a test write"
        );
    }

    #[test]
    fn keys_parse_only_the_shape_the_store_makes() {
        let key = ImageKey::parse("0123456789abcdef0123456789abcdef.png").unwrap();
        assert_eq!(key.format(), ImageFormat::Png);
        assert_eq!(key.url(), "/images/0123456789abcdef0123456789abcdef.png");
        for bad in [
            "",
            "x.png",
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef.gif",
            "0123456789ABCDEF0123456789ABCDEF.png",
            "../../etc/passwd.png",
            "0123456789abcdef0123456789abcde/.png",
            "0123456789abcdef0123456789abcdef.png.png",
        ] {
            assert!(ImageKey::parse(bad).is_none(), "{bad:?} should be refused");
        }
    }

    fn png(width: u32, height: u32) -> Bytes {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 239) as u8])
        });
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png.into()
    }

    #[test]
    fn variant_names_parse_back_to_their_key() {
        let original = ImageKey::parse("0123456789abcdef0123456789abcdef.png").unwrap();
        for variant in [Variant::Display, Variant::Thumb] {
            let key = original.variant(variant);
            assert_eq!(key.format(), ImageFormat::Webp);
            assert_eq!(ImageKey::parse(&key.to_string()), Some(key.clone()));
            assert_eq!(
                key.url(),
                lofianime_wire::variant_url(original.id().as_str(), variant)
            );
        }
    }

    #[tokio::test]
    async fn stored_images_come_back_byte_for_byte_with_variants_and_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectImageStore::local_dir(&dir.path().join("images")).unwrap();
        let image = GeneratedImage::encoded(png(400, 300), ImageFormat::Png);
        let (key, record) = store.put(&image, "a harbour", 42).await.unwrap();
        assert_eq!(record.key(), Some(key.clone()));
        assert_eq!(store.get(&key).await.unwrap().unwrap(), image.bytes);
        assert_eq!(
            (
                record.prompt.as_str(),
                record.width,
                record.height,
                record.created_ms
            ),
            ("a harbour", 400, 300, 42)
        );
        assert_eq!(store.record(key.id()).await.unwrap(), Some(record.clone()));
        assert!(record.medium);
        let file = |variant: Variant| {
            dir.path()
                .join("images")
                .join(key.variant(variant).to_string())
        };
        // Before the answer: the medium variant, which the page shows first.
        assert!(file(Variant::Medium).exists());
        assert!(
            !file(Variant::Display).exists(),
            "made when first asked for"
        );
        // Right after it: the thumbnail (a request meanwhile waits for it).
        let thumb = store
            .get(&key.variant(Variant::Thumb))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&thumb[8..12], b"WEBP");
        assert!(file(Variant::Thumb).exists());
        // The display variant on its first request, kept.
        let display = store
            .get(&key.variant(Variant::Display))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&display[8..12], b"WEBP");
        assert!(file(Variant::Display).exists());
        assert!(store.making.lock().unwrap().is_empty(), "no lock is kept");
    }

    #[tokio::test]
    async fn the_thumbnail_is_made_after_the_answer_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectImageStore::local_dir(&dir.path().join("images")).unwrap();
        let (key, _) = store
            .put(
                &GeneratedImage::encoded(png(400, 300), ImageFormat::Png),
                "a harbour",
                1,
            )
            .await
            .unwrap();
        let thumb = dir
            .path()
            .join("images")
            .join(key.variant(Variant::Thumb).to_string());
        let started = Instant::now();
        while !thumb.exists() && started.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(thumb.exists(), "nobody asked for it, and it was made");
    }

    /// The names of the files in `dir`, sorted.
    /// The width and height of `store`'s `key` as it answers it (made if
    /// missing).
    async fn size_served(store: &ObjectImageStore, key: &ImageKey) -> (u32, u32) {
        let bytes = store.get(key).await.unwrap().expect("the file");
        let decoded = image::load_from_memory(&bytes).unwrap();
        (decoded.width(), decoded.height())
    }

    fn files_in(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|file| file.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn an_image_nobody_looks_at_yet_is_stored_without_variants_until_asked() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        let store = ObjectImageStore::local_dir(&images).unwrap();
        let (key, record) = store
            .put_with(
                &GeneratedImage::encoded(png(1100, 800), ImageFormat::Png),
                "a harbour",
                1,
                Variants::WhenAsked,
            )
            .await
            .unwrap();
        // Its size read from the header; nothing made, now or after.
        assert_eq!((record.width, record.height), (1100, 800));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let id = key.id().to_string();
        assert_eq!(
            files_in(&images),
            [format!("{id}.json"), format!("{id}.png")]
        );
        // The page's variant on its first request, the thumbnail with it.
        assert_eq!(
            size_served(&store, &key.variant(Variant::Medium)).await,
            (704, 512)
        );
        assert_eq!(
            files_in(&images),
            [
                format!("{id}-medium.webp"),
                format!("{id}-thumb.webp"),
                format!("{id}.json"),
                format!("{id}.png")
            ]
        );
        assert_eq!(
            size_served(&store, &key.variant(Variant::Thumb)).await.0,
            320
        );
        assert!(store.making.lock().unwrap().is_empty(), "no lock is kept");
    }

    #[tokio::test]
    async fn an_image_whose_header_cannot_be_read_is_not_kept_even_when_nobody_looks() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        let store = ObjectImageStore::local_dir(&images).unwrap();
        let mut truncated = png(64, 64).to_vec();
        truncated.truncate(20);
        let refused = store
            .put_with(
                &GeneratedImage::encoded(truncated.into(), ImageFormat::Png),
                "a harbour",
                1,
                Variants::WhenAsked,
            )
            .await;
        assert!(
            matches!(refused, Err(StorageError::Variants(_))),
            "{refused:?}"
        );
        assert!(!images.exists() || files_in(&images).is_empty());
    }

    #[tokio::test]
    async fn images_served_from_elsewhere_get_every_variant_before_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectImageStore::local_dir(&dir.path().join("images"))
            .unwrap()
            .with_all_variants_first(true);
        let (key, _) = store
            .put(
                &GeneratedImage::encoded(png(1100, 800), ImageFormat::Png),
                "a harbour",
                1,
            )
            .await
            .unwrap();
        for variant in [Variant::Medium, Variant::Thumb, Variant::Display] {
            let name = key.variant(variant).to_string();
            assert!(dir.path().join("images").join(&name).exists(), "{name}");
        }
    }

    #[tokio::test]
    async fn what_cannot_be_decoded_is_not_kept() {
        let store = ObjectImageStore::in_memory();
        let image =
            GeneratedImage::encoded(Bytes::from_static(b"\x89PNG not really"), ImageFormat::Png);
        assert!(matches!(
            store.put(&image, "x", 0).await,
            Err(StorageError::Variants(_))
        ));
        let listed = store.store.list_with_delimiter(None).await.unwrap();
        assert!(listed.objects.is_empty(), "nothing written");
    }

    #[tokio::test]
    async fn images_stored_without_variants_get_them_on_first_request() {
        let store = ObjectImageStore::in_memory();
        let id = &ImageId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let original = ImageKey::original(id, ImageFormat::Png);
        store
            .write(&original.to_string(), png(800, 800))
            .await
            .unwrap();
        assert_eq!(store.record(id).await.unwrap(), None);
        let thumb = store
            .get(&original.variant(Variant::Thumb))
            .await
            .unwrap()
            .unwrap();
        let decoded = image::load_from_memory(&thumb).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (320, 320));
        assert_eq!(
            store
                .read(&original.variant(Variant::Display).to_string())
                .await
                .unwrap(),
            None,
            "only the variant asked for is made"
        );
        let record = store
            .record(id)
            .await
            .unwrap()
            .expect("a record is written");
        assert_eq!((record.width, record.height), (800, 800));
        assert_eq!(record.key(), Some(original));
        // Kept: the second request reads it.
        let again = store
            .get(&ImageKey::parse(&format!("{id}-thumb.webp")).unwrap())
            .await;
        assert_eq!(again.unwrap().unwrap(), thumb);
    }

    #[tokio::test]
    async fn an_unknown_key_is_none() {
        let store = ObjectImageStore::in_memory();
        let key = ImageKey::parse("0123456789abcdef0123456789abcdef.png").unwrap();
        assert!(store.get(&key).await.unwrap().is_none());
        assert!(store
            .get(&key.variant(Variant::Display))
            .await
            .unwrap()
            .is_none());
        assert!(store.record(key.id()).await.unwrap().is_none());
        // A path is no id: the store is never asked for it.
        assert_eq!(ImageId::parse("../etc"), None);
    }

    /// An object store in memory that fails or stalls on demand, and logs
    /// the names written and read.
    #[derive(Debug, Default)]
    struct Faulty {
        inner: object_store::memory::InMemory,
        /// Puts of names ending so fail.
        failing_puts: Mutex<Vec<String>>,
        /// How many of the next puts fail (any name).
        fail_next_puts: std::sync::atomic::AtomicUsize,
        /// Every call stalls (a frozen store).
        stalled: std::sync::atomic::AtomicBool,
        written: Mutex<Vec<String>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl fmt::Display for Faulty {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("faulty")
        }
    }

    impl Faulty {
        async fn stall_if_asked(&self) {
            if self.stalled.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
        }

        fn refused(path: &Path) -> object_store::Error {
            object_store::Error::Generic {
                store: "faulty",
                source: format!("No space left on device writing {path}").into(),
            }
        }
    }

    #[async_trait]
    impl ObjectStore for Faulty {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.stall_if_asked().await;
            let name = location.to_string();
            let failing = self
                .failing_puts
                .lock()
                .unwrap()
                .iter()
                .any(|end| name.ends_with(end.as_str()));
            let next = self
                .fail_next_puts
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok();
            if failing || next {
                return Err(Self::refused(location));
            }
            self.written.lock().unwrap().push(name);
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.stall_if_asked().await;
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.get_opts(location, options).await
        }

        async fn delete(&self, location: &Path) -> object_store::Result<()> {
            self.stall_if_asked().await;
            self.inner.delete(location).await
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.inner.copy(from, to).await
        }

        async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> object_store::Result<()> {
            self.inner.copy_if_not_exists(from, to).await
        }
    }

    fn faulty_store() -> (ObjectImageStore, Arc<Faulty>) {
        let faulty = Arc::new(Faulty::default());
        let store = ObjectImageStore::over(faulty.clone(), "faulty".into());
        (store, faulty)
    }

    async fn names(faulty: &Faulty) -> Vec<String> {
        let listed = faulty.inner.list_with_delimiter(None).await.unwrap();
        let mut names: Vec<String> = listed
            .objects
            .iter()
            .map(|o| o.location.to_string())
            .collect();
        names.sort();
        names
    }

    fn generated() -> GeneratedImage {
        GeneratedImage::encoded(png(400, 300), ImageFormat::Png)
    }

    #[tokio::test]
    async fn the_original_is_written_last_and_a_failed_image_leaves_nothing() {
        let (store, faulty) = faulty_store();
        let (key, _) = store.put(&generated(), "a harbour", 1).await.unwrap();
        let thumb = key.variant(Variant::Thumb).to_string();
        let started = Instant::now();
        while !faulty.written.lock().unwrap().contains(&thumb)
            && started.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let written = faulty.written.lock().unwrap().clone();
        assert_eq!(
            written,
            [
                key.variant(Variant::Medium).to_string(),
                format!("{}.json", key.id()),
                key.to_string(),
                thumb
            ],
            "the original last before the answer, the thumbnail after"
        );
        // A store that takes the variants and the record but never the
        // original: after the retries, nothing of the image is left.
        let (store, faulty) = faulty_store();
        faulty.failing_puts.lock().unwrap().push(".png".into());
        tokio::time::pause();
        let failed = store.put(&generated(), "a harbour", 1).await;
        assert!(matches!(failed, Err(StorageError::Store(_))), "{failed:?}");
        assert_eq!(names(&faulty).await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_write_that_fails_for_a_moment_is_tried_again() {
        let (store, faulty) = faulty_store();
        faulty
            .fail_next_puts
            .store(3, std::sync::atomic::Ordering::SeqCst);
        tokio::time::pause();
        let (key, record) = store.put(&generated(), "a harbour", 1).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().unwrap(), generated().bytes);
        assert_eq!(store.record(key.id()).await.unwrap(), Some(record));
    }

    #[tokio::test]
    async fn a_local_file_is_served_whole_in_chunks_of_64_kb() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectImageStore::local_dir(&dir.path().join("images")).unwrap();
        // Noise does not compress: a PNG of ~270 KB.
        let mut state: u32 = 0x2545_F491;
        let noise = image::RgbImage::from_fn(300, 300, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
        });
        let mut png = Vec::new();
        noise
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let image = GeneratedImage::encoded(png.into(), ImageFormat::Png);
        let (key, _) = store
            .put_with(&image, "static", 1, Variants::WhenAsked)
            .await
            .unwrap();
        let opened = store.open(&key).await.unwrap().expect("the original");
        assert_eq!(opened.size, image.bytes.len() as u64);
        let chunks: Vec<Bytes> = opened.chunks.try_collect().await.unwrap();
        assert_eq!(chunks.concat(), image.bytes.as_ref(), "byte for byte");
        assert!(chunks.iter().all(|chunk| chunk.len() <= 64 * 1024));
        assert_eq!(
            chunks.len(),
            image.bytes.len().div_ceil(64 * 1024),
            "{} B in {} chunks",
            image.bytes.len(),
            chunks.len()
        );
    }

    #[tokio::test]
    async fn a_frozen_store_fails_each_call_at_its_time_limit() {
        let (store, faulty) = faulty_store();
        let store = store.with_timeout(Duration::from_secs(2));
        let (key, _) = store.put(&generated(), "a harbour", 1).await.unwrap();
        faulty
            .stalled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::pause();
        let started = tokio::time::Instant::now();
        assert!(matches!(
            store.get(&key).await,
            Err(StorageError::TimedOut(2))
        ));
        assert!(matches!(
            store.open(&key).await,
            Err(StorageError::TimedOut(2))
        ));
        assert!(matches!(
            store.record(key.id()).await,
            Err(StorageError::TimedOut(2))
        ));
        let each = started.elapsed();
        assert!(
            each >= Duration::from_secs(6) && each < Duration::from_millis(6_500),
            "2 s each: {each:?}"
        );
        // Storing keeps trying for its patience, then gives up.
        let failed = store.put(&generated(), "a lighthouse", 1).await;
        assert!(
            matches!(failed, Err(StorageError::TimedOut(2))),
            "{failed:?}"
        );
        let took = started.elapsed() - each;
        assert!(
            took >= WRITE_PATIENCE - Duration::from_secs(6)
                && took < WRITE_PATIENCE + Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn variants_that_cannot_be_kept_are_made_once_per_image_for_a_while() {
        // An original stored before the disk filled, without variants or
        // record: 20 requests at once for its thumbnail make the variants
        // once; the failure to write them is remembered.
        let (store, faulty) = faulty_store();
        let store = Arc::new(store);
        let id = ImageId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let original = ImageKey::original(&id, ImageFormat::Png);
        store
            .write(&original.to_string(), png(200, 200))
            .await
            .unwrap();
        faulty.failing_puts.lock().unwrap().push(".webp".into());
        let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut requests = Vec::new();
        for _ in 0..20 {
            let store = store.clone();
            let thumb = original.variant(Variant::Thumb);
            requests.push(tokio::spawn(async move { store.get(&thumb).await }));
        }
        for request in requests {
            match request.await.unwrap() {
                Err(StorageError::Store(_)) => {
                    made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Err(StorageError::FailedRecently(why)) => {
                    assert!(why.contains("No space left"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            made.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "made (and failed) once"
        );
        // Another image is not held up by this one's lock or failure.
        let other = ImageId::parse("fedcba9876543210fedcba9876543210").unwrap();
        let other_original = ImageKey::original(&other, ImageFormat::Png);
        store
            .write(&other_original.to_string(), png(100, 100))
            .await
            .unwrap();
        faulty.failing_puts.lock().unwrap().clear();
        assert!(store
            .get(&other_original.variant(Variant::Thumb))
            .await
            .unwrap()
            .is_some());
        assert!(
            matches!(
                store.get(&original.variant(Variant::Thumb)).await,
                Err(StorageError::FailedRecently(_))
            ),
            "still remembered"
        );
        assert!(store.making.lock().unwrap().is_empty(), "no lock is kept");
    }
}
