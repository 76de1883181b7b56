//! Multi-platform builds: `--platform linux/amd64,linux/arm64` builds the Dockerfile once per
//! platform and names the images together, in one OCI image index, as BuildKit does. Pushing
//! the index pushes every platform; img-run and img-unpack pick theirs from it.

use anyhow::{Result, bail};
use img::document::{Descriptor, to_canonical_json};
use img::layout::Layout;
use img::media_type;
use img::platform::Platform;
use img::reference::Reference;
use serde_json::json;

/// The platforms of `--platform` (comma-separated, repeatable), in order, each once; the
/// host's when none is given.
pub fn parse(flags: &[String]) -> Result<Vec<Platform>> {
    let mut platforms: Vec<Platform> = Vec::new();
    for text in flags.iter().flat_map(|f| f.split(',')) {
        let text = text.trim();
        let platform: Platform = match text {
            "local" => Platform::host(),
            _ => text.parse()?,
        };
        if platforms.iter().any(|p| p.to_string() == platform.to_string()) {
            bail!("--platform {platform} is given twice");
        }
        platforms.push(platform);
    }
    if platforms.is_empty() {
        platforms.push(Platform::host());
    }
    Ok(platforms)
}

/// Writes the index of the images built for each platform and points every tag at it (an
/// untagged index is kept as an unnamed entry, so that it is listed and not collected).
pub fn write_index(
    layout: &Layout,
    images: &[(Platform, Descriptor)],
    tags: &[Reference],
) -> Result<Descriptor> {
    let manifests: Vec<Descriptor> = images
        .iter()
        .map(|(platform, manifest)| Descriptor { platform: Some(platform.clone()), ..manifest.clone() })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": manifests,
    });
    let _writing = layout.lock_for_writing()?;
    let index = layout.put_document(media_type::OCI_INDEX, &to_canonical_json(&index))?;
    if tags.is_empty() {
        layout.update_index(|file| {
            file.add_unnamed(&index);
            Ok(())
        })?;
    }
    for tag in tags {
        layout.set_ref(&tag.to_string(), &index)?;
    }
    Ok(index)
}

/// Where `--output` puts one platform's tree when the build makes several: a directory per
/// platform inside the one given, `linux_arm64_v8`, as BuildKit's local exporter names them.
pub fn output_dir(platform: &Platform) -> String {
    platform.to_string().replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_a_list_without_repeats() {
        let names = |flags: &[&str]| -> Vec<String> {
            let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
            parse(&flags).unwrap().iter().map(ToString::to_string).collect()
        };
        assert_eq!(names(&[]), [Platform::host().to_string()]);
        assert_eq!(names(&["linux/amd64,linux/arm64"]), ["linux/amd64", "linux/arm64"]);
        assert_eq!(names(&["linux/arm/v7", "linux/amd64"]), ["linux/arm/v7", "linux/amd64"]);
        assert_eq!(names(&["local"]), [Platform::host().to_string()]);
        let err = parse(&["linux/amd64,linux/amd64".to_string()]).unwrap_err().to_string();
        assert!(err.contains("given twice"), "{err}");
        assert!(parse(&["linux/amd64,".to_string()]).is_err());
        assert_eq!(output_dir(&"linux/arm64/v8".parse().unwrap()), "linux_arm64_v8");
    }
}
