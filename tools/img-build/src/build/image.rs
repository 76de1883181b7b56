//! The end of a build: the config and manifest written into the layout, and every tag
//! pointed at the manifest.

use anyhow::Result;
use img::document::to_canonical_json;
use img::media_type;
use serde_json::{Value, json};

use super::{Builder, Built, rfc3339};
use crate::state::ImageState;

impl Builder<'_> {
    /// Writes the config and manifest, then points every tag at the manifest.
    pub(super) fn write_image(&self, mut state: ImageState) -> Result<Built> {
        for (k, v) in &self.options.labels {
            state.set_label(k, v);
        }
        let created = match self.options.source_date_epoch {
            Some(s) => rfc3339(s),
            None => state.last_created().unwrap_or_else(|| self.now()),
        };
        state.config.insert("created".into(), json!(created));
        drop_nulls(state.config.get_mut("config"));
        let config_bytes = to_canonical_json(&Value::Object(state.config.clone()));
        let _writing = self.layout.lock_for_writing()?;
        let config = self.layout.put_document(media_type::OCI_CONFIG, &config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": config,
            "layers": state.layers.iter().map(|l| &l.descriptor).collect::<Vec<_>>(),
        });
        let manifest = self.layout.put_document(media_type::OCI_MANIFEST, &to_canonical_json(&manifest))?;
        let mut with_platform = manifest.clone();
        with_platform.platform = Some(self.options.platform.clone());
        for tag in &self.options.tags {
            self.layout.set_ref(&tag.to_string(), &with_platform)?;
        }
        Ok(Built { manifest, config_digest: config.digest })
    }
}

/// Removes null fields (a CMD cleared by ENTRYPOINT) from the config object.
fn drop_nulls(v: Option<&mut Value>) {
    if let Some(Value::Object(map)) = v {
        map.retain(|_, v| !v.is_null());
    }
}
