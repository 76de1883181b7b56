//! A builder of OCI images for tests: layers from a list of entries (files, directories,
//! symlinks, hardlinks, whiteouts, FIFOs, devices, with modes, owners, times and xattrs), plus a
//! config and a manifest, written into a layout or kept as blobs to serve from a registry.
//!
//! Every later test makes its images with this, so nothing needs the internet.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use serde_json::{Value, json};

use crate::digest::Digest;
use crate::document::{Descriptor, to_canonical_json};
use crate::layout::Layout;
use crate::media_type;
use crate::platform::Platform;

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
    Fifo,
    CharDevice(u32, u32),
    BlockDevice(u32, u32),
}

/// One tar entry of a layer.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    fn new(path: &str, kind: Kind, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            xattrs: BTreeMap::new(),
        }
    }

    pub fn file(path: &str, content: impl AsRef<[u8]>) -> Entry {
        Entry::new(path, Kind::File(content.as_ref().to_vec()), 0o644)
    }

    pub fn dir(path: &str) -> Entry {
        Entry::new(path, Kind::Dir, 0o755)
    }

    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::new(path, Kind::Symlink(target.to_string()), 0o777)
    }

    /// A hardlink to `target`, a path in the image (this or an earlier layer).
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::new(path, Kind::Hardlink(target.to_string()), 0o644)
    }

    pub fn fifo(path: &str) -> Entry {
        Entry::new(path, Kind::Fifo, 0o644)
    }

    pub fn char_device(path: &str, major: u32, minor: u32) -> Entry {
        Entry::new(path, Kind::CharDevice(major, minor), 0o666)
    }

    pub fn block_device(path: &str, major: u32, minor: u32) -> Entry {
        Entry::new(path, Kind::BlockDevice(major, minor), 0o660)
    }

    /// Deletes `path` of lower layers (`dir/.wh.name`).
    pub fn whiteout(path: &str) -> Entry {
        let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
        let wh = if dir.is_empty() { format!(".wh.{name}") } else { format!("{dir}/.wh.{name}") };
        Entry::file(&wh, b"")
    }

    /// Hides everything lower layers had in `dir` (`dir/.wh..wh..opq`).
    pub fn opaque(dir: &str) -> Entry {
        Entry::file(&format!("{}/.wh..wh..opq", dir.trim_end_matches('/')), b"")
    }

    /// Full mode bits, including setuid/setgid/sticky.
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }

    pub fn xattr(mut self, name: &str, value: impl AsRef<[u8]>) -> Entry {
        self.xattrs.insert(name.to_string(), value.as_ref().to_vec());
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    /// `tar+zstd` (an OCI media type only; Docker has none).
    Zstd,
}

/// A layer: entries in tar order.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    pub entries: Vec<Entry>,
}

impl Layer {
    pub fn new(entries: impl IntoIterator<Item = Entry>) -> Layer {
        Layer { entries: entries.into_iter().collect() }
    }

    /// The uncompressed tar stream of this layer.
    pub fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for e in &self.entries {
            append(&mut builder, e).expect("writing a tar to memory");
        }
        builder.into_inner().expect("writing a tar to memory")
    }
}

fn append(builder: &mut tar::Builder<Vec<u8>>, e: &Entry) -> std::io::Result<()> {
    if !e.xattrs.is_empty() {
        let pax: Vec<(String, &[u8])> =
            e.xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice())).collect();
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }
    let mut header = tar::Header::new_ustar();
    header.set_mode(e.mode);
    header.set_uid(e.uid);
    header.set_gid(e.gid);
    header.set_mtime(e.mtime);
    header.set_size(0);
    let path = match e.kind {
        Kind::Dir => format!("{}/", e.path.trim_end_matches('/')),
        _ => e.path.clone(),
    };
    match &e.kind {
        Kind::File(data) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, &path, data.as_slice())
        }
        Kind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            builder.append_data(&mut header, &path, std::io::empty())
        }
        Kind::Symlink(target) | Kind::Hardlink(target) => {
            let kind = if matches!(e.kind, Kind::Symlink(_)) {
                tar::EntryType::Symlink
            } else {
                tar::EntryType::Link
            };
            header.set_entry_type(kind);
            builder.append_link(&mut header, &path, target)
        }
        Kind::Fifo => {
            header.set_entry_type(tar::EntryType::Fifo);
            builder.append_data(&mut header, &path, std::io::empty())
        }
        Kind::CharDevice(major, minor) | Kind::BlockDevice(major, minor) => {
            let kind = if matches!(e.kind, Kind::CharDevice(..)) {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            header.set_entry_type(kind);
            header.set_device_major(*major)?;
            header.set_device_minor(*minor)?;
            builder.append_data(&mut header, &path, std::io::empty())
        }
    }
}

/// A blob with its descriptor.
#[derive(Clone, Debug)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob { descriptor: Descriptor::of(media_type, &bytes), bytes }
    }
}

/// An image being described: layers plus the parts of the config tests care about.
#[derive(Clone, Debug)]
pub struct TestImage {
    layers: Vec<Layer>,
    platform: Platform,
    config: BTreeMap<String, Value>,
    created: String,
    compression: Compression,
    docker: bool,
    annotations: BTreeMap<String, String>,
}

impl Default for TestImage {
    fn default() -> Self {
        TestImage::new()
    }
}

impl TestImage {
    /// A one-layer image with one of each kind of entry (a directory, a file that varies with
    /// `seed`, a symlink, a hardlink, a setuid file with an owner and an xattr).
    pub fn sample(seed: &str) -> TestImage {
        TestImage::new().layer(Layer::new([
            Entry::dir("etc"),
            Entry::file("etc/seed", seed),
            Entry::symlink("etc/link", "seed"),
            Entry::hardlink("etc/hard", "etc/seed"),
            Entry::file("usr/bin/su", "x").mode(0o4755).owner(0, 0).xattr("user.k", "v"),
        ]))
    }

    pub fn new() -> TestImage {
        TestImage {
            layers: Vec::new(),
            platform: Platform::host(),
            config: BTreeMap::new(),
            created: "2024-01-01T00:00:00Z".to_string(),
            compression: Compression::Gzip,
            docker: false,
            annotations: BTreeMap::new(),
        }
    }

    /// A busybox image that runs `/bin/sh`: [`busybox_layer`] with the common applets and
    /// `extra` ones, the image the build and run tests start from.
    pub fn busybox(extra: &[&str]) -> TestImage {
        TestImage::busybox_from(BUSYBOX, extra)
    }

    /// [`TestImage::busybox`] with the busybox binary at `binary` (say, [`BUSYBOX_ARM64`]).
    pub fn busybox_from(binary: &str, extra: &[&str]) -> TestImage {
        let applets: Vec<&str> = COMMON_APPLETS.iter().chain(extra).copied().collect();
        let layer = busybox_layer_from(binary, &applets).expect("busybox-static (scripts/setup)");
        TestImage::new().layer(layer).run_config("Cmd", json!(["/bin/sh"]))
    }

    pub fn layer(mut self, layer: Layer) -> TestImage {
        self.layers.push(layer);
        self
    }

    pub fn platform(mut self, platform: &str) -> TestImage {
        self.platform = platform.parse().expect("a valid platform");
        self
    }

    /// Sets a field of the config's `config` object (`Cmd`, `Entrypoint`, `Env`, `User`,
    /// `WorkingDir`, `Labels`, …).
    pub fn run_config(mut self, key: &str, value: Value) -> TestImage {
        self.config.insert(key.to_string(), value);
        self
    }

    pub fn created(mut self, rfc3339: &str) -> TestImage {
        self.created = rfc3339.to_string();
        self
    }

    pub fn compression(mut self, compression: Compression) -> TestImage {
        self.compression = compression;
        self
    }

    /// Use Docker schema2 media types instead of OCI ones.
    pub fn docker_media_types(mut self) -> TestImage {
        self.docker = true;
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> TestImage {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    pub fn build(&self) -> BuiltImage {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in &self.layers {
            let tar = layer.tar();
            diff_ids.push(Digest::of(&tar).to_string());
            let (media_type, bytes) = match (self.compression, self.docker) {
                (Compression::Gzip, false) => (media_type::OCI_LAYER_GZIP, gzip(&tar)),
                (Compression::Gzip, true) => (media_type::DOCKER_LAYER_GZIP, gzip(&tar)),
                (Compression::None, false) => (media_type::OCI_LAYER, tar),
                (Compression::None, true) => ("application/vnd.docker.image.rootfs.diff.tar", tar),
                (Compression::Zstd, _) => (
                    media_type::OCI_LAYER_ZSTD,
                    zstd::encode_all(tar.as_slice(), 3).expect("compressing in memory"),
                ),
            };
            layers.push(Blob::new(media_type, bytes));
        }
        let mut config = json!({
            "created": self.created,
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": self.layers.iter().map(|_| json!({"created": self.created, "created_by": "img test_image"})).collect::<Vec<_>>(),
        });
        if let Some(v) = &self.platform.variant {
            config["variant"] = json!(v);
        }
        let (config_type, manifest_type) = if self.docker {
            (media_type::DOCKER_CONFIG, media_type::DOCKER_MANIFEST)
        } else {
            (media_type::OCI_CONFIG, media_type::OCI_MANIFEST)
        };
        let config = Blob::new(config_type, to_canonical_json(&config));
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config.descriptor,
            "layers": layers.iter().map(|l| &l.descriptor).collect::<Vec<_>>(),
        });
        if !self.annotations.is_empty() {
            manifest["annotations"] = json!(self.annotations);
        }
        let manifest = Blob::new(manifest_type, to_canonical_json(&manifest));
        BuiltImage { manifest, config, layers, platform: self.platform.clone() }
    }
}

/// A built image: every blob, ready to store or serve.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub platform: Platform,
}

impl BuiltImage {
    /// Every blob, manifest last (the order a registry push needs).
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut all: Vec<&Blob> = self.layers.iter().collect();
        all.push(&self.config);
        all.push(&self.manifest);
        all
    }

    /// The manifest's descriptor with the image's platform, as an index lists it.
    pub fn platform_descriptor(&self) -> Descriptor {
        let mut d = self.manifest.descriptor.clone();
        d.platform = Some(self.platform.clone());
        d
    }

    /// Stores every blob and, if `name` is given, points that ref at the manifest.
    pub fn write_to(&self, layout: &Layout, name: Option<&str>) -> Result<Descriptor> {
        let _writing = layout.lock_for_writing()?;
        for blob in self.blobs() {
            layout.put_bytes(&blob.bytes)?;
        }
        if let Some(name) = name {
            layout.set_ref(name, &self.manifest.descriptor)?;
        }
        Ok(self.manifest.descriptor.clone())
    }
}

/// A multi-platform image index over built images.
#[derive(Clone, Debug)]
pub struct BuiltIndex {
    pub index: Blob,
    pub images: Vec<BuiltImage>,
}

impl BuiltIndex {
    /// An OCI index (or a Docker manifest list if `docker`) listing the images by platform.
    pub fn new(images: Vec<BuiltImage>, docker: bool) -> BuiltIndex {
        let media_type = if docker { media_type::DOCKER_LIST } else { media_type::OCI_INDEX };
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": images.iter().map(BuiltImage::platform_descriptor).collect::<Vec<_>>(),
        });
        BuiltIndex { index: Blob::new(media_type, to_canonical_json(&doc)), images }
    }

    pub fn blobs(&self) -> Vec<&Blob> {
        let mut all: Vec<&Blob> = self.images.iter().flat_map(BuiltImage::blobs).collect();
        all.push(&self.index);
        all
    }

    pub fn write_to(&self, layout: &Layout, name: Option<&str>) -> Result<Descriptor> {
        let _writing = layout.lock_for_writing()?;
        for blob in self.blobs() {
            layout.put_bytes(&blob.bytes)?;
        }
        if let Some(name) = name {
            layout.set_ref(name, &self.index.descriptor)?;
        }
        Ok(self.index.descriptor.clone())
    }
}

/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Where `scripts/setup` puts Debian's busybox-static for arm64 (aarch64), for tests of
/// multi-platform images whose arm64 binaries run through qemu-user.
pub const BUSYBOX_ARM64: &str = "/usr/local/lib/img-tests/busybox.arm64";

/// A layer with a small busybox userland: `/bin/busybox` (from the host's busybox-static), a
/// symlink for each applet named, `/etc/passwd` and `/etc/group` (root, nobody, and an `app`
/// user 1000 in the supplementary groups wheel and audio), `/tmp`, `/root`, `/home/app`,
/// `/usr/bin`. Tests and the demo run containers from it.
pub fn busybox_layer(applets: &[&str]) -> Result<Layer> {
    busybox_layer_from(BUSYBOX, applets)
}

/// [`busybox_layer`] with the busybox binary at `binary` (say, [`BUSYBOX_ARM64`]).
pub fn busybox_layer_from(binary: &str, applets: &[&str]) -> Result<Layer> {
    let binary =
        std::fs::read(binary).map_err(|e| anyhow::anyhow!("{binary}: {e} (scripts/setup installs it)"))?;
    let mut entries = vec![
        Entry::dir("bin"),
        Entry::file("bin/busybox", binary).mode(0o755),
        Entry::dir("etc"),
        Entry::file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
             app:x:1000:1000:app:/home/app:/bin/sh\n",
        ),
        Entry::file(
            "etc/group",
            "root:x:0:\nwheel:x:10:app\napp:x:1000:\naudio:x:29:app\nnogroup:x:65534:\n",
        ),
        Entry::dir("tmp").mode(0o1777),
        Entry::dir("root").mode(0o700),
        Entry::dir("home"),
        Entry::dir("home/app").owner(1000, 1000),
        Entry::dir("usr"),
        Entry::dir("usr/bin"),
    ];
    entries.extend(applets.iter().map(|a| Entry::symlink(&format!("bin/{a}"), "busybox")));
    Ok(Layer::new(entries))
}

/// The applets most tests need.
pub const COMMON_APPLETS: [&str; 16] = [
    "sh", "echo", "cat", "ls", "id", "env", "pwd", "true", "false", "sleep", "mkdir", "touch", "rm",
    "hostname", "ps", "mount",
];

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("compressing in memory");
    enc.finish().expect("compressing in memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: &str) -> TestImage {
        TestImage::sample(seed)
    }

    #[test]
    fn builds_an_image_whose_tar_reads_back() {
        let img = sample("a").layer(Layer::new([Entry::whiteout("etc/link"), Entry::opaque("usr")])).build();
        assert_eq!(img.layers.len(), 2);
        let tar = Layer::new([Entry::whiteout("a/b"), Entry::opaque("c/")]).tar();
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a/.wh.b", "c/.wh..wh..opq"]);
    }
}
