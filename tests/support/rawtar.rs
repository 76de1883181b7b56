//! Tars written header by header, for layers `img::test_image` cannot (and should not) make:
//! `../` and absolute names, non-UTF-8 names, PAX records of any size, malformed entries. And
//! a writer of images whose layers are such tars.

use std::path::Path;

use img::digest::Digest;
use img::document::{Descriptor, to_canonical_json};
use img::layout::Layout;
use img::media_type;
use serde_json::{Value, json};

/// A tar being written entry by entry, names taken as raw bytes.
#[derive(Default)]
pub struct RawTar {
    bytes: Vec<u8>,
}

/// A ustar header for `name` (at most 100 bytes) of type `kind` (`b'0'` file, `b'5'` dir,
/// `b'2'` symlink, `b'1'` hardlink, `b'6'` FIFO, `b'3'`/`b'4'` devices, `b'x'` PAX).
pub fn header(name: &[u8], kind: u8, size: u64, link: &[u8], mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let u = h.as_ustar_mut().expect("a ustar header");
        u.name[..name.len()].copy_from_slice(name);
        u.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// Appends a header and its body (padded to 512 bytes).
    pub fn raw(mut self, header: &tar::Header, body: &[u8]) -> RawTar {
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(body);
        let pad = (512 - body.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(self, name: &[u8], content: &[u8]) -> RawTar {
        let h = header(name, b'0', content.len() as u64, b"", 0o644);
        self.raw(&h, content)
    }

    pub fn dir(self, name: &[u8]) -> RawTar {
        self.raw(&header(name, b'5', 0, b"", 0o755), b"")
    }

    pub fn symlink(self, name: &[u8], target: &[u8]) -> RawTar {
        self.raw(&header(name, b'2', 0, target, 0o777), b"")
    }

    pub fn hardlink(self, name: &[u8], target: &[u8]) -> RawTar {
        self.raw(&header(name, b'1', 0, target, 0o644), b"")
    }

    /// A PAX extended header (`x`) with these records, for the next entry.
    pub fn pax(self, records: &[(&str, &[u8])]) -> RawTar {
        let mut body = Vec::new();
        for (k, v) in records {
            // "LEN KEY=VALUE\n", where LEN counts itself.
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let h = header(b"PaxHeader", b'x', body.len() as u64, b"", 0o644);
        self.raw(&h, &body)
    }

    /// The tar with its end-of-archive blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend(std::iter::repeat_n(0u8, 1024));
        self.bytes
    }
}

/// Writes an image whose layers are these uncompressed tars (gzip-compressed if `gzip`) into
/// the layout at `dir`, under ref `name`. `run_config` is the config's `config` object.
pub fn write_image(dir: &Path, name: &str, tars: &[Vec<u8>], gzip: bool, run_config: Value) -> Descriptor {
    let layout = Layout::open_or_create(dir).expect("a layout");
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in tars {
        diff_ids.push(Digest::of(tar).to_string());
        let (mt, bytes) = if gzip {
            (media_type::OCI_LAYER_GZIP, img::test_image::gzip(tar))
        } else {
            (media_type::OCI_LAYER, tar.clone())
        };
        layout.put_bytes(&bytes).expect("storing a layer");
        layers.push(Descriptor::of(mt, &bytes));
    }
    let platform = img::platform::Platform::host();
    let config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": run_config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = to_canonical_json(&config);
    layout.put_bytes(&config).expect("storing the config");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": Descriptor::of(media_type::OCI_CONFIG, &config),
        "layers": layers,
    });
    let manifest = to_canonical_json(&manifest);
    let desc = layout.put_document(media_type::OCI_MANIFEST, &manifest).expect("storing the manifest");
    layout.set_ref(name, &desc).expect("setting the ref");
    desc
}
