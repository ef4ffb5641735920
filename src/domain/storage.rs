//! Where generated images are kept, so the page never depends on a model's
//! short-lived URLs. Backed by the `object_store` crate: a local directory by
//! default, memory in tests, a cloud bucket later by configuration.

use crate::domain::generator::{GeneratedImage, ImageFormat};
use async_trait::async_trait;
use bytes::Bytes;
use object_store::{path::Path, ObjectStore, PutPayload};
use std::fmt;
use std::sync::Arc;

/// The name of a stored image: 32 lowercase hex digits, a dot and an extension
/// (`3f0c…9a.png`). Parsing it is the only way to make one from visitor input, so
/// a request can never name a path outside the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageKey {
    id: String,
    format: ImageFormat,
}

impl ImageKey {
    fn new_random(format: ImageFormat) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            format,
        }
    }

    /// Parses a file name such as `3f0c…9a.png` (the shape [`crate::wire`] defines).
    pub fn parse(file_name: &str) -> Option<Self> {
        let (id, extension) = crate::wire::split_image_name(file_name)?;
        Some(Self {
            id: id.to_owned(),
            format: ImageFormat::from_extension(extension)?,
        })
    }

    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// The app's own URL for this image.
    pub fn url(&self) -> String {
        format!("{}{self}", crate::wire::IMAGES_PATH)
    }
}

impl fmt::Display for ImageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.format.extension())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("image storage failed: {0}")]
pub struct StorageError(#[from] object_store::Error);

#[async_trait]
pub trait ImageStore: Send + Sync + 'static {
    fn describe(&self) -> String;

    /// Stores an image under a new key.
    async fn put(&self, image: &GeneratedImage) -> Result<ImageKey, StorageError>;

    /// The bytes of a stored image, or `None` when there is no such image.
    async fn get(&self, key: &ImageKey) -> Result<Option<Bytes>, StorageError>;
}

/// An [`ImageStore`] over any `object_store` backend.
pub struct ObjectImageStore {
    store: Arc<dyn ObjectStore>,
    description: String,
}

impl ObjectImageStore {
    /// Images as files in `dir` (created if missing).
    pub fn local_dir(dir: &std::path::Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| {
            StorageError(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(source),
            })
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self {
            store: Arc::new(store),
            description: format!("local directory {}", dir.display()),
        })
    }

    /// The object store underneath (other files may live beside the images).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Images in this process's memory; for tests.
    pub fn in_memory() -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
            description: "in memory".into(),
        }
    }
}

#[async_trait]
impl ImageStore for ObjectImageStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn put(&self, image: &GeneratedImage) -> Result<ImageKey, StorageError> {
        let key = ImageKey::new_random(image.format);
        self.store
            .put(
                &Path::from(key.to_string()),
                PutPayload::from_bytes(image.bytes.clone()),
            )
            .await?;
        Ok(key)
    }

    async fn get(&self, key: &ImageKey) -> Result<Option<Bytes>, StorageError> {
        match self.store.get(&Path::from(key.to_string())).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn stored_images_come_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectImageStore::local_dir(&dir.path().join("images")).unwrap();
        let image = GeneratedImage {
            bytes: Bytes::from_static(b"\x89PNG not really"),
            format: ImageFormat::Png,
        };
        let key = store.put(&image).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().unwrap(), image.bytes);
        let reparsed = ImageKey::parse(&key.to_string()).unwrap();
        assert_eq!(reparsed, key);
    }

    #[tokio::test]
    async fn an_unknown_key_is_none() {
        let store = ObjectImageStore::in_memory();
        let key = ImageKey::parse("0123456789abcdef0123456789abcdef.png").unwrap();
        assert!(store.get(&key).await.unwrap().is_none());
    }
}
