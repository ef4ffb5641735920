//! "Your recent images": each visitor's last few generations (image, prompt,
//! time; how many is the `recent.keep` setting). RecentEntry in Redis / Upstash when the app uses one (shared by every instance),
//! otherwise as one small JSON file per visitor next to the images, so the list
//! survives reloads and restarts either way.

use crate::shared::SharedState;
use crate::storage::{ImageKey, ObjectImageStore};
use crate::store::StoreError;
use crate::visitor::tag as owner_tag;
use async_trait::async_trait;
use object_store::{path::Path, ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How many images a list keeps per visitor unless the settings say otherwise.
pub const DEFAULT_KEEP: usize = 12;
/// How long a visitor's list lives after their last generation.
const TTL_MS: u64 = 30 * 24 * 3_600_000;

/// One of a visitor's recent images, as the list keeps it and the front door
/// returns it: `{"image": "{32 hex}.png", "prompt": …, "created_ms": …}`. An
/// entry whose image is not a name the store could have made is not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentEntry {
    pub image: ImageKey,
    pub prompt: String,
    /// When it was made, epoch milliseconds.
    pub created_ms: u64,
    /// The original's size (its shape); 0 in entries kept before it was.
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
}

/// Why a visitor's list could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("the recent-images list in the shared store: {0}")]
    Store(#[from] StoreError),
    #[error("the recent-images file: {0}")]
    File(String),
}

#[async_trait]
pub trait Gallery: Send + Sync + 'static {
    fn describe(&self) -> String;
    /// Adds `kept` at the head of `visitor`'s list (dropping the oldest past the
    /// list's length).
    async fn add(&self, visitor: &str, kept: &RecentEntry) -> Result<(), GalleryError>;
    /// `visitor`'s list, newest first.
    async fn list(&self, visitor: &str) -> Result<Vec<RecentEntry>, GalleryError>;
}

/// The entries that are what this app writes (anything else is skipped).
fn valid(entries: impl IntoIterator<Item = Option<RecentEntry>>, keep: usize) -> Vec<RecentEntry> {
    entries.into_iter().flatten().take(keep).collect()
}

/// `lofianime:recent:{visitor hash}`.
fn list_key(visitor: &str) -> String {
    format!("lofianime:recent:{}", owner_tag(visitor))
}

/// The list in the shared store: `lofianime:recent:{visitor hash}`.
pub struct SharedGallery {
    state: Arc<dyn SharedState>,
    keep: usize,
}

impl SharedGallery {
    pub fn new(state: Arc<dyn SharedState>, keep: usize) -> Self {
        Self {
            state,
            keep: keep.max(1),
        }
    }
}

#[async_trait]
impl Gallery for SharedGallery {
    fn describe(&self) -> String {
        self.state.describe()
    }

    async fn add(&self, visitor: &str, kept: &RecentEntry) -> Result<(), GalleryError> {
        let entry = serde_json::to_string(kept)
            .map_err(|e| StoreError::Protocol(format!("could not encode an entry: {e}")))?;
        Ok(self
            .state
            .push_capped(&list_key(visitor), &entry, self.keep, TTL_MS)
            .await?)
    }

    async fn list(&self, visitor: &str) -> Result<Vec<RecentEntry>, GalleryError> {
        let entries = self.state.read_list(&list_key(visitor)).await?;
        Ok(valid(
            entries
                .iter()
                .map(|text| serde_json::from_str::<RecentEntry>(text).ok()),
            self.keep,
        ))
    }
}

/// The list as `recent/{visitor hash}.json` in an object store (the image
/// directory by default). One instance writes it; a lock per visitor keeps
/// its read-modify-write of that visitor's small file whole, while other
/// visitors' adds go on at the same time.
pub struct FileGallery {
    store: Arc<dyn ObjectStore>,
    description: String,
    keep: usize,
    writing: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl FileGallery {
    pub fn new(store: Arc<dyn ObjectStore>, description: String, keep: usize) -> Self {
        Self {
            store,
            description,
            keep: keep.max(1),
            writing: std::sync::Mutex::default(),
        }
    }

    /// The lists kept in the same place as `images`, under `recent/`.
    pub fn beside(images: &ObjectImageStore, keep: usize) -> Self {
        Self::new(
            images.object_store(),
            format!("{} (recent/)", images.description()),
            keep,
        )
    }

    fn path(visitor: &str) -> Path {
        Path::from(format!("recent/{}.json", owner_tag(visitor)))
    }

    fn error(error: impl std::fmt::Display) -> GalleryError {
        GalleryError::File(error.to_string())
    }

    /// The lock on `visitor`'s file (locks nobody holds are dropped).
    fn lock_of(&self, visitor: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .writing
            .lock()
            .expect("the lock table is never poisoned");
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(owner_tag(visitor)).or_default().clone()
    }
}

#[async_trait]
impl Gallery for FileGallery {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn add(&self, visitor: &str, kept: &RecentEntry) -> Result<(), GalleryError> {
        let lock = self.lock_of(visitor);
        let _writing = lock.lock().await;
        let mut list = self.list(visitor).await?;
        list.insert(0, kept.clone());
        list.truncate(self.keep);
        let json = serde_json::to_vec(&list).map_err(Self::error)?;
        self.store
            .put(&Self::path(visitor), PutPayload::from(json))
            .await
            .map_err(Self::error)?;
        Ok(())
    }

    async fn list(&self, visitor: &str) -> Result<Vec<RecentEntry>, GalleryError> {
        let bytes = match self.store.get(&Self::path(visitor)).await {
            Ok(found) => found.bytes().await.map_err(Self::error)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(Self::error(error)),
        };
        // A damaged file reads as an empty list (and is replaced by the next add).
        let values: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap_or_default();
        Ok(valid(
            values
                .into_iter()
                .map(|value| serde_json::from_value::<RecentEntry>(value).ok()),
            self.keep,
        ))
    }
}

/// A gallery that keeps, in this process, the entries its store could not
/// take (an outage) and adds them, oldest first, as soon as it answers again
/// (the next time anyone's list is read or written): an image delivered
/// during an outage still reaches its visitor's list.
pub struct Queued {
    inner: Arc<dyn Gallery>,
    waiting: std::sync::Mutex<std::collections::VecDeque<(String, RecentEntry)>>,
}

/// The most entries kept waiting (an outage of hours drops the oldest).
const MAX_WAITING: usize = 10_000;

impl Queued {
    pub fn new(inner: Arc<dyn Gallery>) -> Self {
        Self {
            inner,
            waiting: std::sync::Mutex::default(),
        }
    }

    fn waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(String, RecentEntry)>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the waiting entries, oldest first, until one fails (it and the
    /// rest wait on).
    async fn catch_up(&self) {
        let waiting = std::mem::take(&mut *self.waiting());
        if waiting.is_empty() {
            return;
        }
        let count = waiting.len();
        let mut waiting = waiting.into_iter();
        while let Some((visitor, entry)) = waiting.next() {
            if let Err(error) = self.inner.add(&visitor, &entry).await {
                tracing::debug!(%error, "the recent-images store still fails; entries wait");
                let mut still = self.waiting();
                let newer = std::mem::take(&mut *still);
                still.push_back((visitor, entry));
                still.extend(waiting);
                still.extend(newer);
                return;
            }
        }
        tracing::info!(count, "added the recent images that waited for the store");
    }
}

#[async_trait]
impl Gallery for Queued {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn add(&self, visitor: &str, kept: &RecentEntry) -> Result<(), GalleryError> {
        self.catch_up().await;
        let added = self.inner.add(visitor, kept).await;
        if added.is_err() {
            let mut waiting = self.waiting();
            if waiting.len() >= MAX_WAITING {
                waiting.pop_front();
            }
            waiting.push_back((visitor.to_owned(), kept.clone()));
        }
        added
    }

    async fn list(&self, visitor: &str) -> Result<Vec<RecentEntry>, GalleryError> {
        self.catch_up().await;
        self.inner.list(visitor).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;

    fn kept(n: u64) -> RecentEntry {
        RecentEntry {
            image: ImageKey::parse(&format!("{n:032x}.png")).unwrap(),
            prompt: format!("scene {n}"),
            created_ms: 1_000 + n,
            width: 64,
            height: 64,
        }
    }

    async fn keeps_the_last_twelve_per_visitor(gallery: &dyn Gallery) {
        assert!(gallery.list("a").await.unwrap().is_empty());
        for n in 1..=15 {
            gallery.add("a", &kept(n)).await.unwrap();
        }
        gallery.add("b", &kept(99)).await.unwrap();
        let list = gallery.list("a").await.unwrap();
        assert_eq!(list.len(), DEFAULT_KEEP);
        assert_eq!(list[0], kept(15));
        assert_eq!(list[DEFAULT_KEEP - 1], kept(4));
        assert_eq!(gallery.list("b").await.unwrap(), [kept(99)]);
    }

    #[tokio::test]
    async fn the_shared_gallery_keeps_the_last_twelve() {
        let state = Arc::new(MemoryStore::new(Arc::new(ManualClock::at(1))));
        keeps_the_last_twelve_per_visitor(&SharedGallery::new(state, DEFAULT_KEEP)).await;
    }

    #[tokio::test]
    async fn the_file_gallery_keeps_the_last_twelve_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
            FileGallery::new(Arc::new(store), "test".into(), DEFAULT_KEEP)
        };
        keeps_the_last_twelve_per_visitor(&open()).await;
        // A new process reads what the last one wrote.
        assert_eq!(open().list("b").await.unwrap(), [kept(99)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_adds_to_one_file_lose_nothing_and_visitors_do_not_wait_on_each_other() {
        let store = object_store::memory::InMemory::new();
        let gallery = Arc::new(FileGallery::new(Arc::new(store), "test".into(), 50));
        let adds = (0..40u64).map(|n| {
            let gallery = gallery.clone();
            tokio::spawn(async move {
                let visitor = if n % 2 == 0 { "a" } else { "b" };
                gallery.add(visitor, &kept(n)).await.unwrap();
            })
        });
        for add in adds {
            add.await.unwrap();
        }
        for (visitor, parity) in [("a", 0), ("b", 1)] {
            let mut listed: Vec<u64> = gallery
                .list(visitor)
                .await
                .unwrap()
                .iter()
                .map(|entry| entry.created_ms - 1_000)
                .collect();
            listed.sort_unstable();
            let expected: Vec<u64> = (0..40).filter(|n| n % 2 == parity).collect();
            assert_eq!(listed, expected, "{visitor}: every add kept");
        }
        // The locks of finished adds are not kept: only the one in use.
        let _held = gallery.lock_of("c");
        assert_eq!(gallery.writing.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn entries_that_name_no_image_are_skipped() {
        let state = Arc::new(MemoryStore::new(Arc::new(ManualClock::at(1))));
        let gallery = SharedGallery::new(state.clone(), DEFAULT_KEEP);
        let key = list_key("a");
        state
            .push_capped(
                &key,
                r#"{"image":"../x.png","prompt":"p","created_ms":1}"#,
                12,
                1_000,
            )
            .await
            .unwrap();
        state
            .push_capped(&key, "not json", 12, 1_000)
            .await
            .unwrap();
        assert!(gallery.list("a").await.unwrap().is_empty());
    }

    /// A gallery whose store can be switched off.
    struct Switched {
        inner: SharedGallery,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Gallery for Switched {
        fn describe(&self) -> String {
            "switched".into()
        }

        async fn add(&self, visitor: &str, kept: &RecentEntry) -> Result<(), GalleryError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(GalleryError::File("down".into()));
            }
            self.inner.add(visitor, kept).await
        }

        async fn list(&self, visitor: &str) -> Result<Vec<RecentEntry>, GalleryError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(GalleryError::File("down".into()));
            }
            self.inner.list(visitor).await
        }
    }

    #[tokio::test]
    async fn entries_the_store_could_not_take_are_added_in_order_when_it_answers() {
        let state = Arc::new(MemoryStore::new(Arc::new(ManualClock::at(1))));
        let switched = Arc::new(Switched {
            inner: SharedGallery::new(state, DEFAULT_KEEP),
            down: std::sync::atomic::AtomicBool::new(false),
        });
        let gallery = Queued::new(switched.clone());
        gallery.add("a", &kept(1)).await.unwrap();
        switched
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(gallery.add("a", &kept(2)).await.is_err());
        assert!(gallery.add("b", &kept(3)).await.is_err());
        assert!(gallery.add("a", &kept(4)).await.is_err());
        assert!(gallery.list("a").await.is_err(), "still down");
        switched
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            gallery.list("a").await.unwrap(),
            [kept(4), kept(2), kept(1)],
            "newest first, as if nothing happened"
        );
        assert_eq!(gallery.list("b").await.unwrap(), [kept(3)]);
        assert_eq!(gallery.list("a").await.unwrap().len(), 3, "added once");
    }
}
