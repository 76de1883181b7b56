//! Layer compression. The media type says whether a layer is a layer at all; the bytes say how
//! it is compressed (Docker's `.tar.gzip` media type is sometimes used for plain tars, so the
//! magic number decides, as containerd does).

use std::io::{self, BufRead, BufReader, Read};

use anyhow::{Result, bail};

use crate::media_type;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Layer media types we can apply: OCI (plain, gzip, zstd, and the non-distributable
/// variants) and Docker's.
pub fn is_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        media_type::OCI_LAYER
            | media_type::OCI_LAYER_GZIP
            | media_type::OCI_LAYER_ZSTD
            | media_type::DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// Refuses media types that are not layers (an artifact's blobs, encrypted layers).
pub fn check_media_type(media_type: &str) -> Result<()> {
    if !is_layer(media_type) {
        bail!("unsupported layer media type {media_type:?}");
    }
    Ok(())
}

impl Compression {
    /// What the first bytes of a stream say it is.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The uncompressed stream of a layer, whatever its compression. Gzip streams of several
/// members and zstd streams of several frames are read to their end.
pub fn decompress<'a>(reader: impl Read + Send + 'a) -> io::Result<Box<dyn Read + Send + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf()?;
    Ok(match Compression::sniff(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        decompress(bytes).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_plain_gzip_multi_member_and_zstd() {
        assert_eq!(read_all(b"plain"), b"plain");
        let mut two = crate::test_image::gzip(b"hello ");
        two.extend(crate::test_image::gzip(b"world"));
        assert_eq!(read_all(&two), b"hello world");
        let mut z = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        z.write_all(b"zstd!").unwrap();
        let mut z = z.finish().unwrap();
        z.extend(zstd::encode_all(&b" again"[..], 1).unwrap());
        assert_eq!(read_all(&z), b"zstd! again");
        assert!(is_layer(media_type::DOCKER_LAYER_GZIP));
        assert!(check_media_type("application/vnd.oci.image.layer.v1.tar+encrypted").is_err());
    }
}
