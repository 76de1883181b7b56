//! Which history entry of an image config made which layer. The config's `history` lists
//! every build step, oldest first; steps that made no layer (`ENV`, `CMD`, …) say
//! `"empty_layer": true`, and the others match the manifest's layers in order (as docker and
//! buildah write them). An image whose history does not add up (more steps with layers than
//! layers, or fewer) is shown as far as it matches; nothing is invented.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::document::Descriptor;

/// The layers, each with its diff_id and the history entry that made it, and every history
/// entry with the position of the layer it made (none for an empty layer).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Matched {
    pub layers: Vec<Value>,
    pub history: Vec<Value>,
}

/// The fields of a history entry copied onto the layer it made.
const COPIED: [&str; 4] = ["created", "created_by", "author", "comment"];

pub fn match_layers(layers: &[Descriptor], config: &Map<String, Value>) -> Matched {
    let diff_ids: Vec<Value> = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v = json!({"digest": l.digest, "size": l.size, "mediaType": l.media_type});
            if let Some(d) = diff_ids.get(i) {
                v["diff_id"] = d.clone();
            }
            v
        })
        .collect();
    let entries = config.get("history").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut history = Vec::with_capacity(entries.len());
    let mut next = 0usize;
    for entry in entries {
        let mut entry = match entry {
            Value::Object(o) => o,
            _ => Map::new(),
        };
        let empty = entry.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
        if !empty {
            if let Some(layer) = out.get_mut(next) {
                for key in COPIED {
                    if let Some(v) = entry.get(key).filter(|v| !v.is_null()) {
                        layer[key] = v.clone();
                    }
                }
                entry.insert("layer".into(), json!(next));
            }
            next += 1;
        }
        history.push(Value::Object(entry));
    }
    Matched { layers: out, history }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_layers_are_skipped_and_kept_in_the_history() {
        let layers: Vec<Descriptor> =
            [b"a", b"b"].iter().map(|c| Descriptor::of(crate::media_type::OCI_LAYER, *c)).collect();
        let config = json!({
            "rootfs": {"type": "layers", "diff_ids": ["sha256:1", "sha256:2"]},
            "history": [
                {"created_by": "base", "created": "t0"},
                {"created_by": "ENV A=1", "empty_layer": true},
                {"created_by": "RUN make", "comment": "c"},
                {"created_by": "CMD x", "empty_layer": true},
                {"created_by": "one too many"},
            ],
        });
        let m = match_layers(&layers, config.as_object().unwrap());
        assert_eq!(m.layers[0]["created_by"], "base");
        assert_eq!(m.layers[0]["diff_id"], "sha256:1");
        assert_eq!(m.layers[1]["created_by"], "RUN make");
        assert_eq!(m.layers[1]["comment"], "c");
        assert_eq!(m.history.len(), 5);
        assert_eq!(m.history[1]["empty_layer"], true);
        assert!(m.history[1].get("layer").is_none());
        assert_eq!(m.history[2]["layer"], 1);
        assert!(m.history[4].get("layer").is_none(), "no layer left for it");
    }
}
