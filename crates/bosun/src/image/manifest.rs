//! The OCI and Docker (schema 2) manifest formats bosun reads: image
//! indexes / manifest lists, image manifests, and the image config's
//! layer digests.

use serde::Deserialize;

/// Media types asked for, in this order, at the manifests endpoint.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest or index read (containerd's bound is 4 MiB too).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The largest image config read.
pub const MAX_CONFIG: u64 = 8 << 20;

/// A content descriptor.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// For index entries.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// The platform of an index entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v8`, ...
    #[serde(default)]
    pub variant: Option<String>,
}

/// A manifest or index, told apart by its media type (or, when the
/// registry sent none, by which field it has).
#[derive(Debug)]
pub enum Fetched {
    /// A list of per-platform manifests.
    Index(Vec<Descriptor>),
    /// One image.
    Image {
        /// The config blob.
        config: Descriptor,
        /// Layers, bottom first.
        layers: Vec<Descriptor>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// Parses a manifests-endpoint body; `content_type` is the response's.
pub fn parse(body: &[u8], content_type: &str) -> Result<Fetched, String> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("manifest is not JSON of a known shape: {e}"))?;
    let mt = raw
        .media_type
        .clone()
        .unwrap_or_else(|| content_type.split(';').next().unwrap_or("").trim().to_string());
    if raw.schema_version != Some(2) {
        return Err(format!(
            "manifest schemaVersion {:?} (media type {mt:?}): only schema 2 (OCI, Docker v2) is read",
            raw.schema_version
        ));
    }
    match (raw.manifests, raw.config, raw.layers) {
        (Some(m), None, _) => Ok(Fetched::Index(m)),
        (None, Some(config), Some(layers)) => {
            if layers.is_empty() {
                return Err("image manifest has no layers".into());
            }
            for l in &layers {
                layer_compression(&l.media_type)?;
            }
            Ok(Fetched::Image { config, layers })
        }
        _ => Err(format!(
            "manifest of media type {mt:?} is neither an index nor an image manifest"
        )),
    }
}

/// This guest's platform, in OCI's names.
pub fn this_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    ("linux", arch)
}

/// The index entry for `os`/`arch` (attestation manifests, which carry
/// platform `unknown/unknown`, never match).
pub fn pick<'a>(entries: &'a [Descriptor], os: &str, arch: &str) -> Option<&'a Descriptor> {
    entries.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == os && p.architecture == arch)
    })
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// The compression a layer media type names; other media types are refused.
pub fn layer_compression(media_type: &str) -> Result<Compression, String> {
    Ok(match media_type {
        "application/vnd.oci.image.layer.v1.tar" | "application/vnd.oci.image.layer.nondistributable.v1.tar" => {
            Compression::None
        }
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
        other => {
            return Err(format!(
                "layer media type {other:?} is not a tar, tar+gzip or tar+zstd layer"
            ))
        }
    })
}

/// The image config's uncompressed layer digests, bottom first.
pub fn diff_ids(config: &[u8]) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    let c: Config = serde_json::from_slice(config).map_err(|e| format!("image config: {e}"))?;
    for d in &c.rootfs.diff_ids {
        super::reference::check_digest(d).map_err(|e| format!("image config diff_id: {e}"))?;
    }
    Ok(c.rootfs.diff_ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_manifest() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","size":1,"platform":{"os":"unknown","architecture":"unknown"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","size":2,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","size":3,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let Fetched::Index(e) = parse(index, "").unwrap() else {
            panic!("not an index")
        };
        assert_eq!(pick(&e, "linux", "amd64").unwrap().digest, "sha256:cc");
        assert_eq!(pick(&e, "linux", "arm64").unwrap().digest, "sha256:bb");
        assert!(pick(&e, "linux", "s390x").is_none());
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:c","size":5},
            "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:l","size":9}]}"#;
        let Fetched::Image { layers, .. } = parse(m, "application/vnd.docker.distribution.manifest.v2+json").unwrap()
        else {
            panic!("not an image")
        };
        assert_eq!(layer_compression(&layers[0].media_type), Ok(Compression::Gzip));
    }

    #[test]
    fn refuses_what_it_cannot_unpack() {
        let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(parse(v1, "").unwrap_err().contains("schemaVersion"));
        let foreign = br#"{"schemaVersion":2,"config":{"digest":"sha256:c","size":5},
            "layers":[{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":"sha256:l","size":9}]}"#;
        assert!(parse(foreign, "").unwrap_err().contains("helm"));
        assert!(parse(b"[]", "").is_err());
        assert!(diff_ids(br#"{"rootfs":{"diff_ids":["sha256:x"]}}"#).is_err());
    }
}
