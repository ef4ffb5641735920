//! [`ControlStore`] in this process's memory (the store layer's [`MemoryStore`]).

use super::ControlStore;
use crate::store::{MemoryStore, StoreError, Value};
use async_trait::async_trait;
use std::collections::{BTreeSet, HashMap};

#[async_trait]
impl ControlStore for MemoryStore {
    async fn get_text(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with(|entries| match entries.get(key) {
            Some(Value::Text(text)) => Some(text.clone()),
            Some(Value::Counter(n)) => Some(n.to_string()),
            _ => None,
        }))
    }

    async fn set_text(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        self.with(|entries| match value {
            Some(text) => entries.set(key, Value::Text(text.to_owned()), None),
            None => {
                entries.delete(key);
            }
        });
        Ok(())
    }

    async fn any_member(&self, key: &str, members: &[&str]) -> Result<bool, StoreError> {
        Ok(self.with(|entries| match entries.get(key) {
            Some(Value::Set(set)) => members.iter().any(|member| set.contains(*member)),
            _ => false,
        }))
    }

    async fn add_member(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        Ok(self.with(|entries| {
            if let Some(Value::Set(set)) = entries.get_mut(key) {
                return set.insert(member.to_owned());
            }
            entries.set(key, Value::Set(BTreeSet::from([member.to_owned()])), None);
            true
        }))
    }

    async fn remove_member(&self, key: &str, member: &str) -> Result<bool, StoreError> {
        Ok(self.with(|entries| match entries.get_mut(key) {
            Some(Value::Set(set)) => set.remove(member),
            _ => false,
        }))
    }

    async fn set_field(
        &self,
        key: &str,
        field: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with(|entries| {
            if let Some(Value::Hash(hash)) = entries.get_mut(key) {
                match value {
                    Some(value) => {
                        hash.insert(field.to_owned(), value.to_owned());
                    }
                    None => {
                        hash.remove(field);
                    }
                }
                return;
            }
            if let Some(value) = value {
                let hash = HashMap::from([(field.to_owned(), value.to_owned())]);
                entries.set(key, Value::Hash(hash), None);
            }
        });
        Ok(())
    }

    async fn fields(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        Ok(self.with(|entries| match entries.get(key) {
            Some(Value::Hash(hash)) => hash.clone(),
            _ => HashMap::new(),
        }))
    }

    async fn members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.with(|entries| match entries.get(key) {
            Some(Value::Set(set)) => set.iter().cloned().collect(),
            _ => Vec::new(),
        }))
    }
}
